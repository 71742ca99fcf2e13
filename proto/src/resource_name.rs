//! [`ResourceName`]: ByteStream resource names for CAS blobs, parsed once at
//! the server boundary and formatted by clients.
//!
//! Forms (REAPI v2, `ContentAddressableStorage` service comment):
//! * download: `{instance}/blobs/{digest_function/}{hash}/{size}`
//! * download, compressed:
//!   `{instance}/compressed-blobs/{compressor}/{digest_function/}{hash}/{size}`
//! * upload: `{instance}/uploads/{uuid}/blobs/{digest_function/}{hash}/{size}{/metadata}`
//! * upload, compressed:
//!   `{instance}/uploads/{uuid}/compressed-blobs/{compressor}/{digest_function/}{hash}/{size}{/metadata}`
//!
//! The instance name may span several segments; with an empty instance
//! the leading `/` is omitted. No instance segment may be empty or equal to
//! one of REAPI's keywords (`blobs`, `uploads`, `actions`, `actionResults`,
//! `operations`, `capabilities`, `compressed-blobs`) — which is what makes
//! the first keyword segment the end of the instance name.
//!
//! Key decision: the optional `digest_function` segment (newer REAPI) is
//! recognised by name (`sha256`, `blake3`, `sha256tree`, ...) and kept, but
//! the hash must still be a 64-hex-digit [`Digest`]; deciding whether the
//! function is supported is the server's business. The upload id is any
//! non-empty segment (clients are asked for a UUID but servers need not
//! care). Parsing never panics; every refusal is a [`ResourceNameError`].

use std::fmt;

use crate::reapi::{compressor, digest_function};
use crate::{Digest, DigestError};

/// Segments an instance name may not contain.
pub const RESERVED_SEGMENTS: [&str; 7] =
    ["blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs"];

/// Why a resource name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceNameError {
    /// The name contains no `blobs`, `compressed-blobs` or `uploads` segment.
    #[error("resource name {name:?} has no blobs/, compressed-blobs/ or uploads/ segment")]
    NotABlob {
        /// The name as received (truncated).
        name: String,
    },
    /// An instance name segment is empty (a leading, trailing or doubled `/`).
    #[error("instance name has an empty segment")]
    EmptyInstanceSegment,
    /// An instance name segment is one of REAPI's reserved keywords.
    #[error("instance name segment {segment:?} is a reserved keyword")]
    ReservedInstanceSegment {
        /// The offending segment.
        segment: String,
    },
    /// An upload name has no upload id after `uploads/`.
    #[error("upload resource name has an empty or missing upload id")]
    MissingUploadId,
    /// The compressor is not one REAPI defines.
    #[error("unknown compressor {name:?} (expected identity, zstd, deflate or brotli)")]
    UnknownCompressor {
        /// The compressor segment as received (truncated).
        name: String,
    },
    /// The hash or size segment is missing.
    #[error("resource name ends before {missing}")]
    Truncated {
        /// What is missing (`the hash`, `the size`, ...).
        missing: &'static str,
    },
    /// The hash or size is malformed.
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),
    /// Segments follow the size in a download name, or an upload name is
    /// used where a download is expected (or the reverse).
    #[error("{0}")]
    WrongForm(&'static str),
}

/// A compression format of `compressed-blobs` resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// No compression.
    Identity,
    /// Zstandard.
    Zstd,
    /// DEFLATE (RFC 1951).
    Deflate,
    /// Brotli.
    Brotli,
}

impl Compressor {
    /// The lower-case name used in resource names.
    pub fn as_str(self) -> &'static str {
        match self {
            Compressor::Identity => "identity",
            Compressor::Zstd => "zstd",
            Compressor::Deflate => "deflate",
            Compressor::Brotli => "brotli",
        }
    }

    /// Parses the lower-case name used in resource names.
    pub fn parse(name: &str) -> Result<Self, ResourceNameError> {
        [Compressor::Identity, Compressor::Zstd, Compressor::Deflate, Compressor::Brotli]
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| ResourceNameError::UnknownCompressor { name: truncate(name) })
    }

    /// The REAPI enum value.
    pub fn to_proto(self) -> compressor::Value {
        match self {
            Compressor::Identity => compressor::Value::Identity,
            Compressor::Zstd => compressor::Value::Zstd,
            Compressor::Deflate => compressor::Value::Deflate,
            Compressor::Brotli => compressor::Value::Brotli,
        }
    }
}

