//! Peak RSS of a command, measured from a small parent.
//!
//! `mstate-bench-rss OUT CMD [ARGS...]` runs CMD (inheriting stdin, stdout
//! and stderr), writes its `ru_maxrss` in KiB to the file OUT and exits
//! with its status. A large parent cannot measure this itself: the kernel
//! folds the memory of the address space a child had before `exec` (for a
//! `vfork`-style spawn, the parent's own peak) into the child's
//! `ru_maxrss`. This binary is tiny, so what it folds in is ~1-2 MiB.

use std::process::Command;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: mstate-bench-rss OUT CMD [ARGS...]");
        std::process::exit(2);
    };
    let child = match Command::new(&program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mstate-bench-rss: {}: {e}", program.to_string_lossy());
            std::process::exit(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child; the pointers are valid.
    while unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            eprintln!("mstate-bench-rss: wait4 failed");
            std::process::exit(1);
        }
    }
    if let Err(e) = std::fs::write(&out, format!("{}\n", ru.ru_maxrss)) {
        eprintln!("mstate-bench-rss: {}: {e}", out.to_string_lossy());
        std::process::exit(1);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    std::process::exit(code);
}
