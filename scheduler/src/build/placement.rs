//! [`Placement`]: which execution endpoint runs an action — round-robin over
//! the endpoints whose platform matches, moving on to the next one on a
//! retry.
//!
//! Key decision: an endpoint declares the platform properties it offers; an
//! action matches when every property it asks for is offered with the same
//! value. An endpoint that declares nothing accepts everything (a REAPI
//! cluster does its own matching).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An execution endpoint's offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// Platform properties the endpoint provides (empty: anything).
    pub platform: BTreeMap<String, String>,
}

impl Offer {
    /// Whether an action asking for `wanted` can run here.
    pub fn matches(&self, wanted: &BTreeMap<String, String>) -> bool {
        self.platform.is_empty() || wanted.iter().all(|(k, v)| self.platform.get(k) == Some(v))
    }
}

/// Round-robin placement over endpoint offers.
#[derive(Debug, Default)]
pub struct Placement {
    offers: Vec<Offer>,
    next: AtomicUsize,
}

impl Placement {
    /// Placement over `offers` (indices are endpoint indices).
    pub fn new(offers: Vec<Offer>) -> Self {
        Placement { offers, next: AtomicUsize::new(0) }
    }

    /// The endpoint for an action asking for `wanted`: successive calls
    /// rotate over the matching endpoints, and `avoid` (the endpoint a failed
    /// attempt ran on) is passed over when another one matches.
    pub fn choose(&self, wanted: &BTreeMap<String, String>, avoid: Option<usize>) -> Option<usize> {
        let matching: Vec<usize> = (0..self.offers.len()).filter(|&i| self.offers[i].matches(wanted)).collect();
        if matching.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = matching[turn % matching.len()];
        if Some(chosen) == avoid && matching.len() > 1 {
            return Some(matching[(turn + 1) % matching.len()]);
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rotates_over_matching_endpoints_only() {
        let placement = Placement::new(vec![
            Offer { platform: props(&[("ISA", "x86-64"), ("OSFamily", "linux")]) },
            Offer { platform: props(&[("ISA", "aarch64"), ("OSFamily", "linux")]) },
            Offer { platform: props(&[("ISA", "x86-64"), ("OSFamily", "linux")]) },
        ]);
        let x86 = props(&[("ISA", "x86-64")]);
        let chosen: Vec<_> = (0..4).map(|_| placement.choose(&x86, None).unwrap()).collect();
        assert_eq!(chosen, [0, 2, 0, 2]);
        assert_eq!(placement.choose(&props(&[("ISA", "aarch64")]), None), Some(1));
        assert_eq!(placement.choose(&props(&[("ISA", "riscv64")]), None), None);
    }

    #[test]
    fn a_retry_moves_to_another_endpoint_and_open_offers_take_anything() {
        let placement = Placement::new(vec![Offer::default(), Offer::default()]);
        let any = props(&[("ISA", "x86-64")]);
        for _ in 0..4 {
            let first = placement.choose(&any, None).unwrap();
            let retry = placement.choose(&any, Some(first)).unwrap();
            assert_ne!(first, retry);
        }
        let single = Placement::new(vec![Offer::default()]);
        assert_eq!(single.choose(&any, Some(0)), Some(0));
    }
}
