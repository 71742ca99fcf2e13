//! [`ByteSize`]: a size in bytes as written in configuration files: a plain
//! integer or a number with a unit (`512KiB`, `64MiB`, `10GiB`, `1TiB`, and
//! the decimal `KB`, `MB`, `GB`, `TB`). The one deserializer of sizes used by
//! every configuration type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: expected a number of bytes, optionally with a unit such as KiB, MiB, GiB, TiB, KB, MB, GB")]
pub struct ByteSizeError(String);

impl ByteSize {
    /// `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

const UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, ByteSizeError> {
        let err = || ByteSizeError(text.to_string());
        let trimmed = text.trim();
        let (number, multiplier) = UNITS
            .iter()
            .find_map(|(unit, mult)| trimmed.strip_suffix(unit).map(|n| (n.trim(), *mult)))
            .unwrap_or((trimmed, 1));
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let number: u64 = number.parse().map_err(|_| err())?;
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in UNITS.iter().take(4).rev() {
            if self.0 >= *mult && self.0.is_multiple_of(*mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("10GiB".parse::<ByteSize>().unwrap().bytes(), 10 << 30);
        assert_eq!("512 KiB".parse::<ByteSize>().unwrap().bytes(), 512 << 10);
        assert_eq!("3MB".parse::<ByteSize>().unwrap().bytes(), 3_000_000);
        assert_eq!("42".parse::<ByteSize>().unwrap().bytes(), 42);
        assert_eq!(serde_yaml_ng::from_str::<ByteSize>("4096").unwrap().bytes(), 4096);
        assert_eq!(serde_yaml_ng::from_str::<ByteSize>("1GiB").unwrap().bytes(), 1 << 30);
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "GiB", "-1", "1.5GiB", "ten", "99999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for n in [0u64, 7, 1 << 20, 3 << 30, 1000] {
            let s = ByteSize(n).to_string();
            assert_eq!(s.parse::<ByteSize>().unwrap().bytes(), n, "{s}");
        }
    }
}
