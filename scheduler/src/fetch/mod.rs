//! Fetching `tar` and `remote` sources for a build: the step between loading
//! and planning that turns each downloadable source into a local tree.
//!
//! | module | owns |
//! |---|---|
//! | [`fetch_step`] | [`FetchStep`]: which sources to fetch, deduplication, downloads, staging; [`FetchedSources`] |
//! | [`download_source`] | [`DownloadSource`]: a source's `url`/`ref`/`base-dir`/`filename`/`executable`, its URL resolved through the aliases |
//! | [`downloader`] | [`Downloader`]: `file://`, `http://`, `https://` into a file, hashed on the way |
//! | [`source_cache`] | [`SourceCache`]: `<cache dir>/sources/` — verified downloads by sha256, staged trees |
//! | [`tar_unpacker`] | [`TarUnpacker`]: gzip/xz/bzip2/plain archives, BuildStream's extraction rules |
//! | [`base_dir`] | [`BaseDir`]: `base-dir` globbing and member-name rewriting |
//! | [`staging_dir`] | [`StagingDir`]: writes that never leave the staging directory |
//! | [`error`] | [`FetchError`], [`ArchiveError`] |
//!
//! Key decision: a fetched source ends up as an ordinary directory in the
//! local source cache, so the build stages it exactly like a `local`
//! source (weir-proto's Merkle builder reads it into the CAS) and the plan
//! stays plain data. Mirrors, `weir source track`, remote source caches and
//! the other source kinds are not here yet (see `docs/cli.md`, "Sources").

pub mod base_dir;
pub mod download_source;
pub mod downloader;
pub mod error;
pub mod fetch_step;
pub mod source_cache;
pub mod staging_dir;
pub mod tar_unpacker;

pub use base_dir::BaseDir;
pub use download_source::{resolve_url, DownloadKind, DownloadSource};
pub use downloader::{Downloaded, Downloader};
pub use error::{ArchiveError, FetchError, SourceRef};
pub use fetch_step::{FetchStep, FetchedSources};
pub use source_cache::SourceCache;
pub use staging_dir::StagingDir;
pub use tar_unpacker::{Compression, TarUnpacker, UnpackStats};
