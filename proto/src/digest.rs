//! [`Digest`]: a SHA-256 content digest (hash and size) that is valid by
//! construction.
//!
//! A raw proto digest (`reapi::Digest`) is converted with
//! [`Digest::try_from`] at the wire boundary; past that point a digest is known
//! to be 64 lower-case hex digits and a non-negative size.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::reapi;

/// Length of a SHA-256 hash in bytes.
pub const HASH_LEN: usize = 32;

/// Why a digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The hash is not 64 lower-case hexadecimal digits.
    #[error("invalid digest hash {hash:?}: expected 64 lower-case hex digits (SHA-256)")]
    InvalidHash {
        /// The hash as received.
        hash: String,
    },
    /// The size is negative or not a number.
    #[error("invalid digest size {size:?}: expected a non-negative integer")]
    InvalidSize {
        /// The size as received.
        size: String,
    },
    /// The text form is not `hash/size`.
    #[error("invalid digest {text:?}: expected HASH/SIZE")]
    InvalidForm {
        /// The text as received.
        text: String,
    },
    /// No digest was given where one is required.
    #[error("missing digest")]
    Missing,
}

/// A validated SHA-256 digest: the hash of a blob and its size in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hash: [u8; HASH_LEN],
    size: u64,
}

impl Digest {
    /// A digest from raw hash bytes and a size.
    pub const fn new(hash: [u8; HASH_LEN], size: u64) -> Self {
        Digest { hash, size }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        let hash: [u8; HASH_LEN] = Sha256::digest(data).into();
        Digest { hash, size: data.len() as u64 }
    }

    /// The digest of everything `reader` yields, read in chunks so that large
    /// files are never held in memory.
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Digest { hash: hasher.finalize().into(), size })
    }

    /// The digest of the empty blob.
    pub fn empty() -> Self {
        Digest::of(&[])
    }

    /// Parses a lower-case hex hash and a size given separately.
    pub fn from_parts(hash: &str, size: i64) -> Result<Self, DigestError> {
        let size = u64::try_from(size).map_err(|_| DigestError::InvalidSize { size: size.to_string() })?;
        Ok(Digest { hash: parse_hash(hash)?, size })
    }

    /// The raw hash bytes.
    pub fn hash_bytes(&self) -> &[u8; HASH_LEN] {
        &self.hash
    }

    /// The hash as 64 lower-case hex digits.
    pub fn hash_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(HASH_LEN * 2);
        for byte in self.hash {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        out
    }

    /// The size of the blob in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The proto form.
    pub fn to_proto(&self) -> reapi::Digest {
        reapi::Digest { hash: self.hash_hex(), size_bytes: self.size as i64 }
    }
}

/// Lowercase hex only (REAPI's canonical form), decoded in one pass: every
/// digest off the wire goes through here.
fn parse_hash(hash: &str) -> Result<[u8; HASH_LEN], DigestError> {
    let invalid = || DigestError::InvalidHash { hash: hash.chars().take(80).collect() };
    let bytes = hash.as_bytes();
    if bytes.len() != HASH_LEN * 2 {
        return Err(invalid());
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; HASH_LEN];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else { return Err(invalid()) };
        *byte = high << 4 | low;
    }
    Ok(out)
}

impl TryFrom<&reapi::Digest> for Digest {
    type Error = DigestError;

    fn try_from(proto: &reapi::Digest) -> Result<Self, DigestError> {
        Digest::from_parts(&proto.hash, proto.size_bytes)
    }
}

impl TryFrom<Option<&reapi::Digest>> for Digest {
    type Error = DigestError;

    fn try_from(proto: Option<&reapi::Digest>) -> Result<Self, DigestError> {
        proto.ok_or(DigestError::Missing).and_then(Digest::try_from)
    }
}

impl From<Digest> for reapi::Digest {
    fn from(digest: Digest) -> Self {
        digest.to_proto()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses the `hash/size` text form.
    fn from_str(text: &str) -> Result<Self, DigestError> {
        let (hash, size) = text.split_once('/').ok_or_else(|| DigestError::InvalidForm { text: text.into() })?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DigestError::InvalidSize { size: size.into() });
        }
        let size: u64 = size.parse().map_err(|_| DigestError::InvalidSize { size: size.into() })?;
        if size > i64::MAX as u64 {
            return Err(DigestError::InvalidSize { size: size.to_string() });
        }
        Ok(Digest { hash: parse_hash(hash)?, size })
    }
}

impl fmt::Display for Digest {
    /// Formats as `hash/size`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash_hex(), self.size)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_blob_digest_is_the_well_known_one() {
        assert_eq!(Digest::empty().hash_hex(), EMPTY);
        assert_eq!(Digest::empty().size(), 0);
    }

    #[test]
    fn text_form_round_trips() {
        let digest = Digest::of(b"hello");
        let text = digest.to_string();
        assert_eq!(text.parse::<Digest>().unwrap(), digest);
        assert!(text.ends_with("/5"));
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "", "/", "abc/1", EMPTY, &format!("{EMPTY}/"), &format!("{EMPTY}/-1"),
            &format!("{EMPTY}/+1"), &format!("{}/0", EMPTY.to_uppercase()), &format!("{EMPTY}0/0"),
            &format!("{EMPTY}/99999999999999999999"), &format!("{EMPTY}/9223372036854775808"),
            &format!("{}g/0", &EMPTY[..63]), "é/0",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "accepted {bad:?}");
        }
        assert!(Digest::from_parts(EMPTY, -1).is_err());
        assert!(Digest::try_from(None).is_err());
    }

    #[test]
    fn reader_digest_equals_slice_digest() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(Digest::of_reader(&data[..]).unwrap(), Digest::of(&data));
        assert_eq!(Digest::of_reader(&[][..]).unwrap(), Digest::empty());
    }

    #[test]
    fn proto_round_trips() {
        let digest = Digest::of(b"x");
        assert_eq!(Digest::try_from(&digest.to_proto()).unwrap(), digest);
    }
}
