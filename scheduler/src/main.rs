//! The `weir` command.
//!
//! `main` only parses the command line, runs it and maps the outcome to an exit
//! status; every command lives in [`weir_scheduler::cli`].

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: the loader allocates
/// millions of small YAML nodes on helper threads and frees them on others,
/// and glibc's arena locks made a sixth of `weir show`'s time futex waits.
/// Its 2.x line (the `v2` feature): the 3.x line spent twice as long
/// collecting blocks freed by other threads (`_mi_page_free_collect`, 5% of
/// `weir show` with keys against under 2%).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir_scheduler::cli::main()
}
