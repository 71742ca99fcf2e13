//! Projects: `project.conf` with its builtin defaults, the two loading
//! passes, options and the expression language, variables, and the host
//! identity options depend on.
//!
//! Key decision: a [`Project`] is plain data (its passes' configuration);
//! the work that needs other projects (includes through junctions) is done by
//! the loader's session, which owns every project instance.

pub mod conditionals;
pub mod defaults;
pub mod element_files;
pub mod expression;
pub mod host;
pub mod options;
pub mod instance;
pub mod symbol;
pub mod variables;

pub use host::Host;
pub use options::OptionPool;
pub use instance::{PassConfig, Project, ProjectId};
/// Former name of [`instance`], kept for existing callers.
pub use instance as project;
pub use variables::{ResolvedVariables, Variables, VariablesBase};
