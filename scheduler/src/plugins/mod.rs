//! Plugins: the origins a project declares, the core element and source
//! kinds compiled into Weir, and external plugins run as separate processes.
//!
//! Key decision: kinds resolve per project in the order the project declares
//! its origins, then core (a project may shadow a core kind); the plugin
//! surface exchanges plain data (default YAML, configuration, dependency
//! configuration) and never sees loader state.

pub mod core;
pub mod external;
pub mod origins;

pub use self::core::CoreElement;
pub use external::ExternalPlugin;
pub use origins::{Namespace, Origin, PluginOrigins};

use crate::yaml::LoadErrorReason;

/// The [`LoadErrorReason`] called `name` (as a plugin reports it), if any.
pub fn reason_from_name(name: &str) -> Option<LoadErrorReason> {
    use LoadErrorReason::*;
    [
        MissingFile, InvalidYaml, InvalidData, IllegalComposite, CircularDependency, UnresolvedVariable,
        UnsupportedProject, UnsupportedPlugin, ExpressionFailed, UserAssertion, TrailingListDirective,
        ConflictingJunction, InvalidJunction, SubprojectInconsistent, InvalidSymbolName, MissingProjectConf,
        LoadingDirectory, ProjPathInvalid, ProjPathInvalidKind, RecursiveInclude, CircularReferenceVariable,
        ProtectedVariableRedefined, InvalidDependencyConfig, LinkForbiddenDependencies, CircularReference,
        BadElementSuffix, BadCharactersInName, UndefinedSourceProvenanceAttribute,
    ]
    .into_iter()
    .find(|r| r.name() == name)
}
