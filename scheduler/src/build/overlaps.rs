//! [`OverlapCollector`]: which dependency files replaced others while an
//! input root was staged, reported in BuildStream's words.
//!
//! Key decisions: staging happens in sessions, one per staging location (a
//! build element stages all its dependencies in one session at `/`; a
//! `script` layout opens one per location), as BuildStream's
//! `OverlapCollector` does. A file replaced within a session lists every
//! element that staged it, bottom first; only the elements above the bottom
//! one can be at fault, and each is forgiven by its own `public: bst:
//! overlap-whitelist` globs (variables already expanded, matched against the
//! session-relative path with a leading `/`). A file that replaced one from
//! an earlier session is an "external" overlap. Files that would have
//! replaced a non-empty directory are not staged (`unstaged-files`). The
//! texts follow BuildStream 2.8 (`_overlapcollector.py`), so a warning reads
//! the same whichever tool built the element.

use indexmap::IndexMap;

use super::split::glob_matches;

/// BuildStream's warning token for overlapping files.
pub const OVERLAPS: &str = "overlaps";
/// BuildStream's warning token for files not staged over non-empty directories.
pub const UNSTAGED_FILES: &str = "unstaged-files";

/// One configurable warning raised while staging, as BuildStream words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingWarning {
    /// The warning token (`overlaps`, `unstaged-files`): a project makes it
    /// an error by listing it in `fatal-warnings`.
    pub token: &'static str,
    /// The one-line message (without the `[token]: ` prefix).
    pub brief: String,
    /// The detail lines.
    pub detail: String,
}

impl StagingWarning {
    /// `[token]: brief` and the detail, as BuildStream prints a fatal warning.
    pub fn message(&self) -> String {
        format!("[{}]: {}\n{}", self.token, self.brief, self.detail)
    }
}

/// The overlaps of one staging location.
#[derive(Debug, Default)]
struct Session {
    /// The location, absolute (`/`, `/sysroot`).
    location: String,
    /// Session-relative path → the elements that staged it, bottom first
    /// (a single element: it replaced a file of an earlier session).
    overlaps: IndexMap<String, Vec<String>>,
    /// Element → session-relative paths it could not stage over a non-empty directory.
    ignored: IndexMap<String, Vec<String>>,
    /// Session-relative path → (element, session index) it replaced, for
    /// files that replaced one of an earlier session.
    external: IndexMap<String, (String, usize)>,
}

/// Overlaps of all the sessions of one input root.
#[derive(Debug, Default)]
pub struct OverlapCollector {
    sessions: Vec<Session>,
}

impl OverlapCollector {
    /// Starts a session at `location` (relative to the input root, `""` for `/`);
    /// returns its index.
    pub fn begin(&mut self, location: &str) -> usize {
        let location = format!("/{}", location.trim_matches('/'));
        self.sessions.push(Session { location, ..Session::default() });
        self.sessions.len() - 1
    }

    /// The current session, opening one at `/` if none is open.
    fn current(&mut self) -> (usize, &mut Session) {
        if self.sessions.is_empty() {
            self.begin("");
        }
        let index = self.sessions.len() - 1;
        (index, &mut self.sessions[index])
    }

    /// The current session's index.
    pub fn current_index(&mut self) -> usize {
        self.current().0
    }

    /// Records that `owner` replaced the file at `path` (relative to the
    /// input root) that `previous` had staged in session `previous_session`.
    pub fn replaced(&mut self, path: &str, owner: &str, previous: &str, previous_session: usize) {
        let (index, session) = self.current();
        let relative = session_relative(&session.location, path);
        let list = session.overlaps.entry(relative.clone()).or_insert_with(|| {
            if previous_session == index {
                vec![previous.to_string()]
            } else {
                Vec::new()
            }
        });
        if list.is_empty() {
            session.external.insert(relative, (previous.to_string(), previous_session));
        }
        list.push(owner.to_string());
    }

    /// Records that `owner`'s entry at `path` was not staged because a
    /// non-empty directory is there.
    pub fn ignored(&mut self, path: &str, owner: &str) {
        let (_, session) = self.current();
        let relative = session_relative(&session.location, path);
        session.ignored.entry(owner.to_string()).or_default().push(relative);
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.sessions.iter().all(|s| s.overlaps.is_empty() && s.ignored.is_empty())
    }

