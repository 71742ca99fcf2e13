//! Fuzz-style tests without `cargo fuzz`: valid encodings (a `Directory`, a
//! `Tree`, a ByteStream resource name) are mutated — bytes flipped,
//! inserted, deleted, truncated — and fed to the decoders and validators.
//! Bounded so that CI spends seconds: nothing may panic, and anything still
//! accepted must satisfy the validator again after re-encoding.

use proptest::prelude::*;
use prost::Message;
use weir_proto::directory::{decode_directory, validate_directory};
use weir_proto::merkle::TreeBuilder;
use weir_proto::resource_name::ResourceName;
use weir_proto::tree::ValidTree;
use weir_proto::Digest;

/// One edit of a byte string; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Edit::Flip(at, mask)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    proptest::collection::vec(edit, 1..6)
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Flip(at, mask) if len > 0 => bytes[at % len] ^= mask,
            Edit::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Edit::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Edit::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// A small but varied tree: files, an executable, a symlink, nesting and
/// an empty directory.
fn sample_tree() -> weir_proto::merkle::MerkleTree {
    let mut builder = TreeBuilder::new();
    for (path, content, executable) in
        [("bin/tool", &b"#!/bin/sh"[..], true), ("etc/conf", b"k=v", false), ("etc/sub/deep", b"", false)]
    {
        builder.add_file(path, Digest::of(content), executable).unwrap();
    }
    builder.add_symlink("bin/alias", "tool").unwrap();
    builder.add_directory("var/empty").unwrap();
    builder.build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_directories_never_panic(pick in any::<usize>(), edits in edits()) {
        let tree = sample_tree();
        let encoded: Vec<_> = tree.directories().collect();
        let bytes = mutate(encoded[pick % encoded.len()].bytes.clone(), &edits);
        if let Ok(directory) = decode_directory(&bytes) {
            prop_assert!(validate_directory(&directory).is_ok());
            prop_assert!(decode_directory(&directory.encode_to_vec()).is_ok());
        }
    }

    #[test]
    fn mutated_trees_never_panic(edits in edits()) {
        let bytes = mutate(sample_tree().to_tree().encode_to_vec(), &edits);
        if let Ok(tree) = ValidTree::decode(&bytes) {
            prop_assert!(tree.directory(&tree.root_digest()).is_some());
            for (_, directory) in tree.directories() {
                prop_assert!(validate_directory(directory).is_ok());
            }
        }
    }

    #[test]
    fn mutated_resource_names_never_panic(upload in any::<bool>(), edits in edits()) {
        let digest = Digest::of(b"content");
        let name = if upload {
            ResourceName::upload("main/x", "0b5a3c1e-7f2d-4c8e-9a11-3d5e7f9b1c2d", digest).unwrap()
        } else {
            ResourceName::download("main/x", digest).unwrap()
        };
        let bytes = mutate(name.to_string().into_bytes(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(parsed) = ResourceName::parse(&text) {
            prop_assert_eq!(ResourceName::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
