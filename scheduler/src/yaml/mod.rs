//! YAML for the project loader: the node tree with provenance, parsing of
//! BuildStream's YAML subset, composition with list directives, and the YAML
//! printer used by `show`.
//!
//! Key decision: every node carries a [`Span`] into a per-session
//! [`SourceMap`]; errors keep spans and are rendered once, at the boundary.

pub mod block_parser;
pub mod compose;
pub mod emitter;
pub mod error;
pub mod interner;
pub mod node;
pub mod parser;
pub mod provenance;

pub use compose::{check_trailing_directives, compose};
pub use error::{ErrorKind, LoadError, LoadErrorReason, LoadResult};
pub use node::{parse_bool, Map, Node, Scalar, Seq};
pub use provenance::{FileId, SourceMap, Span};
