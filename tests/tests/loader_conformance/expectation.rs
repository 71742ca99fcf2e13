//! Judging one finished `weir` run against a case's `expect:` block.
//!
//! Key decision: every expectation the schema defines is evaluated and every
//! difference is collected (never stop at the first), so a failing case says
//! all that is wrong with it. Expectations that restate build results
//! (`checkout_*`, `sources`) cannot be observed through `weir show` — no
//! BuildStream `show` format field prints an element's sources — so they are
//! reported as unevaluated, with that reason, rather than guessed; the case's
//! other expectations (notably its recorded `elements`) are still checked.
//! `differs_from` needs another case's output and is judged by the runner
//! once both have run.

use serde::Deserialize;

use super::manifest::{Check, Expect};
use super::printed_yaml::{parse_group, split_groups, Printed};

/// What a finished `weir` process produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Exit status; `None` when killed (timeout) or ended by a signal.
    pub status: Option<i32>,
    /// Whether the run was killed at the timeout.
    pub timed_out: bool,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// The JSON line `--error-format json` ends stderr with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorReport {
    /// Error domain (`LOAD`, `PLUGIN`, ...).
    pub domain: String,
    /// Reason (`MISSING_FILE`, ...).
    pub reason: Option<String>,
    /// The message with provenance.
    pub message: String,
}

/// The verdict on one case.
#[derive(Debug, Default)]
pub struct Verdict {
    /// What differed from BuildStream's answer (empty = passed).
    pub differences: Vec<String>,
    /// Expectations that were not evaluated, each with its reason.
    pub unevaluated: Vec<String>,
}

impl Outcome {
    /// The error report on stderr's last non-empty line, if it is one.
    pub fn error_report(&self) -> Option<ErrorReport> {
        let last = self.stderr.lines().rev().find(|line| !line.trim().is_empty())?;
        serde_json::from_str(last.trim()).ok()
    }

    /// stderr without the final JSON line: the human report and any warnings.
    fn human_stderr(&self) -> &str {
        let trimmed = self.stderr.trim_end();
        match trimmed.rfind('\n') {
            Some(at) if self.error_report().is_some() => &trimmed[..at],
            None if self.error_report().is_some() => "",
            _ => trimmed,
        }
    }

    /// The shown element names: stdout lines, without empty ones.
    fn element_lines(&self) -> Vec<&str> {
        self.stdout.lines().filter(|line| !line.is_empty()).collect()
    }

