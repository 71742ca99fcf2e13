//! Rates reported in the JSON: MB/s (10^6 bytes) and operations per second,
//! rounded as `reapi_bench.py` rounds them (0.1 MB/s, whole operations).

/// `bytes` moved in `seconds`, in MB/s (10^6 bytes) rounded to 0.1.
pub fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    round1(bytes as f64 / 1e6 / seconds)
}

/// `count` operations in `seconds`, per second, rounded to a whole number.
pub fn per_s(count: usize, seconds: f64) -> f64 {
    (count as f64 / seconds).round()
}

/// `value` rounded to one decimal.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_like_the_python_client() {
        assert_eq!(mb_per_s(256 << 20, 0.25), 1073.7);
        assert_eq!(per_s(2000, 0.7), 2857.0);
        assert_eq!(round1(0.04), 0.0);
    }
}
