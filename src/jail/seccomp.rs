//! The jail's seccomp filter: `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` fail with EPERM for
//! the command and everything it starts. A jailed command that shares keygate's terminal
//! (it has one when `keygate run` has one: job control needs the same session) could
//! otherwise push keystrokes into that terminal's input: commands into the user's shell
//! once keygate exits (CVE-2017-5226), or an answer into `keygate run --ask`'s prompt.
//! Installed by `jail-init` before it starts the command; the filter is inherited and
//! cannot be removed.

/// `struct seccomp_data`: the syscall number, the architecture, the first argument's low
/// 32 bits (little-endian: x86_64 and aarch64).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG1_LOW: u32 = 24;

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_EPERM: u32 = 0x0005_0000 | 1;

/// The native architecture and its ioctl number; its x32 ioctl (x86_64) or the native
/// one again; the 32-bit compat architecture and its ioctl number.
#[cfg(target_arch = "x86_64")]
const ABI: (u32, u32, u32, u32, u32) = (0xC000_003E, 16, 0x4000_0000 | 514, 0x4000_0003, 54);
#[cfg(target_arch = "aarch64")]
const ABI: (u32, u32, u32, u32, u32) = (0xC000_00B7, 29, 29, 0x4000_0028, 54);

const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program (jump offsets count from the next instruction).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn program() -> Vec<libc::sock_filter> {
    let (native, ioctl, x32_ioctl, compat, compat_ioctl) = ABI;
    vec![
        op(LD_ABS, 0, 0, ARCH),      // 0
        op(JEQ, 0, 3, native),       // 1: native → 2, else → 5
        op(LD_ABS, 0, 0, NR),        // 2
        op(JEQ, 5, 0, ioctl),        // 3: ioctl → 9
        op(JEQ, 4, 3, x32_ioctl),    // 4: x32 ioctl → 9, else allow
        op(JEQ, 0, 2, compat),       // 5: compat → 6, else allow
        op(LD_ABS, 0, 0, NR),        // 6
        op(JEQ, 1, 0, compat_ioctl), // 7: ioctl → 9
        op(RET, 0, 0, RET_ALLOW),    // 8
        op(LD_ABS, 0, 0, ARG1_LOW),  // 9: the request (an unsigned int)
        op(JEQ, 2, 0, TIOCSTI),      // 10 → 13
        op(JEQ, 1, 0, TIOCLINUX),    // 11 → 13
        op(RET, 0, 0, RET_ALLOW),    // 12
        op(RET, 0, 0, RET_EPERM),    // 13
    ]
}

/// Installs the filter on this (single-threaded) process, after `no_new_privs`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn install() -> std::io::Result<()> {
    let mut filter = program();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap_or(u16::MAX),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl(2) with PR_SET_NO_NEW_PRIVS reads no memory; PR_SET_SECCOMP reads
    // `prog` and the `filter` it points to, both alive across the call (the kernel
    // copies the program).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// No filter for this architecture yet: say so rather than run without one.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install() -> std::io::Result<()> {
    Err(std::io::Error::other(format!(
        "keygate has no seccomp filter for {} yet",
        std::env::consts::ARCH
    )))
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    /// Runs the program as the kernel would on one syscall.
    fn run(arch: u32, nr: u32, arg1: u32) -> u32 {
        let program = program();
        let data = |offset: u32| match offset {
            NR => nr,
            ARCH => arch,
            ARG1_LOW => arg1,
            _ => panic!("unexpected load at {offset}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = program[pc];
            match i.code {
                LD_ABS => acc = data(i.k),
                JEQ => {
                    let skip = if acc == i.k { i.jt } else { i.jf };
                    pc += usize::from(skip);
                }
                RET => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn only_tiocsti_and_tioclinux_are_refused_in_every_abi() {
        let (native, ioctl, x32_ioctl, compat, compat_ioctl) = ABI;
        for (arch, nr) in [(native, ioctl), (native, x32_ioctl), (compat, compat_ioctl)] {
            assert_eq!(run(arch, nr, TIOCSTI), RET_EPERM);
            assert_eq!(run(arch, nr, TIOCLINUX), RET_EPERM);
            assert_eq!(run(arch, nr, 0x5401), RET_ALLOW, "TCGETS");
            assert_eq!(run(arch, nr, 0x5410), RET_ALLOW, "TIOCSPGRP");
        }
        assert_eq!(
            run(native, 1, TIOCSTI),
            RET_ALLOW,
            "write(2) with that value"
        );
        assert_eq!(run(compat, ioctl + 1000, TIOCSTI), RET_ALLOW);
        assert_eq!(run(0x1234, ioctl, TIOCSTI), RET_ALLOW, "no other ABI runs");
    }
}
