//! Where every node came from: a [`SourceMap`] of loaded files and the
//! [`Span`] each node carries (file id, 1-based line, 0-based column).
//!
//! Key decision: a span is a small `Copy` value (file index + position); the
//! display name of a file (`target.bst`, `sub.bst:x.bst`, `project.conf`) is
//! looked up in the source map only when a message is rendered.

/// Index of a file in the [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub u32);

/// The provenance of a node. A line of 0 marks a synthetic node (made by the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// File the node belongs to.
    pub file: FileId,
    /// 1-based line; 0 for synthetic nodes.
    pub line: u32,
    /// 0-based column.
    pub col: u32,
}

impl Span {
    /// A synthetic node attributed to `file`.
    pub fn synthetic(file: FileId) -> Span {
        Span { file, line: 0, col: 0 }
    }

    /// Whether the node was made by the core rather than read from a file.
    pub fn is_synthetic(&self) -> bool {
        self.line == 0
    }
}

/// Display names of every file loaded in one session.
#[derive(Debug, Default)]
pub struct SourceMap {
    names: Vec<String>,
}

impl SourceMap {
    /// An empty map; file 0 is reserved for core-made nodes (`<core>`).
    pub fn new() -> Self {
        SourceMap { names: vec!["<core>".to_string()] }
    }

    /// The id used for nodes that belong to no file.
    pub fn core() -> FileId {
        FileId(0)
    }

    /// Registers a file under its display name.
    pub fn add(&mut self, display: impl Into<String>) -> FileId {
        self.names.push(display.into());
        FileId((self.names.len() - 1) as u32)
    }

    /// The display name of a file.
    pub fn name(&self, file: FileId) -> &str {
        self.names.get(file.0 as usize).map(String::as_str).unwrap_or("<unknown>")
    }

    /// `name [line L column C]` or `name [synthetic node]`.
    pub fn describe(&self, span: Span) -> String {
        if span.is_synthetic() {
            format!("{} [synthetic node]", self.name(span.file))
        } else {
            format!("{} [line {} column {}]", self.name(span.file), span.line, span.col)
        }
    }
}