/// A parsed, valid ByteStream resource name for a CAS blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceName {
    instance_name: String,
    upload_id: Option<String>,
    compressor: Option<Compressor>,
    digest_function: Option<digest_function::Value>,
    digest: Digest,
    metadata: Option<String>,
}

impl ResourceName {
    /// A download name `{instance}/blobs/{hash}/{size}`.
    pub fn download(instance_name: &str, digest: Digest) -> Result<Self, ResourceNameError> {
        validate_instance_name(instance_name)?;
        Ok(ResourceName {
            instance_name: instance_name.to_owned(),
            upload_id: None,
            compressor: None,
            digest_function: None,
            digest,
            metadata: None,
        })
    }

    /// An upload name `{instance}/uploads/{upload_id}/blobs/{hash}/{size}`;
    /// `upload_id` should be a fresh version-4 UUID.
    pub fn upload(instance_name: &str, upload_id: &str, digest: Digest) -> Result<Self, ResourceNameError> {
        if upload_id.is_empty() || upload_id.contains('/') {
            return Err(ResourceNameError::MissingUploadId);
        }
        let mut name = ResourceName::download(instance_name, digest)?;
        name.upload_id = Some(upload_id.to_owned());
        Ok(name)
    }

    /// The same resource in `compressed-blobs` form.
    pub fn compressed(mut self, compressor: Compressor) -> Self {
        self.compressor = Some(compressor);
        self
    }

    /// Parses a name of any of the four forms.
    pub fn parse(name: &str) -> Result<Self, ResourceNameError> {
        Parser::new(name).parse()
    }

    /// Parses the name of a ByteStream `Read`: a download form.
    pub fn parse_download(name: &str) -> Result<Self, ResourceNameError> {
        let parsed = ResourceName::parse(name)?;
        match parsed.upload_id {
            None => Ok(parsed),
            Some(_) => Err(ResourceNameError::WrongForm("an upload resource name cannot be read")),
        }
    }

    /// Parses the name of a ByteStream `Write`: an upload form.
    pub fn parse_upload(name: &str) -> Result<Self, ResourceNameError> {
        let parsed = ResourceName::parse(name)?;
        match parsed.upload_id {
            Some(_) => Ok(parsed),
            None => Err(ResourceNameError::WrongForm("a write needs an uploads/{uuid}/ resource name")),
        }
    }

    /// The instance name (`""` for the default instance).
    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// The upload id, for upload names.
    pub fn upload_id(&self) -> Option<&str> {
        self.upload_id.as_deref()
    }

    /// Whether this is an upload name.
    pub fn is_upload(&self) -> bool {
        self.upload_id.is_some()
    }

    /// The compressor, for `compressed-blobs` names.
    pub fn compressor(&self) -> Option<Compressor> {
        self.compressor
    }

    /// The explicit digest function segment, when the name carries one.
    pub fn digest_function(&self) -> Option<digest_function::Value> {
        self.digest_function
    }

    /// The digest of the (uncompressed) blob.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Trailing implementation-specific metadata of an upload name.
    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
    }
}

impl fmt::Display for ResourceName {
    /// Formats the name in the form it was parsed or built in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.instance_name.is_empty() {
            write!(f, "{}/", self.instance_name)?;
        }
        if let Some(id) = &self.upload_id {
            write!(f, "uploads/{id}/")?;
        }
        match self.compressor {
            Some(compressor) => write!(f, "compressed-blobs/{}/", compressor.as_str())?,
            None => f.write_str("blobs/")?,
        }
        if let Some(function) = self.digest_function {
            write!(f, "{}/", function.as_str_name().to_ascii_lowercase())?;
        }
        write!(f, "{}/{}", self.digest.hash_hex(), self.digest.size())?;
        if let Some(metadata) = &self.metadata {
            write!(f, "/{metadata}")?;
        }
        Ok(())
    }
}

/// Checks an instance name: `""`, or `/`-separated non-empty segments none
/// of which is a reserved keyword.
pub fn validate_instance_name(instance_name: &str) -> Result<(), ResourceNameError> {
    if instance_name.is_empty() {
        return Ok(());
    }
    instance_name.split('/').try_for_each(check_instance_segment)
}

fn check_instance_segment(segment: &str) -> Result<(), ResourceNameError> {
    if segment.is_empty() {
        Err(ResourceNameError::EmptyInstanceSegment)
    } else if RESERVED_SEGMENTS.contains(&segment) {
        Err(ResourceNameError::ReservedInstanceSegment { segment: segment.to_owned() })
    } else {
        Ok(())
    }
}

