//! Cache keys identical to BuildStream 2.8's (spec `cachekeys.md`).
//!
//! What it owns: the canonical serialisation and hash ([`canonical`]), the
//! input an element's key is computed from ([`ElementInput`]), the
//! per-kind plugin keys ([`PluginKey`]), source unique keys ([`SourceKeys`]),
//! the sandbox dict, the weak/strict keys of a whole graph in one pass
//! ([`KeyTable`]), artifact names and the key fields `weir show` prints
//! ([`KeyFields`]). What it does not own: YAML, composition, variables and the
//! dependency sort, which the loader has done before an [`ElementInput`] exists.
//!
//! Key decisions: the input is already composed and expanded data, so the
//! key algorithm can be tested byte for byte without a loader, and one
//! adapter ([`GraphKeys`] in [`from_graph`]) is the only code that knows the
//! loader's element types. The input borrows the graph's texts, and
//! configurations stay the YAML mappings the loader composed (read and
//! written in place, [`node_value::write_node`]): converting them into key
//! values first cost more time and memory, at 10,000 elements, than the
//! rest of the conversion.

pub mod artifact_name;
pub mod build_scope;
pub mod canonical;
pub mod element_input;
pub mod from_graph;
pub mod key_fields;
pub mod key_table;
#[cfg(test)]
mod key_phase_timing;
pub mod node_value;
pub mod plugin_key;
mod prefix_states;
pub mod sandbox;
mod shared_texts;
pub mod source_key;
pub mod value;
mod value_read;

use std::path::PathBuf;

pub use artifact_name::artifact_name;
pub use canonical::{generate_key, is_key};
pub use element_input::{DependencyInput, ElementInput, SourceInput};
pub use from_graph::{GraphKeys, ShownKeys};
pub use key_fields::KeyFields;
pub use key_table::{ElementKeys, KeyTable};
pub use plugin_key::PluginKey;
pub use sandbox::HostPlatform;
pub use source_key::{MerkleDigester, SourceKeys, TreeDigester};
pub use value::Value;

/// Why a cache key could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum CacheKeyError {
    /// The element kind is not a core kind whose key Weir knows.
    #[error("{element}: no cache key support for element kind '{kind}'")]
    UnsupportedElementKind {
        /// Full element name.
        element: String,
        /// The kind.
        kind: String,
    },
    /// The source kind is not a core kind whose key Weir knows.
    #[error("{element}: no cache key support for source kind '{kind}'")]
    UnsupportedSourceKind {
        /// Full element name.
        element: String,
        /// The kind.
        kind: String,
    },
    /// A configuration value has the wrong shape.
    #[error("{element}: {detail}")]
    InvalidConfig {
        /// Full element name.
        element: String,
        /// What was wrong.
        detail: String,
    },
    /// `sandbox: build-arch` names no known architecture.
    #[error("{element}: unknown architecture: {arch}")]
    UnknownArchitecture {
        /// Full element name.
        element: String,
        /// The value given.
        arch: String,
    },
    /// A `local` source path could not be read.
    #[error("{element}: cannot read local source {}: {detail}", path.display())]
    LocalSource {
        /// Full element name.
        element: String,
        /// The path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The graph handed over is inconsistent (a bug in the caller).
    #[error("cache key computation: {detail}")]
    Internal {
        /// What was wrong.
        detail: String,
    },
}
