use super::notes::{NT_AUXV, NT_FPREGSET, NT_X86_XSTATE, PRPSINFO_SIZE, PRSTATUS_SIZE};
use super::*;
use crate::testutil::{self, page, PID};
use goblin::elf::note::{NT_FILE, NT_PRPSINFO, NT_PRSTATUS, NT_SIGINFO};
use goblin::elf::Elf;

fn core_bytes() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let image = testutil::image(&tmp.path().join("img"));
    let out = tmp.path().join("core");
    let size = write(&image, None, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(size, bytes.len() as u64);
    bytes
}

#[test]
fn goblin_reads_the_header_and_segments() {
    let bytes = core_bytes();
    let elf = Elf::parse(&bytes).unwrap();
    assert_eq!(elf.header.e_type, ET_CORE);
    assert_eq!(elf.header.e_machine, EM_X86_64);
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    let got: Vec<(u64, u64, u64)> = loads
        .iter()
        .map(|p| (p.p_vaddr, p.p_memsz, p.p_filesz))
        .collect();
    assert_eq!(
        got,
        vec![
            (0x400000, 0x1000, 0),
            (0x401000, 0x1000, 0x1000),
            (0x402000, 0x1000, 0),
            (0x10000000, 0x2000, 0x2000),
            (0x10002000, 0x1000, 0),
            (0x10003000, 0x1000, 0x1000),
            (0x7fff0000, 0x1000, 0),
        ]
    );
    assert_eq!(loads[1].p_flags, PF_R | PF_X);
    assert_eq!(loads[3].p_flags, PF_R | PF_W);
    let seg = |p: &goblin::elf::ProgramHeader| {
        &bytes[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize]
    };
    assert_eq!(seg(loads[1]), page(0).as_slice());
    assert_eq!(seg(loads[3]), [page(1), page(2)].concat().as_slice());
    assert_eq!(seg(loads[5]), page(3).as_slice());
    assert!(loads
        .iter()
        .all(|p| p.p_filesz == 0 || p.p_offset % PAGE_SIZE == 0));
}

#[test]
fn goblin_reads_the_notes() {
    let bytes = core_bytes();
    let elf = Elf::parse(&bytes).unwrap();
    let notes: Vec<(String, u32, Vec<u8>)> = elf
        .iter_note_headers(&bytes)
        .expect("a PT_NOTE")
        .map(|n| n.unwrap())
        .map(|n| (n.name.to_owned(), n.n_type, n.desc.to_vec()))
        .collect();
    let types: Vec<u32> = notes.iter().map(|n| n.1).collect();
    assert_eq!(
        types,
        vec![
            NT_PRSTATUS,
            NT_PRPSINFO,
            NT_SIGINFO,
            NT_AUXV,
            NT_FILE,
            NT_FPREGSET,
            NT_X86_XSTATE,
            NT_PRSTATUS,
            NT_FPREGSET,
            NT_X86_XSTATE,
        ]
    );
    assert_eq!(notes[6].0, "LINUX");
    assert_eq!(notes[0].0, "CORE");
    let prstatus = &notes[0].2;
    assert_eq!(prstatus.len(), PRSTATUS_SIZE);
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let i32_at = |b: &[u8], at: usize| i32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(i32_at(prstatus, 32), PID);
    assert_eq!(u64_at(prstatus, 24), 1 << 9, "pr_sighold");
    assert_eq!(u64_at(prstatus, 112 + 16 * 8), 0x401234, "pr_reg.rip");
    assert_eq!(i32_at(prstatus, 328), 1, "pr_fpvalid");
    assert_eq!(i32_at(&notes[7].2, 32), PID + 1);
    assert_eq!(u64_at(&notes[7].2, 112 + 16 * 8), 0x401300);
    let psinfo = &notes[1].2;
    assert_eq!(psinfo.len(), PRPSINFO_SIZE);
    assert_eq!(&psinfo[40..44], b"fake");
    assert_eq!(&psinfo[56..68], b"fake --flag\0");
    assert_eq!(notes[5].2.len(), 512);
    assert_eq!(notes[6].2.len(), 832);
    let file = &notes[4].2;
    assert_eq!(u64_at(file, 0), 1, "one file mapping");
    assert_eq!((u64_at(file, 16), u64_at(file, 24)), (0x400000, 0x403000));
    assert_eq!(&file[40..], b"/bin/fake\0");
}

#[test]
fn amd_xsave_layout_is_moved_to_the_offsets_gdb_reads() {
    use super::notes::xstate_for_gdb;
    // An AMD Zen 4 area: XCR0 0xe7, 2432 bytes; each component filled
    // with its own byte so any misplacement shows.
    let mut amd = vec![0u8; 2432];
    amd[464..472].copy_from_slice(&0xe7u64.to_le_bytes());
    amd[576..832].fill(0xa1); // AVX (ymm upper halves)
    amd[832..896].fill(0xb2); // opmask
    amd[896..1408].fill(0xc3); // ZMM_Hi256
    amd[1408..2432].fill(0xd4); // Hi16_ZMM
    let out = xstate_for_gdb(&amd, 0xe7);
    assert_eq!(out.len(), 2688);
    assert_eq!(out[..832], amd[..832]);
    assert!(
        out[832..1088].iter().all(|&b| b == 0),
        "MPX's room stays zero"
    );
    assert!(out[1088..1152].iter().all(|&b| b == 0xb2));
    assert!(out[1152..1664].iter().all(|&b| b == 0xc3));
    assert!(out[1664..2688].iter().all(|&b| b == 0xd4));
    // With PKRU (0x2e7, 2440 bytes): PKRU moves to 2688.
    let mut with_pkru = amd.clone();
    with_pkru.extend_from_slice(&[0x55; 8]);
    let out = xstate_for_gdb(&with_pkru, 0x2e7);
    assert_eq!(out.len(), 2696);
    assert_eq!(out[2688..], [0x55; 8]);
    // Intel's layout, an AVX-only area, and unknown components: untouched.
    let intel = vec![7u8; 2688];
    assert!(matches!(
        xstate_for_gdb(&intel, 0xe7),
        std::borrow::Cow::Borrowed(_)
    ));
    assert!(matches!(
        xstate_for_gdb(&amd[..832], 0x7),
        std::borrow::Cow::Borrowed(_)
    ));
    assert!(matches!(
        xstate_for_gdb(&amd, 0xe7 | (1 << 17)),
        std::borrow::Cow::Borrowed(_)
    ));
}
