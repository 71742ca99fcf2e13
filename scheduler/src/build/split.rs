//! [`SplitRules`]: BuildStream's split domains (`public: bst: split-rules`)
//! and the manifest filter `compose` applies to each dependency's files.
//!
//! Key decision: glob patterns are matched by a small matcher that follows
//! BuildStream's `_glob2re` (`**` crosses directories, `*` and `?` stay
//! within one segment, `[...]` classes), on absolute paths as BuildStream
//! does; a pattern also claims everything below a directory it matches.

use std::collections::BTreeMap;

/// Split domains: domain name → glob patterns (absolute, variables expanded).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SplitRules {
    /// The domains.
    pub domains: BTreeMap<String, Vec<String>>,
}

/// What a composition keeps from each dependency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitFilter {
    /// Domains kept (empty: every domain).
    pub include: Vec<String>,
    /// Domains dropped (wins over `include`).
    pub exclude: Vec<String>,
    /// Whether files no domain claims are kept.
    pub include_orphans: bool,
}

impl SplitFilter {
    /// Whether any filtering happens at all (BuildStream's `require_split`).
    pub fn is_active(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty() || !self.include_orphans
    }

    /// Whether `path` (relative to the artifact root) is kept under `rules`:
    /// a file claimed by domains is kept if one of them is included (an
    /// empty `include` includes every domain) and none is excluded; an
    /// unclaimed file is kept if orphans are (BuildStream's `__split_filter`).
    pub fn keeps(&self, rules: &SplitRules, path: &str) -> bool {
        if !self.is_active() {
            return true;
        }
        let absolute = format!("/{}", path.trim_start_matches('/'));
        let domains: Vec<&String> =
            rules.domains.iter().filter(|(_, patterns)| patterns.iter().any(|p| glob_claims(p, &absolute))).map(|(d, _)| d).collect();
        if domains.is_empty() {
            return self.include_orphans;
        }
        let included = self.include.is_empty() || domains.iter().any(|d| self.include.contains(d));
        let excluded = domains.iter().any(|d| self.exclude.contains(d));
        included && !excluded
    }
}

/// Whether `pattern` matches `path` or a directory above it.
fn glob_claims(pattern: &str, path: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let path: Vec<char> = path.chars().collect();
    if glob(&pattern, &path) {
        return true;
    }
    path.iter().enumerate().any(|(i, c)| *c == '/' && i > 0 && glob(&pattern, &path[..i]))
}

/// Whether `pattern` matches the whole of `path` (BuildStream's `_glob2re`
/// anchored at both ends, as the overlap whitelist uses it).
pub(crate) fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let path: Vec<char> = path.chars().collect();
    glob(&pattern, &path)
}

/// Glob match of the whole of `text` against `pattern`.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') if pattern.get(1) == Some(&'*') => {
            let rest = &pattern[2..];
            // `**/` may also match nothing.
            let rest_after_slash = if rest.first() == Some(&'/') { &rest[1..] } else { rest };
            (0..=text.len()).any(|i| glob(rest, &text[i..]) || glob(rest_after_slash, &text[i..]))
        }
        Some('*') => (0..=text.len()).take_while(|&i| i == 0 || text[i - 1] != '/').any(|i| glob(&pattern[1..], &text[i..])),
        Some('?') => text.first().is_some_and(|c| *c != '/') && glob(&pattern[1..], &text[1..]),
        Some('[') => match pattern.iter().position(|c| *c == ']') {
            Some(end) if end > 1 => {
                let class = &pattern[1..end];
                let (negate, class) = if class.first() == Some(&'!') { (true, &class[1..]) } else { (false, class) };
                let Some(&c) = text.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && c != '/' && glob(&pattern[end + 1..], &text[1..])
            }
            _ => text.first() == Some(&'[') && glob(&pattern[1..], &text[1..]),
        },
        Some(&c) => text.first() == Some(&c) && glob(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> SplitRules {
        SplitRules {
            domains: BTreeMap::from([
                ("devel".to_string(), vec!["/usr/include".to_string(), "/usr/lib/lib*.a".to_string(), "/usr/lib/**/*.pc".to_string()]),
                ("doc".to_string(), vec!["/usr/share/doc".to_string(), "/usr/share/man/**".to_string()]),
                ("runtime".to_string(), vec!["/usr/bin/*".to_string(), "/usr/lib/lib*.so*".to_string()]),
            ]),
        }
    }

    #[test]
    fn globs_follow_buildstream() {
        assert!(glob_claims("/usr/bin/*", "/usr/bin/sh"));
        assert!(!glob("/usr/bin/*".chars().collect::<Vec<_>>().as_slice(), "/usr/bin/x/y".chars().collect::<Vec<_>>().as_slice()));
        assert!(glob_claims("/usr/lib/**/*.pc", "/usr/lib/pkgconfig/foo.pc"));
        assert!(glob_claims("/usr/lib/**/*.pc", "/usr/lib/foo.pc"));
        assert!(glob_claims("/usr/include", "/usr/include/stdio.h"));
        assert!(glob_claims("/usr/lib/lib[a-c]*.so", "/usr/lib/libc.so"));
        assert!(!glob_claims("/usr/lib/lib[!a-c]*.so", "/usr/lib/libc.so"));
        assert!(!glob_claims("/usr/bin/?", "/usr/bin/ab"));
    }

    #[test]
    fn include_exclude_and_orphans() {
        let runtime_only = SplitFilter { include: vec!["runtime".into()], exclude: vec![], include_orphans: false };
        assert!(runtime_only.keeps(&rules(), "usr/bin/sh"));
        assert!(!runtime_only.keeps(&rules(), "usr/include/stdio.h"));
        assert!(!runtime_only.keeps(&rules(), "etc/passwd"));
        let no_docs = SplitFilter { include: vec![], exclude: vec!["doc".into()], include_orphans: true };
        assert!(no_docs.keeps(&rules(), "etc/passwd"));
        assert!(!no_docs.keeps(&rules(), "usr/share/doc/README"));
        assert!(no_docs.keeps(&rules(), "usr/bin/sh"), "an empty include includes every domain");
        let everything = SplitFilter { include: vec![], exclude: vec![], include_orphans: true };
        assert!(!everything.is_active());
        assert!(everything.keeps(&rules(), "anything"));
    }
}
