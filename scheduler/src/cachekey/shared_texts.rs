//! Canonical text that many elements' key dicts share: the members between
//! the element's own ones and its sources (`environment`, `fatal-warnings`,
//! `public` and `sandbox`).
//!
//! It owns [`SharedTexts`]. Key decision: the loader interns equal mappings
//! and the input adapter keeps that sharing (one `Arc` per distinct
//! mapping, one per project for the fatal warnings), so this part of the
//! dict is serialised once per distinct combination, found by the
//! addresses of its parts, instead of once per element (`public` with its
//! split rules and the environment are most of a dict's text). Addresses
//! are exact: equal addresses are the same value while the inputs are
//! borrowed. Anything not found (or whose serialisation failed, so that the
//! error names the element) is written the ordinary way.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::canonical::{write_array, write_canonical, write_object, write_string};
use super::element_input::ElementInput;
use super::sandbox::{sandbox_dict, HostPlatform};
use super::value::Value;
use super::CacheKeyError;

/// The address of a shared mapping (`None` for other values).
fn address(value: &Value) -> Option<usize> {
    match value {
        Value::Map(map) => Some(Arc::as_ptr(map) as usize),
        _ => None,
    }
}

/// What the shared members of an element's dict are made of: the
/// addresses of its environment, `environment-nocache` set, fatal
/// warnings, public data and sandbox, and whether its kind runs commands
/// (only then are `environment` and `sandbox` members).
type MiddleKey = ([usize; 5], bool);

fn middle_key(input: &ElementInput, run_commands: bool) -> Option<MiddleKey> {
    let addresses = [
        Arc::as_ptr(&input.environment) as usize,
        Arc::as_ptr(&input.environment_nocache) as usize,
        input.fatal_warnings.as_ptr() as usize,
        address(&input.public)?,
        address(&input.sandbox)?,
    ];
    Some((addresses, run_commands))
}

/// The shared members' texts by what they are made of.
#[derive(Debug, Default)]
pub struct SharedTexts {
    middles: FxHashMap<MiddleKey, String>,
}

impl SharedTexts {
    /// The texts of every distinct combination among `inputs`, for kinds
    /// that run commands and for those that do not.
    pub fn collect(inputs: &[ElementInput], host: &HostPlatform) -> Self {
        let mut distinct: FxHashMap<[usize; 5], &ElementInput> = FxHashMap::default();
        for input in inputs {
            if let Some((addresses, _)) = middle_key(input, false) {
                distinct.entry(addresses).or_insert(input);
            }
        }
        let middles = distinct
            .into_par_iter()
            .flat_map_iter(|(addresses, input)| {
                [false, true].into_iter().filter_map(move |run_commands| {
                    let mut text = String::new();
                    write_middle(input, run_commands, host, &mut text).ok()?;
                    Some(((addresses, run_commands), text))
                })
            })
            .collect();
        SharedTexts { middles }
    }

    /// The shared members of `input`'s dict, when they are shared
    /// (`run_commands`: its kind's `BST_RUN_COMMANDS`).
    pub fn middle(&self, input: &ElementInput, run_commands: bool) -> Option<&str> {
        self.middles.get(&middle_key(input, run_commands)?).map(String::as_str)
    }
}

/// Appends the members from `environment` to `sandbox` of `input`'s dict,
/// each with its leading comma (spec §3).
pub fn write_middle(
    input: &ElementInput,
    run_commands: bool,
    host: &HostPlatform,
    out: &mut String,
) -> Result<(), CacheKeyError> {
    if run_commands {
        out.push_str(",\"environment\":");
        let cached = input.environment.iter().filter(|(name, _)| !input.environment_nocache.contains(*name));
        write_object(cached, out, |value, out| write_string(value, out));
    }
    out.push_str(",\"fatal-warnings\":");
    let mut warnings: Vec<&str> = input.fatal_warnings.iter().map(String::as_str).collect();
    warnings.sort_unstable();
    write_array(warnings, out, write_string);
    out.push_str(",\"public\":");
    write_public(&input.public, out);
    if run_commands {
        out.push_str(",\"sandbox\":");
        write_canonical(&sandbox_dict(&input.full_name, &input.sandbox, host)?, out);
    }
    Ok(())
}

/// The element's public data, guaranteed to hold `bst.split-rules` (spec §5.4).
fn write_public(public: &Value, out: &mut String) {
    if public.get("bst").and_then(|bst| bst.get("split-rules")).is_some() {
        write_canonical(public, out);
    } else {
        write_canonical(&public_with_split_rules(public), out);
    }
}

/// `public` with an empty `bst.split-rules` added where there is none.
pub(super) fn public_with_split_rules(public: &Value) -> Value {
    let mut public = match public {
        Value::Map(map) => BTreeMap::clone(map),
        _ => BTreeMap::new(),
    };
    let bst = public.entry("bst".into()).or_insert_with(Value::map);
    if let Value::Map(bst) = bst {
        Arc::make_mut(bst).entry("split-rules".into()).or_insert_with(Value::map);
    }
    Value::Map(Arc::new(public))
}

#[cfg(test)]
mod tests {
    use super::super::canonical::to_canonical;
    use super::*;

    fn host() -> HostPlatform {
        HostPlatform { os: "linux".into(), arch: "x86-64".into() }
    }

    fn input(public: &Value, sandbox: &Value) -> ElementInput<'static> {
        ElementInput { full_name: "e.bst".into(), public: public.clone(), sandbox: sandbox.clone(), ..Default::default() }
    }

    #[test]
    fn shared_and_unshared_middles_give_the_same_text() {
        let public: Value = [("bst".to_owned(), Value::map())].into_iter().collect();
        let sandbox: Value = [("build-arch".to_owned(), Value::from("aarch64"))].into_iter().collect();
        let bad: Value = [("build-arch".to_owned(), Value::from("vax"))].into_iter().collect();
        let first = input(&public, &sandbox);
        let inputs = [first.clone(), first, input(&public, &bad)];
        let shared = SharedTexts::collect(&inputs, &host());
        assert_eq!(shared.middles.len(), 3, "one text per distinct combination and kind of plugin, none that fails");
        assert!(shared.middle(&inputs[2], false).is_some(), "without commands the sandbox is not written");
        assert!(shared.middle(&inputs[2], true).is_none(), "a sandbox that fails is not kept");
        for run_commands in [false, true] {
            let mut written = String::new();
            write_middle(&inputs[0], run_commands, &host(), &mut written).unwrap();
            assert_eq!(shared.middle(&inputs[1], run_commands), Some(written.as_str()));
        }
        let mut written = String::new();
        write_middle(&inputs[0], true, &host(), &mut written).unwrap();
        let sandbox_text = to_canonical(&sandbox_dict("e.bst", &sandbox, &host()).unwrap());
        assert!(written.ends_with(&format!(r#","public":{{"bst":{{"split-rules":{{}}}}}},"sandbox":{sandbox_text}"#)));
        assert!(matches!(
            write_middle(&inputs[2], true, &host(), &mut String::new()),
            Err(CacheKeyError::UnknownArchitecture { .. })
        ));
    }
}
