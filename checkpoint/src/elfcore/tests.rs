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
