//! Canonical texts that many elements' key dicts share: the `public` and
//! `sandbox` members.
//!
//! It owns [`SharedTexts`]. Key decision: the loader interns equal mappings
//! and the input adapter keeps that sharing (one `Arc` per distinct
//! mapping), so these members are serialised once per distinct mapping,
//! found by address, instead of once per element (the `public` member with
//! its split rules is most of a dict's text). A mapping met only by address
//! is exact: equal addresses are the same value while the inputs are
//! borrowed. Anything not found (or whose serialisation failed, so that the
//! error names the element) is written the ordinary way.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::canonical::write_canonical;
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

/// `public` and `sandbox` texts by mapping address.
#[derive(Debug, Default)]
pub struct SharedTexts {
    public: FxHashMap<usize, String>,
    sandbox: FxHashMap<usize, String>,
}

impl SharedTexts {
    /// The texts of every distinct `public` and `sandbox` mapping of `inputs`.
    pub fn collect(inputs: &[ElementInput], host: &HostPlatform) -> Self {
        let mut publics: FxHashMap<usize, &Value> = FxHashMap::default();
        let mut sandboxes: FxHashMap<usize, &ElementInput> = FxHashMap::default();
        for input in inputs {
            if let Some(address) = address(&input.public) {
                publics.entry(address).or_insert(&input.public);
            }
            if let Some(address) = address(&input.sandbox) {
                sandboxes.entry(address).or_insert(input);
            }
        }
        let public = publics
            .into_par_iter()
            .map(|(address, public)| {
                let mut text = String::new();
                write_public(public, &mut text);
                (address, text)
            })
            .collect();
        let sandbox = sandboxes
            .into_par_iter()
            .filter_map(|(address, input)| {
                let mut text = String::new();
                write_sandbox(input, host, &mut text).ok()?;
                Some((address, text))
            })
            .collect();
        SharedTexts { public, sandbox }
    }

    /// The `public` member's value of `input`, if it is shared.
    pub fn public(&self, input: &ElementInput) -> Option<&str> {
        address(&input.public).and_then(|address| self.public.get(&address)).map(String::as_str)
    }

    /// Appends the `public` member's value of `input`.
    pub fn write_public(&self, input: &ElementInput, out: &mut String) {
        match self.public(input) {
            Some(text) => out.push_str(text),
            None => write_public(&input.public, out),
        }
    }

    /// Appends the `sandbox` member's value of `input`.
    pub fn write_sandbox(&self, input: &ElementInput, host: &HostPlatform, out: &mut String) -> Result<(), CacheKeyError> {
        match address(&input.sandbox).and_then(|address| self.sandbox.get(&address)) {
            Some(text) => {
                out.push_str(text);
                Ok(())
            }
            None => write_sandbox(input, host, out),
        }
    }
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

fn write_sandbox(input: &ElementInput, host: &HostPlatform, out: &mut String) -> Result<(), CacheKeyError> {
    write_canonical(&sandbox_dict(&input.full_name, &input.sandbox, host)?, out);
    Ok(())
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
    fn shared_and_unshared_values_give_the_same_text() {
        let public: Value = [("bst".to_owned(), Value::map())].into_iter().collect();
        let sandbox: Value = [("build-arch".to_owned(), Value::from("aarch64"))].into_iter().collect();
        let bad: Value = [("build-arch".to_owned(), Value::from("vax"))].into_iter().collect();
        let inputs = [input(&public, &sandbox), input(&public, &bad)];
        let shared = SharedTexts::collect(&inputs, &host());
        assert_eq!(shared.public.len(), 1, "one text per distinct mapping");
        assert_eq!(shared.sandbox.len(), 1, "a sandbox that fails is not kept");
        for texts in [&shared, &SharedTexts::default()] {
            let mut public_text = String::new();
            texts.write_public(&inputs[0], &mut public_text);
            assert_eq!(public_text, r#"{"bst":{"split-rules":{}}}"#);
            let mut sandbox_text = String::new();
            texts.write_sandbox(&inputs[0], &host(), &mut sandbox_text).unwrap();
            assert_eq!(sandbox_text, to_canonical(&sandbox_dict("e.bst", &sandbox, &host()).unwrap()));
            assert!(matches!(
                texts.write_sandbox(&inputs[1], &host(), &mut String::new()),
                Err(CacheKeyError::UnknownArchitecture { .. })
            ));
        }
    }
}
