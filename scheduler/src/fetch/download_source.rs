//! [`DownloadSource`]: a `tar` or `remote` source read from the loader's
//! element, with its URL resolved through the project's aliases.
//!
//! Key decisions: the URL is resolved as BuildStream's `translate_url` does
//! without mirrors (`alias:rest` → alias value + `rest`; the schemes
//! `http`, `https`, `ftp`, `file`, `git`, `sftp` and `ssh` are never
//! aliases), and an alias the project does not declare is an error here
//! rather than a confusing download failure later. The `ref` must be a
//! sha256 (64 hex digits); a source without one cannot be fetched.

use indexmap::IndexMap;

use crate::graph::{Element, ProjectSummary, SourceData};
use crate::yaml::{parse_bool, Node, SourceMap};

use super::{FetchError, SourceRef};

/// URL schemes that are never taken for an alias (BuildStream's `_URI_SCHEMES`).
const URI_SCHEMES: [&str; 7] = ["http", "https", "ftp", "file", "git", "sftp", "ssh"];

/// How a downloaded file becomes a source tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DownloadKind {
    /// `remote`: the file itself, named `filename`.
    Remote {
        /// `filename` (default: the resolved URL's basename).
        filename: String,
        /// `executable`: staged with mode 0755 rather than 0644.
        executable: bool,
    },
    /// `tar`: the unpacked archive.
    Tar {
        /// `base-dir` (a glob; default `*`; empty: the whole archive).
        base_dir: String,
    },
}

/// One `tar` or `remote` source to fetch and stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSource {
    /// Which source this is (for messages).
    pub at: SourceRef,
    /// The URL as written (`alias:path`).
    pub url: String,
    /// The URL to download from (aliases resolved).
    pub resolved_url: String,
    /// The `ref`: the sha256 of the file, lower-case hex.
    pub sha256: String,
    /// How the file is staged.
    pub kind: DownloadKind,
}

impl DownloadSource {
    /// Reads source `index` of `element` (owned by `project`) if it is a
    /// `tar` or `remote` source; `Ok(None)` for other kinds.
    pub fn from_element(
        element: &Element,
        index: usize,
        project: &ProjectSummary,
        files: &SourceMap,
    ) -> Result<Option<DownloadSource>, FetchError> {
        let Some(source) = element.sources.get(index) else { return Ok(None) };
        if source.kind != "tar" && source.kind != "remote" {
            return Ok(None);
        }
        let at = SourceRef {
            element: element.full_name.clone(),
            index,
            kind: source.kind.clone(),
            provenance: files.describe(source.span),
        };
        let config = ConfigReader { source, at: &at };
        let url = config.string("url")?.ok_or_else(|| config.error("no 'url' to fetch from", "MISSING_URL"))?;
        let reference = config.string("ref")?.ok_or_else(|| {
            config.error("no 'ref': set it to the sha256 of the file (the source is not resolved)", "SOURCE_NOT_RESOLVED")
        })?;
        let sha256 = reference.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(config.error(&format!("ref '{reference}' is not a sha256 (64 hexadecimal digits)"), "INVALID_REF"));
        }
        let resolved_url = resolve_url(&url, &project.aliases).map_err(|alias| FetchError::InvalidAlias {
            at: Box::new(at.clone()),
            url: url.clone(),
            alias,
            project: project.name.clone(),
        })?;
        let kind = if source.kind == "tar" {
            DownloadKind::Tar { base_dir: config.string("base-dir")?.unwrap_or_else(|| "*".into()) }
        } else {
            let filename = match config.string("filename")? {
                Some(name) => name,
                None => basename(&resolved_url).to_string(),
            };
            if filename.contains('/') {
                return Err(config.error(&format!("filename '{filename}' contains a directory"), "FILENAME_CONTAINS_DIRECTORY"));
            }
            if filename.is_empty() || filename == "." || filename == ".." {
                return Err(config.error(&format!("'{filename}' is not a file name; set 'filename'"), "INVALID_FILENAME"));
            }
            let executable = match config.string("executable")? {
                None => false,
                Some(text) => parse_bool(&text).ok_or_else(|| config.error("'executable' is not a boolean", "INVALID_DATA"))?,
            };
            DownloadKind::Remote { filename, executable }
        };
        Ok(Some(DownloadSource { at, url, resolved_url, sha256, kind }))
    }
}

/// Reads scalar config keys of one source.
struct ConfigReader<'a> {
    source: &'a SourceData,
    at: &'a SourceRef,
}

impl ConfigReader<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, FetchError> {
        match self.source.config.get(key) {
            None => Ok(None),
            Some(Node::Scalar(s)) => Ok(Some(s.value.to_string())),
            Some(_) => Err(self.error(&format!("'{key}' is not a string"), "INVALID_DATA")),
        }
    }

    fn error(&self, reason: &str, code: &'static str) -> FetchError {
        FetchError::Config { at: Box::new(self.at.clone()), reason: reason.to_string(), code }
    }
}

/// `url` with its alias replaced by the alias's value; `Err(alias)` when the
/// URL names an alias that `aliases` does not declare. URLs whose prefix is
/// a URI scheme, or that have no `:`, are returned unchanged.
pub fn resolve_url(url: &str, aliases: &IndexMap<String, String>) -> Result<String, String> {
    let Some((alias, rest)) = url.split_once(':') else { return Ok(url.to_string()) };
    if URI_SCHEMES.iter().any(|scheme| scheme.eq_ignore_ascii_case(alias)) {
        return Ok(url.to_string());
    }
    match aliases.get(alias) {
        Some(value) => Ok(format!("{value}{rest}")),
        None => Err(alias.to_string()),
    }
}

/// Python's `os.path.basename`: the text after the last `/`.
fn basename(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> IndexMap<String, String> {
        IndexMap::from([("upstream".to_string(), "http://127.0.0.1:8080/files/".to_string())])
    }

    #[test]
    fn aliases_resolve_and_schemes_are_never_aliases() {
        assert_eq!(resolve_url("upstream:foo-1.0.tar.gz", &aliases()).unwrap(), "http://127.0.0.1:8080/files/foo-1.0.tar.gz");
        assert_eq!(resolve_url("file:///srv/foo.tar", &aliases()).unwrap(), "file:///srv/foo.tar");
        assert_eq!(resolve_url("HTTPS://example.invalid/x", &aliases()).unwrap(), "HTTPS://example.invalid/x");
        assert_eq!(resolve_url("no-colon", &aliases()).unwrap(), "no-colon");
        assert_eq!(resolve_url("mirror:foo", &aliases()).unwrap_err(), "mirror");
    }

    #[test]
    fn basename_is_the_last_segment() {
        assert_eq!(basename("http://h/a/b/file.txt"), "file.txt");
        assert_eq!(basename("http://h/a/"), "");
    }
}