    /// The last `n` lines of stderr before the JSON line, for failure reports.
    pub fn stderr_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.human_stderr().lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

/// Judges `outcome` against `expect`.
pub fn evaluate(expect: &Expect, outcome: &Outcome) -> Verdict {
    let mut verdict = Verdict::default();
    let diffs = &mut verdict.differences;
    if outcome.timed_out {
        diffs.push("timed out (killed)".into());
        return verdict;
    }
    match expect.result.as_str() {
        "ok" => check_success(outcome, diffs),
        "error" => check_error(expect, outcome, diffs),
        other => diffs.push(format!("manifest result {other:?} is neither ok nor error")),
    }
    check_text(expect, outcome, diffs);
    if expect.result == "ok" && outcome.status == Some(0) {
        check_elements(expect, outcome, diffs);
        check_output(expect, outcome, diffs);
        check_printed(expect, outcome, diffs);
        check_dependency_configs(expect, outcome, diffs);
    }
    note_unevaluated(expect, &mut verdict.unevaluated);
    verdict
}

fn check_success(outcome: &Outcome, diffs: &mut Vec<String>) {
    if outcome.status != Some(0) {
        let report = match outcome.error_report() {
            Some(r) => format!(" with {}/{}", r.domain, r.reason.unwrap_or_default()),
            None => String::new(),
        };
        diffs.push(format!("expected success, got exit status {:?}{report}", outcome.status));
    }
}

fn check_error(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    if outcome.status == Some(0) {
        diffs.push(format!(
            "expected error {}/{}, but the command succeeded",
            expect.domain.as_deref().unwrap_or("?"),
            expect.reason.as_deref().unwrap_or("any")
        ));
        return;
    }
    let Some(report) = outcome.error_report() else {
        diffs.push("failed without a JSON error line at the end of stderr".into());
        return;
    };
    if let Some(domain) = &expect.domain {
        if &report.domain != domain {
            diffs.push(format!("domain {} (expected {domain})", report.domain));
        }
    }
    if let Some(reason) = &expect.reason {
        if report.reason.as_deref() != Some(reason.as_str()) {
            diffs.push(format!("reason {} (expected {reason})", report.reason.as_deref().unwrap_or("null")));
        }
    }
    for wanted in &expect.message_contains {
        if !report.message.contains(wanted.as_str()) {
            diffs.push(format!("message lacks {wanted:?} (message: {:?})", report.message));
        }
    }
}

/// `stderr_contains` / `stderr_excludes`: the human report and the decoded
/// JSON message both count as the error report.
fn check_text(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    let message = outcome.error_report().map(|r| r.message).unwrap_or_default();
    let human = outcome.human_stderr();
    for wanted in &expect.stderr_contains {
        if !human.contains(wanted.as_str()) && !message.contains(wanted.as_str()) {
            diffs.push(format!("stderr lacks {wanted:?}"));
        }
    }
    for unwanted in &expect.stderr_excludes {
        if human.contains(unwanted.as_str()) || message.contains(unwanted.as_str()) {
            diffs.push(format!("stderr contains {unwanted:?}"));
        }
    }
}

fn check_elements(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    let shown = outcome.element_lines();
    if let Some(elements) = &expect.elements {
        if shown != elements.iter().map(String::as_str).collect::<Vec<_>>() {
            diffs.push(format!("elements {shown:?} (expected {elements:?})"));
        }
    }
    for name in &expect.elements_include {
        if !shown.contains(&name.as_str()) {
            diffs.push(format!("{name} not shown"));
        }
    }
    for name in &expect.elements_exclude {
        if shown.contains(&name.as_str()) {
            diffs.push(format!("{name} shown but must not be"));
        }
    }
}

fn check_output(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    if let Some(output) = &expect.output {
        if &outcome.stdout != output {
            diffs.push(format!("output {:?} (expected {output:?})", outcome.stdout));
        }
    }
    if let Some(lines) = &expect.output_lines {
        let got: Vec<&str> = outcome.stdout.lines().collect();
        if got != lines.iter().map(String::as_str).collect::<Vec<_>>() {
            diffs.push(format!("output lines {got:?} (expected {lines:?})"));
        }
    }
}

/// `checks` (single element: the last group, the target, which `show` prints
/// after its dependencies) and `per_element`.
fn check_printed(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    if expect.checks.is_empty() && expect.per_element.is_empty() {
        return;
    }
    let groups = split_groups(&outcome.stdout);
    if !expect.checks.is_empty() {
        let group = groups.last().map(String::as_str).unwrap_or("");
        match parse_group(group) {
            Ok(printed) => expect.checks.iter().for_each(|check| apply_check(check, &printed, "", diffs)),
            Err(e) => diffs.push(format!("{e} (output: {:?})", outcome.stdout)),
        }
    }
    if !expect.per_element.is_empty() {
        if groups.len() != expect.per_element_order.len() {
            diffs.push(format!(
                "{} element groups printed (expected {}: {:?})",
                groups.len(),
                expect.per_element_order.len(),
                expect.per_element_order
            ));
            return;
        }
        for (name, group) in expect.per_element_order.iter().zip(&groups) {
            let Some(checks) = expect.per_element.get(name) else { continue };
            match parse_group(group) {
                Ok(printed) => checks.iter().for_each(|check| apply_check(check, &printed, name, diffs)),
                Err(e) => diffs.push(format!("{name}: {e}")),
            }
        }
    }
}

/// Evaluates one check on a parsed element group.
pub fn apply_check(check: &Check, printed: &Printed, element: &str, diffs: &mut Vec<String>) {
    let path: String = check.path.iter().map(ToString::to_string).collect();
    let at = format!("{}{}%{{{}}}{path}", element, if element.is_empty() { "" } else { " " }, check.of);
    let found = printed.lookup(&check.path);
    if check.present && found.is_none() {
        diffs.push(format!("{at} is absent (expected present)"));
    }
    if check.absent {
        if let Some(value) = found {
            diffs.push(format!("{at} is {value} (expected absent)"));
        }
    }
    let Some(expected) = &check.equals else { return };
    let Some(value) = found else {
        diffs.push(format!("{at} is absent (expected {})", Printed::from_expected(expected)));
        return;
    };
    let expected = Printed::from_expected(expected);
    if check.as_bool {
        match (value.as_bool(), expected.as_bool()) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => diffs.push(format!("{at} is {value} (expected {expected} as a boolean)")),
            _ => diffs.push(format!("{at} is {value}, not comparable as a boolean with {expected}")),
        }
    } else if *value != expected {
        diffs.push(format!("{at} is {value} (expected {expected})"));
    }
}