    /// The warnings, session by session in BuildStream's order;
    /// `whitelist(element)` gives an element's `overlap-whitelist` globs.
    pub fn warnings<'a>(&self, whitelist: impl Fn(&str) -> &'a [String]) -> Vec<StagingWarning> {
        let mut out = Vec::new();
        for session in &self.sessions {
            self.session_warnings(session, &whitelist, &mut out);
        }
        out
    }

    fn session_warnings<'a>(&self, session: &Session, whitelist: &impl Fn(&str) -> &'a [String], out: &mut Vec<StagingWarning>) {
        if !session.overlaps.is_empty() {
            let mut detail = format!("Staged files overwrite existing files in staging area: {}\n", session.location);
            let mut any = false;
            for (path, elements) in session.overlaps.iter().filter(|(_, e)| e.len() > 1) {
                let absolute = format!("/{path}");
                let at_fault: Vec<&str> = elements[1..]
                    .iter()
                    .map(String::as_str)
                    .filter(|e| !whitelist(e).iter().any(|glob| glob_matches(glob, &absolute)))
                    .collect();
                if at_fault.is_empty() {
                    continue;
                }
                any = true;
                let order: Vec<&str> = elements.iter().rev().map(String::as_str).collect();
                detail.push_str(&format!(
                    "{}: {} {} not permitted to overlap other elements, order {} \n",
                    join_path(&session.location, path),
                    at_fault.join(" and "),
                    if at_fault.len() == 1 { "is" } else { "are" },
                    order.join(" above "),
                ));
            }
            if any {
                out.push(StagingWarning { token: OVERLAPS, brief: "Non-whitelisted overlaps detected".into(), detail });
            }
        }
        if !session.ignored.is_empty() {
            let mut detail = format!(
                "Not staging files which would replace non-empty directories in staging area: {}\n",
                session.location
            );
            for (element, paths) in &session.ignored {
                detail.push_str(&format!("\nFrom {element}:\n"));
                detail.push_str("  ");
                let lines: Vec<String> = paths.iter().map(|p| format!("{}\n", join_path(&session.location, p))).collect();
                detail.push_str(&lines.join("  "));
            }
            out.push(StagingWarning {
                token: UNSTAGED_FILES,
                brief: "Not staging files which would have replaced non-empty directories".into(),
                detail,
            });
        }
        // A file replaced again within this session is an overlap of this
        // session's elements (above), not an external one.
        let external: Vec<_> = session.external.iter().filter(|(path, _)| session.overlaps.get(*path).is_some_and(|e| e.len() == 1)).collect();
        if !external.is_empty() {
            let mut detail = format!("Detected file overlaps while staging elements into: {}\n", session.location);
            for (path, (previous, previous_session)) in external {
                let owner = session.overlaps.get(path).and_then(|e| e.first()).map(String::as_str).unwrap_or("");
                let location = self.sessions.get(*previous_session).map(|s| s.location.as_str()).unwrap_or("/");
                detail.push_str(&format!(
                    "{}: {} overlaps files previously staged by {} in: {}\n",
                    join_path(&session.location, path),
                    owner,
                    previous,
                    location
                ));
            }
            out.push(StagingWarning { token: OVERLAPS, brief: "Overlaps detected".into(), detail });
        }
    }
}

/// `path` (relative to the input root) relative to the session's `location`.
fn session_relative(location: &str, path: &str) -> String {
    let base = location.trim_matches('/');
    if base.is_empty() {
        return path.to_string();
    }
    path.strip_prefix(base).and_then(|rest| rest.strip_prefix('/')).unwrap_or(path).to_string()
}

/// `os.path.join(location, path)`.
fn join_path(location: &str, path: &str) -> String {
    if location.ends_with('/') {
        format!("{location}{path}")
    } else {
        format!("{location}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[String] = &[];

    #[test]
    fn an_overlap_within_a_session_names_the_elements_in_staging_order() {
        let mut collector = OverlapCollector::default();
        collector.begin("");
        collector.replaced("etc/conf", "b.bst", "a.bst", 0);
        collector.replaced("etc/conf", "c.bst", "b.bst", 0);
        let warnings = collector.warnings(|_| NONE);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].token, "overlaps");
        assert_eq!(
            warnings[0].message(),
            "[overlaps]: Non-whitelisted overlaps detected\n\
             Staged files overwrite existing files in staging area: /\n\
             /etc/conf: b.bst and c.bst are not permitted to overlap other elements, order c.bst above b.bst above a.bst \n"
        );
    }

    #[test]
    fn the_overlapping_elements_own_whitelist_forgives_it() {
        let mut collector = OverlapCollector::default();
        collector.begin("");
        collector.replaced("etc/conf", "b.bst", "a.bst", 0);
        collector.replaced("usr/lib/x", "b.bst", "a.bst", 0);
        let globs = vec!["/etc/*".to_string()];
        let warnings = collector.warnings(|e| if e == "b.bst" { &globs } else { NONE });
        assert_eq!(warnings.len(), 1);
        assert!(!warnings[0].detail.contains("/etc/conf"), "{}", warnings[0].detail);
        assert!(warnings[0].detail.contains("/usr/lib/x: b.bst is not permitted"), "{}", warnings[0].detail);
        // The bottom element's whitelist does not count.
        let warnings = collector.warnings(|e| if e == "a.bst" { &globs } else { NONE });
        assert!(warnings[0].detail.contains("/etc/conf: b.bst is not permitted"));
        // Everything forgiven: no warning at all.
        let all = vec!["/**".to_string()];
        assert!(collector.warnings(|_| &all).is_empty());
    }

    #[test]
    fn sessions_at_other_locations_report_external_overlaps_and_unstaged_files() {
        let mut collector = OverlapCollector::default();
        collector.begin("");
        collector.begin("sysroot");
        collector.replaced("sysroot/etc/conf", "tool.bst", "base.bst", 0);
        collector.ignored("sysroot/usr", "tool.bst");
        let warnings = collector.warnings(|_| NONE);
        let tokens: Vec<_> = warnings.iter().map(|w| (w.token, w.brief.as_str())).collect();
        assert_eq!(
            tokens,
            [
                ("unstaged-files", "Not staging files which would have replaced non-empty directories"),
                ("overlaps", "Overlaps detected")
            ]
        );
        assert_eq!(
            warnings[0].detail,
            "Not staging files which would replace non-empty directories in staging area: /sysroot\n\nFrom tool.bst:\n  /sysroot/usr\n"
        );
        assert_eq!(
            warnings[1].detail,
            "Detected file overlaps while staging elements into: /sysroot\n\
             /sysroot/etc/conf: tool.bst overlaps files previously staged by base.bst in: /\n"
        );
    }
}
