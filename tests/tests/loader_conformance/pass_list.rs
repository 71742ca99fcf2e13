//! The regression guard: `tests/conformance/loader-pass.txt` lists the ids of
//! cases that passed (one per line, sorted).
//!
//! Key decision: the file is only ever written from a full run
//! (`WEIR_UPDATE_PASS_LIST=1`), never by hand, so it records what the loader
//! really achieved; a listed case that fails is a regression and fails the
//! test, an unlisted failure is progress still to make.

use std::collections::BTreeSet;
use std::path::Path;

use super::harness_error::HarnessError;

/// Reads the list; a missing file is an empty list. Blank lines and `#`
/// comments are ignored.
pub fn read(path: &Path) -> Result<BTreeSet<String>, HarnessError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(HarnessError::Read { path: path.to_path_buf(), source }),
    }
}

/// The ids in a pass-list text.
pub fn parse(text: &str) -> BTreeSet<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// Writes `passed` sorted, one id per line.
pub fn write(path: &Path, passed: &BTreeSet<String>) -> Result<(), HarnessError> {
    let text: String = passed.iter().flat_map(|id| [id.as_str(), "\n"]).collect();
    std::fs::write(path, text).map_err(|source| HarnessError::Write { path: path.to_path_buf(), source })
}

/// Listed ids that failed in this run, sorted.
pub fn regressions<'a>(listed: &'a BTreeSet<String>, failed: &BTreeSet<&str>) -> Vec<&'a str> {
    listed.iter().map(String::as_str).filter(|id| failed.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_regressions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass.txt");
        assert!(read(&path).unwrap().is_empty());
        let passed: BTreeSet<String> = ["b/x", "a/y"].iter().map(|s| s.to_string()).collect();
        write(&path, &passed).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a/y\nb/x\n");
        let listed = read(&path).unwrap();
        let failed: BTreeSet<&str> = ["b/x", "c/z"].into_iter().collect();
        assert_eq!(regressions(&listed, &failed), ["b/x"]);
        assert_eq!(parse("# c\n\n a \n"), ["a".to_string()].into_iter().collect());
    }
}