/// Walks the segments of one resource name left to right.
struct Parser<'a> {
    name: &'a str,
    segments: std::str::Split<'a, char>,
}

impl<'a> Parser<'a> {
    fn new(name: &'a str) -> Self {
        Parser { name, segments: name.split('/') }
    }

    fn parse(mut self) -> Result<ResourceName, ResourceNameError> {
        let mut instance: Vec<&str> = Vec::new();
        let keyword = loop {
            match self.segments.next() {
                None => return Err(ResourceNameError::NotABlob { name: truncate(self.name) }),
                Some(segment @ ("uploads" | "blobs" | "compressed-blobs")) => break segment,
                Some(segment) => instance.push(segment),
            }
        };
        instance.iter().try_for_each(|segment| check_instance_segment(segment))?;
        let (upload_id, keyword) = if keyword == "uploads" {
            let id = self.segments.next().filter(|id| !id.is_empty()).ok_or(ResourceNameError::MissingUploadId)?;
            match self.segments.next() {
                Some(kind @ ("blobs" | "compressed-blobs")) => (Some(id.to_owned()), kind),
                _ => return Err(ResourceNameError::WrongForm("expected blobs/ or compressed-blobs/ after the upload id")),
            }
        } else {
            (None, keyword)
        };
        let compressor = match keyword {
            "compressed-blobs" => {
                Some(Compressor::parse(self.segments.next().ok_or(ResourceNameError::Truncated { missing: "the compressor" })?)?)
            }
            _ => None,
        };
        let mut hash = self.segments.next().ok_or(ResourceNameError::Truncated { missing: "the hash" })?;
        let digest_function = digest_function_named(hash);
        if digest_function.is_some() {
            hash = self.segments.next().ok_or(ResourceNameError::Truncated { missing: "the hash" })?;
        }
        let size = self.segments.next().ok_or(ResourceNameError::Truncated { missing: "the size" })?;
        let digest = parse_digest(hash, size)?;
        let rest: Vec<&str> = self.segments.collect();
        let metadata = match (rest.is_empty(), upload_id.is_some()) {
            (true, _) => None,
            (false, true) => Some(rest.join("/")),
            (false, false) => return Err(ResourceNameError::WrongForm("a download resource name ends with the size")),
        };
        Ok(ResourceName {
            instance_name: instance.join("/"),
            upload_id,
            compressor,
            digest_function,
            digest,
            metadata,
        })
    }
}

/// The digest function a lower-case segment names, if it names one.
fn digest_function_named(segment: &str) -> Option<digest_function::Value> {
    if segment.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    digest_function::Value::from_str_name(&segment.to_ascii_uppercase())
        .filter(|function| *function != digest_function::Value::Unknown)
}

fn parse_digest(hash: &str, size: &str) -> Result<Digest, ResourceNameError> {
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigestError::InvalidSize { size: truncate(size) }.into());
    }
    let size: i64 = size.parse().map_err(|_| DigestError::InvalidSize { size: truncate(size) })?;
    Ok(Digest::from_parts(hash, size)?)
}

