//! The floor of a whole process: read one file and print it, nothing else.
//!
//! `mstate load` is compared with this binary to tell what process start-up,
//! argument parsing and the store cost on top of reading a state file.
//! Deliberately no dependencies, no argument parser, no buffering layers.

use std::io::Write;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: mstate-bench-cat FILE");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mstate-bench-cat: {}: {e}", path.to_string_lossy());
            std::process::exit(1);
        }
    };
    if let Err(e) = std::io::stdout().lock().write_all(&bytes) {
        eprintln!("mstate-bench-cat: {e}");
        std::process::exit(1);
    }
}
