//! Reading the `--json` events of `weir build` (one JSON object per line on
//! stdout, see docs/cli.md).

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::Value;

/// The events a run printed (lines that are not JSON are skipped).
pub fn parse(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// How many events of `kind` (`"finished"`, `"cached"`, ...) there are.
pub fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// Element → strong key, from the `finished` and `cached` events.
pub fn keys(events: &[Value]) -> BTreeMap<String, String> {
    events
        .iter()
        .filter(|e| e["event"] == "finished" || e["event"] == "cached")
        .map(|e| (e["element"].as_str().unwrap_or_default().to_string(), e["key"].as_str().unwrap_or_default().to_string()))
        .collect()
}
