//! `deny_io_uring PROGRAM [ARGS...]`: runs PROGRAM with `io_uring_setup(2)` failing with EPERM,
//! as under a container's default seccomp profile, for that process (and its children) alone.
//! The end-to-end tests use it to check that the relay exits at start-up with a clear line when
//! io_uring is unavailable, without changing any machine-wide setting.
//!
//! It installs a seccomp filter (no new privileges first, so no capability is needed), then
//! execs PROGRAM; the filter survives exec.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// `AUDIT_ARCH_*` of the architecture this was built for: a syscall from another ABI (e.g.
/// 32-bit on x86_64) has other numbers and is let through.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump_eq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn deny_io_uring_setup() -> std::io::Result<()> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filter = [
        stmt(load, DATA_ARCH),
        jump_eq(AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(load, DATA_NR),
        jump_eq(libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `program` points at `filter`, which lives until after the call; the kernel copies
    // the program during the call.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &program as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: deny_io_uring PROGRAM [ARGS...]");
        return ExitCode::from(64);
    };
    if let Err(e) = deny_io_uring_setup() {
        eprintln!("deny_io_uring: cannot install the seccomp filter: {e}");
        return ExitCode::from(70);
    }
    let err = Command::new(program).args(rest).exec();
    eprintln!(
        "deny_io_uring: cannot run {}: {err}",
        program.to_string_lossy()
    );
    ExitCode::from(127)
}
