//! The `weir` command.
//!
//! `main` only parses the command line, runs it and maps the outcome to an exit
//! status; every command lives in [`weir_scheduler::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    weir_scheduler::cli::main()
}
