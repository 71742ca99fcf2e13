//! How a failed command is reported: a human message or, with
//! `--error-format json`, one JSON line `{"domain", "reason", "message"}` at the
//! end of stderr. Never a Rust debug dump.

use clap::ValueEnum;
use serde::Serialize;

/// How errors are printed on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// A readable message naming the domain, the reason and the provenance.
    Human,
    /// The human message followed by one JSON object on the last line.
    Json,
}

/// A failure as the user sees it: BuildStream's error domain and reason, and
/// a message that carries the provenance (`file [line L column C]`).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Error domain, as BuildStream names them (`LOAD`, `PLUGIN`, `ELEMENT`, ...).
    pub domain: String,
    /// Machine-readable reason (`MISSING_FILE`, `INVALID_DATA`, ...).
    pub reason: String,
    /// The message, including provenance where a file is involved.
    pub message: String,
    /// Further lines shown after the message in the human form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Failure {
    /// A failure with no detail.
    pub fn new(domain: impl Into<String>, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Failure { domain: domain.into(), reason: reason.into(), message: message.into(), detail: None }
    }

    /// The failure of a command that the design names but that is not built yet.
    pub fn unimplemented(command: &str) -> Self {
        Failure::new(
            "APP",
            "NOT_IMPLEMENTED",
            format!("`weir {command}` is not implemented yet; see the status table in README.md"),
        )
    }

    /// Prints the failure on stderr in the requested format.
    pub fn print(&self, format: ErrorFormat) {
        eprintln!("error: [{}/{}] {}", self.domain, self.reason, self.message);
        if let Some(detail) = &self.detail {
            for line in detail.lines() {
                eprintln!("    {line}");
            }
        }
        if format == ErrorFormat::Json {
            #[derive(Serialize)]
            struct Line<'a> {
                domain: &'a str,
                reason: &'a str,
                message: &'a str,
            }
            let line = Line { domain: &self.domain, reason: &self.reason, message: &self.message };
            // Serialising three strings cannot fail.
            eprintln!("{}", serde_json::to_string(&line).unwrap_or_default());
        }
    }
}
