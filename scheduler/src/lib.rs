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
