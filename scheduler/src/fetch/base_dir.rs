//! [`BaseDir`]: which directory of a `tar` archive is staged, and how member
//! names are rewritten below it — BuildStream 2.8's `tar` source rules.
//!
//! Key decision: the rules are copied with their quirks, because they decide
//! which files end up in an artifact. The candidate directories are the
//! archive's directory members plus the parent directories of its other
//! members that have no entry of their own, each with every leading `.` and
//! `/` character removed (Python's `lstrip("./")`, so a `./` root entry
//! becomes `""`, which `*` matches: an archive made with `tar -C dir .` is
//! staged whole). `base-dir` is a glob (`*` and `?` never match `/`, `**`
//! does, `[...]` classes) matched with a leading `/` on both sides; the
//! first match in sorted order wins; `''` (or a match of `""`) stages the
//! whole archive unchanged.

use std::collections::HashSet;

/// An archive member as the base-dir rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberName<'a> {
    /// The name as stored (directories without their trailing `/`).
    pub name: &'a str,
    /// Whether the member is a directory.
    pub is_dir: bool,
}

/// The chosen base directory: a prefix (with its trailing `/`) stripped from
/// member names, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDir {
    prefix: Option<String>,
}

impl BaseDir {
    /// Chooses the base directory for `pattern` among `members`;
    /// `Err(pattern)` when nothing matches.
    pub fn find<'a>(pattern: &str, members: impl IntoIterator<Item = MemberName<'a>>) -> Result<BaseDir, String> {
        if pattern.is_empty() {
            return Ok(BaseDir { prefix: None });
        }
        let mut matches: Vec<String> = candidates(members).into_iter().filter(|path| glob_matches(pattern, path)).collect();
        matches.sort();
        match matches.into_iter().next() {
            None => Err(pattern.to_string()),
            Some(found) if found.is_empty() => Ok(BaseDir { prefix: None }),
            Some(found) => Ok(BaseDir { prefix: Some(if found.ends_with('/') { found } else { format!("{found}/") }) }),
        }
    }

    /// The whole archive, names unchanged (`base-dir: ''`).
    pub fn whole() -> BaseDir {
        BaseDir { prefix: None }
    }

    /// The name `name` is extracted at, or `None` if the member lies outside
    /// the base directory. With a base directory, one leading `./` is
    /// removed first.
    pub fn rewrite<'a>(&self, name: &'a str) -> Option<&'a str> {
        match &self.prefix {
            None => Some(name),
            Some(prefix) => name.strip_prefix("./").unwrap_or(name).strip_prefix(prefix.as_str()),
        }
    }

    /// A hard link's target as rewritten: with a base directory, one leading
    /// `./` is removed and the prefix stripped if present (a target outside
    /// the base directory is kept as it is).
    pub fn rewrite_link<'a>(&self, target: &'a str) -> &'a str {
        match &self.prefix {
            None => target,
            Some(prefix) => {
                let target = target.strip_prefix("./").unwrap_or(target);
                target.strip_prefix(prefix.as_str()).unwrap_or(target)
            }
        }
    }
}

/// The directory paths the pattern is matched against (`_list_tar_paths`).
fn candidates<'a>(members: impl IntoIterator<Item = MemberName<'a>>) -> Vec<String> {
    let members: Vec<MemberName<'a>> = members.into_iter().collect();
    let names: HashSet<&str> = members.iter().map(|m| m.name).collect();
    let mut visited: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for member in &members {
        let name = member.name.trim_start_matches(['.', '/']);
        if member.is_dir {
            out.push(name.to_string());
            continue;
        }
        let components: Vec<&str> = name.split('/').collect();
        for end in 1..components.len() {
            let parent = components[..end].join("/");
            if visited.insert(parent.clone()) && !names.contains(parent.as_str()) && parent != "." {
                out.push(parent);
            }
        }
    }
    out
}

/// One element of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
    /// `?`: one character but `/`.
    Any,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// BuildStream's `utils.glob` for one path: both get a leading `/`.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let with_slash = |s: &str| if s.starts_with('/') { s.to_string() } else { format!("/{s}") };
    let tokens = compile(&with_slash(pattern));
    let text: Vec<char> = with_slash(path).chars().collect();
    matches(&tokens, &text)
}

/// `_glob2re`, as tokens.
fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                tokens.push(Token::DoubleStar);
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '[' => {
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    tokens.push(Token::Literal('['));
                    continue;
                }
                let body = &chars[i..j];
                i = j + 1;
                let (negated, body) = match body.first() {
                    Some('!') => (true, &body[1..]),
                    _ => (false, body),
                };
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        ranges.push((body[k], body[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((body[k], body[k]));
                        k += 1;
                    }
                }
                tokens.push(Token::Class { negated, ranges });
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    tokens
}

