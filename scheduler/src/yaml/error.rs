//! The loading area's error type: BuildStream's error domain and reason, a
//! message, and the provenance it is about.
//!
//! Key decision: provenance is kept as [`Span`]s and rendered only when the
//! error reaches the user ([`LoadError::render`]), so that typed getters deep
//! in the node tree can build errors without access to the [`SourceMap`].

use std::fmt;

use super::provenance::{SourceMap, Span};

/// BuildStream's `LoadErrorReason` names (domain `LOAD`).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorReason {
    MissingFile,
    InvalidYaml,
    InvalidData,
    IllegalComposite,
    CircularDependency,
    UnresolvedVariable,
    UnsupportedProject,
    UnsupportedPlugin,
    ExpressionFailed,
    UserAssertion,
    TrailingListDirective,
    ConflictingJunction,
    InvalidJunction,
    SubprojectInconsistent,
    InvalidSymbolName,
    MissingProjectConf,
    LoadingDirectory,
    ProjPathInvalid,
    ProjPathInvalidKind,
    RecursiveInclude,
    CircularReferenceVariable,
    ProtectedVariableRedefined,
    InvalidDependencyConfig,
    LinkForbiddenDependencies,
    CircularReference,
    BadElementSuffix,
    BadCharactersInName,
    UndefinedSourceProvenanceAttribute,
}

impl LoadErrorReason {
    /// The name BuildStream prints (`MISSING_FILE`, ...).
    pub fn name(self) -> &'static str {
        use LoadErrorReason::*;
        match self {
            MissingFile => "MISSING_FILE",
            InvalidYaml => "INVALID_YAML",
            InvalidData => "INVALID_DATA",
            IllegalComposite => "ILLEGAL_COMPOSITE",
            CircularDependency => "CIRCULAR_DEPENDENCY",
            UnresolvedVariable => "UNRESOLVED_VARIABLE",
            UnsupportedProject => "UNSUPPORTED_PROJECT",
            UnsupportedPlugin => "UNSUPPORTED_PLUGIN",
            ExpressionFailed => "EXPRESSION_FAILED",
            UserAssertion => "USER_ASSERTION",
            TrailingListDirective => "TRAILING_LIST_DIRECTIVE",
            ConflictingJunction => "CONFLICTING_JUNCTION",
            InvalidJunction => "INVALID_JUNCTION",
            SubprojectInconsistent => "SUBPROJECT_INCONSISTENT",
            InvalidSymbolName => "INVALID_SYMBOL_NAME",
            MissingProjectConf => "MISSING_PROJECT_CONF",
            LoadingDirectory => "LOADING_DIRECTORY",
            ProjPathInvalid => "PROJ_PATH_INVALID",
            ProjPathInvalidKind => "PROJ_PATH_INVALID_KIND",
            RecursiveInclude => "RECURSIVE_INCLUDE",
            CircularReferenceVariable => "CIRCULAR_REFERENCE_VARIABLE",
            ProtectedVariableRedefined => "PROTECTED_VARIABLE_REDEFINED",
            InvalidDependencyConfig => "INVALID_DEPENDENCY_CONFIG",
            LinkForbiddenDependencies => "LINK_FORBIDDEN_DEPENDENCIES",
            CircularReference => "CIRCULAR_REFERENCE",
            BadElementSuffix => "BAD_ELEMENT_SUFFIX",
            BadCharactersInName => "BAD_CHARACTERS_IN_NAME",
            UndefinedSourceProvenanceAttribute => "UNDEFINED_SOURCE_PROVENANCE_ATTRIBUTE",
        }
    }
}

/// Why loading failed: the domain and reason as BuildStream names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Domain `LOAD` with a [`LoadErrorReason`].
    Load(LoadErrorReason),
    /// Another domain (`PLUGIN`, `ELEMENT`, `PLATFORM`, `STREAM`, `SOURCE`) with its string reason.
    Other {
        /// Error domain name.
        domain: &'static str,
        /// Reason string.
        reason: String,
    },
}

/// What a [`LoadError`] holds. `prefixes` and `at` are provenances printed
/// before the message (`outer: inner: message`).
#[derive(Debug, Clone)]
pub struct LoadErrorData {
    /// Domain and reason.
    pub kind: ErrorKind,
    /// Provenances of outer contexts (e.g. the include string), outermost first.
    pub prefixes: Vec<Span>,
    /// The provenance the message is about, if any.
    pub at: Option<Span>,
    /// The message text, without the provenance prefix.
    pub message: String,
    /// Further explanation printed below the message.
    pub detail: Option<String>,
}

/// A loading failure (boxed: results stay small on the hot path; fields are
/// reached through `Deref`).
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError(Box<LoadErrorData>);

impl std::ops::Deref for LoadError {
    type Target = LoadErrorData;
    fn deref(&self) -> &LoadErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for LoadError {
    fn deref_mut(&mut self) -> &mut LoadErrorData {
        &mut self.0
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl LoadError {
    /// A `LOAD` domain error without provenance.
    pub fn new(reason: LoadErrorReason, message: impl Into<String>) -> Self {
        LoadError(Box::new(LoadErrorData {
            kind: ErrorKind::Load(reason),
            prefixes: Vec::new(),
            at: None,
            message: message.into(),
            detail: None,
        }))
    }

    /// A `LOAD` domain error about the node at `span`.
    pub fn at(span: Span, reason: LoadErrorReason, message: impl Into<String>) -> Self {
        let mut error = LoadError::new(reason, message);
        error.at = Some(span);
        error
    }

    /// An error of another domain (`PLUGIN`, `ELEMENT`, ...).
    pub fn other(domain: &'static str, reason: impl Into<String>, at: Option<Span>, message: impl Into<String>) -> Self {
        LoadError(Box::new(LoadErrorData {
            kind: ErrorKind::Other { domain, reason: reason.into() },
            prefixes: Vec::new(),
            at,
            message: message.into(),
            detail: None,
        }))
    }

    /// Adds a detail text.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Prefixes the message with one more (outer) provenance.
    pub fn prefixed(mut self, span: Span) -> Self {
        self.prefixes.insert(0, span);
        self
    }

    /// The `LOAD` reason, if this is a `LOAD` error.
    pub fn reason(&self) -> Option<LoadErrorReason> {
        match self.kind {
            ErrorKind::Load(reason) => Some(reason),
            ErrorKind::Other { .. } => None,
        }
    }

    /// Domain name (`LOAD`, `PLUGIN`, ...).
    pub fn domain(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Load(_) => "LOAD",
            ErrorKind::Other { domain, .. } => domain,
        }
    }

    /// Reason name as BuildStream prints it.
    pub fn reason_name(&self) -> String {
        match &self.kind {
            ErrorKind::Load(reason) => reason.name().to_string(),
            ErrorKind::Other { reason, .. } => reason.clone(),
        }
    }

    /// The message with every provenance prefix rendered.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        for span in self.prefixes.iter().chain(self.at.iter()) {
            out.push_str(&sources.describe(*span));
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Result type of the loading area.
pub type LoadResult<T> = Result<T, LoadError>;
