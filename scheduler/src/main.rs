//! The `weir` command.
//!
//! `main` only parses the command line, runs it and maps the outcome to an exit
//! status; every command lives in [`weir_scheduler::cli`].

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: the loader allocates
/// millions of small YAML nodes on helper threads and frees them on others,
/// and glibc's arena locks made a sixth of `weir show`'s time futex waits.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir_scheduler::cli::main()
}
