//! Weir's scheduler: loads BuildStream 2 projects, computes their cache keys and
//! builds them over the Remote Execution API.
//!
//! Data flows one way: files → nodes → project → elements → graph → keys → plan
//! → remote. Each arrow is a module boundary (see `docs/architecture.md`).

pub mod build;
pub mod cachekey;
pub mod cli;
pub mod fetch;
pub mod graph;
pub mod loader;
pub mod plugins;
pub mod project;
pub mod remote;
pub mod yaml;

/// The directory of this crate's manifest, for tests that read the
/// repository's files: as cargo or nextest set it when running the test
/// first (a test binary reused from another checkout through a shared
/// target directory then still reads this checkout), else as compiled.
#[cfg(test)]
pub(crate) fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
}
