//! CPython 3.12's list sort, ported for sorting direct dependencies with
//! BuildStream's non-total comparison (spec §13.2).
//!
//! Key decision: the comparison is not a total order, so the result depends
//! on the algorithm. Lists shorter than 64 (the usual case) follow CPython
//! exactly: leading run detection (ascending, or strictly descending then
//! reversed) and binary insertion. Longer lists are cut into the same runs and
//! merged with a plain stable merge (CPython's galloping is not ported; it can
//! only matter for non-total orders on lists of 64 or more dependencies).

use std::cmp::Ordering;

/// Sorts `items` in place; `less(a, b)` is Python's `a < b`.
pub fn timsort<T, F: FnMut(&T, &T) -> bool>(items: &mut [T], mut less: F) {
    let n = items.len();
    if n < 2 {
        return;
    }
    let minrun = compute_minrun(n);
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut lo = 0;
    while lo < n {
        let (mut run, descending) = count_run(&items[lo..], &mut less);
        if descending {
            items[lo..lo + run].reverse();
        }
        if run < minrun {
            let force = (n - lo).min(minrun);
            binary_insertion(&mut items[lo..lo + force], run, &mut less);
            run = force;
        }
        runs.push((lo, run));
        lo += run;
    }
    // Merge adjacent runs left to right (stable).
    while runs.len() > 1 {
        let mut merged = Vec::with_capacity(runs.len().div_ceil(2));
        let mut i = 0;
        while i < runs.len() {
            if i + 1 < runs.len() {
                let (a, alen) = runs[i];
                let (_, blen) = runs[i + 1];
                merge(&mut items[a..a + alen + blen], alen, &mut less);
                merged.push((a, alen + blen));
                i += 2;
            } else {
                merged.push(runs[i]);
                i += 1;
            }
        }
        runs = merged;
    }
}

/// Sorts with a three-way comparison (`cmp_to_key`).
pub fn timsort_by<T, F: FnMut(&T, &T) -> Ordering>(items: &mut [T], mut cmp: F) {
    timsort(items, |a, b| cmp(a, b) == Ordering::Less)
}

fn compute_minrun(mut n: usize) -> usize {
    let mut r = 0;
    while n >= 64 {
        r |= n & 1;
        n >>= 1;
    }
    n + r
}

fn count_run<T, F: FnMut(&T, &T) -> bool>(items: &[T], less: &mut F) -> (usize, bool) {
    if items.len() == 1 {
        return (1, false);
    }
    let mut n = 2;
    if less(&items[1], &items[0]) {
        while n < items.len() && less(&items[n], &items[n - 1]) {
            n += 1;
        }
        (n, true)
    } else {
        while n < items.len() && !less(&items[n], &items[n - 1]) {
            n += 1;
        }
        (n, false)
    }
}

/// CPython's `binarysort`: `items[..start]` is sorted; insert the rest.
fn binary_insertion<T, F: FnMut(&T, &T) -> bool>(items: &mut [T], start: usize, less: &mut F) {
    let start = start.max(1);
    for i in start..items.len() {
        let mut l = 0;
        let mut r = i;
        while l < r {
            let p = l + ((r - l) >> 1);
            if less(&items[i], &items[p]) {
                r = p;
            } else {
                l = p + 1;
            }
        }
        items[l..=i].rotate_right(1);
    }
}

fn merge<T, F: FnMut(&T, &T) -> bool>(items: &mut [T], mid: usize, less: &mut F) {
    // Stable merge by repeated insertion of the right run's items.
    let mut i = 0;
    let mut j = mid;
    while i < j && j < items.len() {
        if less(&items[j], &items[i]) {
            items[i..=j].rotate_right(1);
            j += 1;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_a_stable_sort_on_total_orders() {
        let mut v: Vec<(u32, usize)> = (0..300).map(|i| (((i * 7919) % 13) as u32, i)).collect();
        let mut expected = v.clone();
        expected.sort_by_key(|x| x.0);
        timsort(&mut v, |a, b| a.0 < b.0);
        assert_eq!(v, expected);
    }

    #[test]
    fn descending_runs_are_reversed_then_inserted() {
        // CPython: sorted([3, 2, 1, 5, 4]) detects [3, 2, 1] as a descending run.
        let mut v = vec![3, 2, 1, 5, 4];
        let mut comparisons = 0;
        timsort(&mut v, |a, b| {
            comparisons += 1;
            a < b
        });
        assert_eq!(v, [1, 2, 3, 4, 5]);
        // 3 for the run, then binary insertion of 5 (2) and 4 (2 or 3).
        assert!(comparisons <= 8, "{comparisons}");
    }
}
