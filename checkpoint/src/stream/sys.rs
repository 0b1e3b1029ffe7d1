//! The one instruction the stream needs that std has no safe wrapper for:
//! XGETBV, to read XCR0 (Intel SDM vol. 2, XGETBV: #UD unless
//! CR4.OSXSAVE, which CPUID.1:ECX bit 27 reports).

#[cfg(target_arch = "x86_64")]
pub fn xcr0() -> u64 {
    use std::arch::x86_64::__cpuid;
    const OSXSAVE: u32 = 1 << 27;
    let leaf1 = __cpuid(1);
    if leaf1.ecx & OSXSAVE == 0 {
        return 0;
    }
    // SAFETY: CPUID.1:ECX.OSXSAVE is set, so the OS enabled XSAVE and
    // XGETBV with ECX=0 (XCR0) is defined and cannot fault.
    unsafe { xgetbv0() }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked OSXSAVE (see above).
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn xcr0() -> u64 {
    0
}