/// Whether `tokens` match all of `text`: the set of text positions reachable
/// after each token, swept left to right (linear in the text per token, no
/// recursion, so a long member name cannot exhaust the stack).
fn matches(tokens: &[Token], text: &[char]) -> bool {
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for token in tokens {
        let mut next = vec![false; text.len() + 1];
        match token {
            Token::Star => {
                let mut active = false;
                for p in 0..=text.len() {
                    active |= reachable[p];
                    next[p] = active;
                    if text.get(p) == Some(&'/') {
                        active = false;
                    }
                }
            }
            Token::DoubleStar => {
                let mut active = false;
                for p in 0..=text.len() {
                    active |= reachable[p];
                    next[p] = active;
                }
            }
            single => {
                for p in 0..text.len() {
                    if reachable[p] && accepts(single, text[p]) {
                        next[p + 1] = true;
                    }
                }
            }
        }
        reachable = next;
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[text.len()]
}

/// Whether a one-character token accepts `c`.
fn accepts(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::Any => c != '/',
        Token::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated,
        Token::Star | Token::DoubleStar => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> MemberName<'_> {
        MemberName { name, is_dir: true }
    }

    fn file(name: &str) -> MemberName<'_> {
        MemberName { name, is_dir: false }
    }

    #[test]
    fn default_base_dir_strips_the_single_top_level_directory() {
        let members = [dir("foo-1.0"), file("foo-1.0/configure"), dir("foo-1.0/src"), file("foo-1.0/src/main.c")];
        let base = BaseDir::find("*", members).unwrap();
        assert_eq!(base.rewrite("foo-1.0/configure"), Some("configure"));
        assert_eq!(base.rewrite("./foo-1.0/src/main.c"), Some("src/main.c"));
        assert_eq!(base.rewrite("foo-1.0"), None, "the base directory itself is not extracted");
    }

    #[test]
    fn implicit_parent_directories_are_candidates_and_the_first_sorted_match_wins() {
        // No directory entries at all; two top-level directories: "alpha" sorts first.
        let members = [file("zeta/z.txt"), file("alpha/a.txt"), file("alpha/deep/b.txt")];
        let base = BaseDir::find("*", members).unwrap();
        assert_eq!(base.rewrite("alpha/deep/b.txt"), Some("deep/b.txt"));
        assert_eq!(base.rewrite("zeta/z.txt"), None, "only the chosen directory is staged");
        // A nested pattern.
        let base = BaseDir::find("alpha/*", [file("zeta/z.txt"), file("alpha/a.txt"), file("alpha/deep/b.txt")]).unwrap();
        assert_eq!(base.rewrite("alpha/deep/b.txt"), Some("b.txt"));
    }

    #[test]
    fn empty_base_dir_and_a_dot_root_entry_stage_the_whole_archive() {
        let members = [dir("foo"), file("foo/a")];
        assert_eq!(BaseDir::find("", members).unwrap(), BaseDir::whole());
        // `tar -C dir .`: the "." entry lstrips to "", which `*` matches first.
        let members = [dir("."), dir("./foo"), file("./foo/a")];
        let base = BaseDir::find("*", members).unwrap();
        assert_eq!(base, BaseDir::whole());
        assert_eq!(base.rewrite("./foo/a"), Some("./foo/a"));
    }

    #[test]
    fn files_only_archives_have_no_base_directory() {
        assert_eq!(BaseDir::find("*", [file("README"), file("main.c")]).unwrap_err(), "*");
        assert_eq!(BaseDir::find("src", [dir("lib"), file("lib/x")]).unwrap_err(), "src");
    }

    #[test]
    fn hard_link_targets_are_rewritten_only_inside_the_base() {
        let base = BaseDir::find("*", [dir("contents"), file("contents/a")]).unwrap();
        assert_eq!(base.rewrite_link("./contents/a"), "a");
        assert_eq!(base.rewrite_link("elsewhere/a"), "elsewhere/a");
    }

    #[test]
    fn globs_follow_buildstream() {
        assert!(glob_matches("*", "foo-1.0"));
        assert!(!glob_matches("*", "foo/bar"));
        assert!(glob_matches("**", "foo/bar"));
        assert!(glob_matches("foo-?.?", "foo-1.0"));
        assert!(!glob_matches("foo?bar", "foo/bar"));
        assert!(glob_matches("[a-c]*", "beta"));
        assert!(!glob_matches("[!a-c]*", "beta"));
        assert!(glob_matches("/foo*", "foo-2"), "leading slashes are ignored on both sides");
        assert!(glob_matches("[x", "[x"), "an unclosed class is a literal");
        assert!(glob_matches("*", ""), "\"\" matches a star, as in BuildStream");
    }
}