/// Keeps error messages bounded whatever a peer sends.
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"blob")
    }

    fn hs() -> String {
        format!("{}/{}", digest().hash_hex(), digest().size())
    }

    #[test]
    fn parses_all_four_forms() {
        let read = ResourceName::parse(&format!("main/blobs/{}", hs())).unwrap();
        assert_eq!((read.instance_name(), read.is_upload(), read.compressor()), ("main", false, None));
        assert_eq!(read.digest(), digest());

        let read_z = ResourceName::parse(&format!("compressed-blobs/zstd/{}", hs())).unwrap();
        assert_eq!((read_z.instance_name(), read_z.compressor()), ("", Some(Compressor::Zstd)));

        let write = ResourceName::parse(&format!("a/b/uploads/1234-uuid/blobs/{}/meta/data", hs())).unwrap();
        assert_eq!(write.instance_name(), "a/b");
        assert_eq!(write.upload_id(), Some("1234-uuid"));
        assert_eq!(write.metadata(), Some("meta/data"));

        let write_z = ResourceName::parse(&format!("uploads/u/compressed-blobs/deflate/{}", hs())).unwrap();
        assert_eq!((write_z.compressor(), write_z.metadata()), (Some(Compressor::Deflate), None));
        let identity = ResourceName::parse(&format!("compressed-blobs/identity/{}", hs())).unwrap();
        assert_eq!(identity.compressor(), Some(Compressor::Identity));
    }

    #[test]
    fn digest_function_segment_is_recognised() {
        let name = ResourceName::parse(&format!("i/blobs/blake3/{}", hs())).unwrap();
        assert_eq!(name.digest_function(), Some(digest_function::Value::Blake3));
        let name = ResourceName::parse(&format!("uploads/u/compressed-blobs/zstd/sha256/{}", hs())).unwrap();
        assert_eq!(name.digest_function(), Some(digest_function::Value::Sha256));
        assert!(ResourceName::parse(&format!("blobs/SHA256/{}", hs())).is_err());
        assert!(ResourceName::parse(&format!("blobs/unknown/{}", hs())).is_err());
    }

    #[test]
    fn formatting_round_trips() {
        let names = [
            ResourceName::download("", digest()).unwrap(),
            ResourceName::download("x/y", digest()).unwrap().compressed(Compressor::Zstd),
            ResourceName::upload("inst", "5f0c1a4e-0000-4000-8000-000000000000", digest()).unwrap(),
            ResourceName::upload("", "u", digest()).unwrap().compressed(Compressor::Deflate),
        ];
        for name in names {
            assert_eq!(ResourceName::parse(&name.to_string()).unwrap(), name, "{name}");
        }
        assert_eq!(ResourceName::download("", digest()).unwrap().to_string(), format!("blobs/{}", hs()));
        for text in [format!("a/uploads/u/blobs/blake3/{}/m", hs()), format!("compressed-blobs/brotli/{}", hs())] {
            assert_eq!(ResourceName::parse(&text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_names() {
        let h = hs();
        type Check = fn(&ResourceNameError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (String::new(), |e| matches!(e, ResourceNameError::NotABlob { .. })),
            ("instance/only".into(), |e| matches!(e, ResourceNameError::NotABlob { .. })),
            (format!("/blobs/{h}"), |e| *e == ResourceNameError::EmptyInstanceSegment),
            (format!("a//b/blobs/{h}"), |e| *e == ResourceNameError::EmptyInstanceSegment),
            (format!("actions/blobs/{h}"), |e| matches!(e, ResourceNameError::ReservedInstanceSegment { .. })),
            (format!("x/operations/blobs/{h}"), |e| matches!(e, ResourceNameError::ReservedInstanceSegment { .. })),
            (format!("uploads//blobs/{h}"), |e| *e == ResourceNameError::MissingUploadId),
            (format!("uploads/u/{h}"), |e| matches!(e, ResourceNameError::WrongForm(_))),
            (format!("compressed-blobs/lzma/{h}"), |e| matches!(e, ResourceNameError::UnknownCompressor { .. })),
            ("blobs".into(), |e| matches!(e, ResourceNameError::Truncated { .. })),
            ("blobs/abc".into(), |e| matches!(e, ResourceNameError::Truncated { .. })),
            (format!("blobs/{}/-1", digest().hash_hex()), |e| matches!(e, ResourceNameError::InvalidDigest(_))),
            (format!("blobs/{}/1x", digest().hash_hex()), |e| matches!(e, ResourceNameError::InvalidDigest(_))),
            (format!("blobs/{}/99999999999999999999", digest().hash_hex()), |e| matches!(e, ResourceNameError::InvalidDigest(_))),
            (format!("blobs/{}/5", digest().hash_hex().to_uppercase()), |e| matches!(e, ResourceNameError::InvalidDigest(_))),
            (format!("blobs/{h}/extra"), |e| matches!(e, ResourceNameError::WrongForm(_))),
        ];
        for (name, expected) in cases {
            match ResourceName::parse(&name) {
                Err(e) => assert!(expected(&e), "{name:?}: unexpected error {e:?}"),
                Ok(parsed) => panic!("{name:?} accepted as {parsed:?}"),
            }
        }
    }

    #[test]
    fn read_and_write_forms_are_kept_apart() {
        let upload = format!("uploads/u/blobs/{}", hs());
        let download = format!("blobs/{}", hs());
        assert!(ResourceName::parse_upload(&upload).is_ok());
        assert!(ResourceName::parse_download(&download).is_ok());
        assert!(ResourceName::parse_download(&upload).is_err());
        assert!(ResourceName::parse_upload(&download).is_err());
        assert!(ResourceName::upload("", "", digest()).is_err());
        assert!(ResourceName::upload("", "a/b", digest()).is_err());
        assert!(ResourceName::download("blobs", digest()).is_err());
        assert!(ResourceName::download("a/", digest()).is_err());
    }
}