/// The stub plugins report the number of dependency entries with a non-empty
/// `config` as `TEST PLUGIN FOUND N ENABLED DEPENDENCIES` (manifest
/// `plugin_stubs.configsupported`).
fn check_dependency_configs(expect: &Expect, outcome: &Outcome, diffs: &mut Vec<String>) {
    for (element, count) in &expect.dependency_configs {
        let line = format!("TEST PLUGIN FOUND {count} ENABLED DEPENDENCIES");
        if !outcome.stderr.contains(&line) {
            diffs.push(format!("{element}: the plugin did not report {count} configured dependencies ({line:?})"));
        }
    }
}

fn note_unevaluated(expect: &Expect, unevaluated: &mut Vec<String>) {
    const WHY: &str = "`weir show` prints no element sources (BuildStream has no format field for them)";
    if !expect.checkout_present.is_empty() || !expect.checkout_absent.is_empty() || !expect.checkout_exact.is_empty() {
        unevaluated.push(format!("checkout_*: {WHY}"));
    }
    if !expect.sources.is_empty() {
        unevaluated.push(format!("sources: {WHY}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(yaml: &str) -> Expect {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn ok(stdout: &str) -> Outcome {
        Outcome { status: Some(0), stdout: stdout.into(), ..Outcome::default() }
    }

    fn failed(stderr: &str) -> Outcome {
        Outcome { status: Some(1), stderr: stderr.into(), ..Outcome::default() }
    }

    #[test]
    fn elements_must_match_in_order() {
        let e = expect("{result: ok, elements: [a.bst, b.bst]}");
        assert!(evaluate(&e, &ok("a.bst\nb.bst\n")).differences.is_empty());
        assert_eq!(evaluate(&e, &ok("b.bst\na.bst\n")).differences.len(), 1);
        let empty = expect("{result: ok, elements: []}");
        assert!(evaluate(&empty, &ok("\n")).differences.is_empty());
    }

    #[test]
    fn include_and_exclude() {
        let e = expect("{result: ok, elements_include: [b.bst], elements_exclude: [c.bst]}");
        assert!(evaluate(&e, &ok("a.bst\nb.bst\n")).differences.is_empty());
        assert_eq!(evaluate(&e, &ok("a.bst\nc.bst\n")).differences.len(), 2);
    }

    #[test]
    fn errors_compare_domain_reason_and_provenance() {
        let e = expect(
            "{result: error, domain: LOAD, reason: INVALID_DATA, stderr_contains: ['x.bst [line 4 column 4]'], stderr_excludes: [synthetic node]}",
        );
        let good = failed(
            "error: [LOAD/INVALID_DATA] x.bst [line 4 column 4]: bad\n{\"domain\":\"LOAD\",\"reason\":\"INVALID_DATA\",\"message\":\"x.bst [line 4 column 4]: bad\"}\n",
        );
        assert!(evaluate(&e, &good).differences.is_empty());
        let wrong = failed("{\"domain\":\"LOAD\",\"reason\":\"MISSING_FILE\",\"message\":\"synthetic node\"}\n");
        let diffs = evaluate(&e, &wrong).differences;
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        let any_reason = expect("{result: error, domain: LOAD, reason: null}");
        assert!(evaluate(&any_reason, &wrong).differences.is_empty());
        assert_eq!(evaluate(&any_reason, &failed("panicked\n")).differences.len(), 1);
        assert_eq!(evaluate(&any_reason, &ok("")).differences.len(), 1);
    }

    #[test]
    fn success_with_an_error_fails() {
        let e = expect("{result: ok, elements: [a.bst]}");
        let diffs = evaluate(&e, &failed("{\"domain\":\"LOAD\",\"reason\":\"MISSING_FILE\",\"message\":\"m\"}")).differences;
        assert_eq!(diffs, vec!["expected success, got exit status Some(1) with LOAD/MISSING_FILE".to_string()]);
    }

    #[test]
    fn checks_on_printed_vars() {
        let e = expect(
            "{result: ok, checks: [{of: vars, path: [included], equals: 'True', as_bool: true}, {of: vars, path: [gone], absent: true}, {of: vars, path: [n], equals: '2'}]}",
        );
        assert!(evaluate(&e, &ok("included: true\nn: 2\n")).differences.is_empty());
        let diffs = evaluate(&e, &ok("included: 'False'\ngone: x\nn: '3'\n")).differences;
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        // the target is printed last
        assert!(evaluate(&e, &ok("included: False\n\nincluded: True\nn: 2\n")).differences.is_empty());
    }

    #[test]
    fn per_element_groups_in_order() {
        let e = expect(
            "{result: ok, per_element: {a.bst: [{of: env, path: [MAKEFLAGS], equals: -j1}], b.bst: [{of: vars, path: [max-jobs], equals: '2'}]}, per_element_order: [a.bst, b.bst]}",
        );
        let out = "max-jobs: '1'\nMAKEFLAGS: -j1\n\nmax-jobs: '2'\nMAKEFLAGS: -j2\n";
        assert!(evaluate(&e, &ok(out)).differences.is_empty());
        let swapped = "max-jobs: '2'\nMAKEFLAGS: -j2\n\nmax-jobs: '1'\nMAKEFLAGS: -j1\n";
        assert_eq!(evaluate(&e, &ok(swapped)).differences.len(), 2);
        assert_eq!(evaluate(&e, &ok("max-jobs: '1'\n")).differences.len(), 1);
    }

    #[test]
    fn exact_output_and_dependency_configs() {
        let e = expect("{result: ok, output: \"a {name} a\\n\", dependency_configs: {s.bst: 2}}");
        let mut good = ok("a {name} a\n");
        good.stderr = "TEST PLUGIN FOUND 2 ENABLED DEPENDENCIES\n".into();
        assert!(evaluate(&e, &good).differences.is_empty());
        assert_eq!(evaluate(&e, &ok("a {name} a")).differences.len(), 2);
    }

    #[test]
    fn checkout_expectations_are_reported_unevaluated() {
        let e = expect("{result: ok, checkout_present: [pony.txt]}");
        let verdict = evaluate(&e, &ok(""));
        assert!(verdict.differences.is_empty());
        assert_eq!(verdict.unevaluated.len(), 1);
    }

    #[test]
    fn timeout_fails() {
        let e = expect("{result: ok}");
        let outcome = Outcome { timed_out: true, ..Outcome::default() };
        assert_eq!(evaluate(&e, &outcome).differences, vec!["timed out (killed)".to_string()]);
    }
}
