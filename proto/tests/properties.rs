//! Property tests: random trees written to disk round-trip through the
//! Merkle builder, serialisation and the wire validators; the disk builder
//! and the in-memory builder agree; random and garbage resource names and
//! `Directory` messages never panic, and whatever the validator accepts
//! really is canonical.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use prost::Message;
use weir_proto::directory::{decode_directory, validate_directory};
use weir_proto::merkle::{MerkleTree, TreeBuilder};
use weir_proto::reapi;
use weir_proto::resource_name::{Compressor, ResourceName};
use weir_proto::tree::ValidTree;
use weir_proto::Digest;

/// A directory tree to write to disk.
#[derive(Debug, Clone)]
enum Model {
    File { content: Vec<u8>, executable: bool },
    Link(String),
    Dir(BTreeMap<String, Model>),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._ é-]{1,6}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn model() -> impl Strategy<Value = BTreeMap<String, Model>> {
    let leaf = prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>())
            .prop_map(|(content, executable)| Model::File { content, executable }),
        "[a-z./]{1,12}".prop_map(Model::Link),
    ];
    let node = leaf.prop_recursive(4, 40, 5, |inner| {
        proptest::collection::btree_map(name(), inner, 0..5).prop_map(Model::Dir)
    });
    proptest::collection::btree_map(name(), node, 0..6)
}

fn write(dir: &Path, entries: &BTreeMap<String, Model>) {
    for (name, node) in entries {
        let path = dir.join(name);
        match node {
            Model::File { content, executable } => {
                fs::write(&path, content).unwrap();
                let mode = if *executable { 0o700 } else { 0o644 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            Model::Link(target) => symlink(target, &path).unwrap(),
            Model::Dir(children) => {
                fs::create_dir(&path).unwrap();
                write(&path, children);
            }
        }
    }
}

fn add(builder: &mut TreeBuilder, prefix: &str, entries: &BTreeMap<String, Model>) {
    for (name, node) in entries {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match node {
            Model::File { content, executable } => {
                builder.add_file(&path, Digest::of(content), *executable).unwrap();
            }
            Model::Link(target) => {
                builder.add_symlink(&path, target).unwrap();
            }
            Model::Dir(children) => {
                builder.add_directory(&path).unwrap();
                add(builder, &path, children);
            }
        }
    }
}

fn resource_name() -> impl Strategy<Value = ResourceName> {
    let instance = proptest::collection::vec("[a-z0-9_-]{1,6}", 0..3).prop_map(|s| s.join("/"));
    let compressor = proptest::option::of(prop_oneof![
        Just(Compressor::Identity),
        Just(Compressor::Zstd),
        Just(Compressor::Deflate),
    ]);
    (instance, proptest::option::of("[a-f0-9-]{1,36}"), compressor, any::<Vec<u8>>()).prop_map(
        |(instance, upload, compressor, content)| {
            let digest = Digest::of(&content);
            let name = match upload {
                Some(id) => ResourceName::upload(&instance, &id, digest),
                None => ResourceName::download(&instance, digest),
            }
            .unwrap();
            match compressor {
                Some(c) => name.compressed(c),
                None => name,
            }
        },
    )
}

/// Plausible segments of resource names in random order and number, so
/// that a fair share of the garbage parses.
fn garbage_resource_name() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => Just("blobs".to_owned()),
        2 => Just("uploads".to_owned()),
        2 => Just("compressed-blobs".to_owned()),
        1 => prop_oneof![Just("zstd"), Just("identity"), Just("lzma"), Just("sha256"), Just("blake3"), Just("actions")]
            .prop_map(str::to_owned),
        4 => "[0-9a-f]{64}",
        4 => "[0-9]{1,20}",
        2 => "[a-zA-Z0-9é_-]{0,6}",
    ];
    prop_oneof![
        "[a-z0-9/-]{0,40}",
        proptest::collection::vec(segment, 0..9).prop_map(|segments| segments.join("/")),
    ]
}

/// A `Directory` built from arbitrary (often invalid) parts.
fn arbitrary_directory() -> impl Strategy<Value = reapi::Directory> {
    let name = prop_oneof![
        12 => name(),
        1 => Just(String::new()),
        1 => Just("..".to_owned()),
        1 => Just("a/b".to_owned()),
    ];
    let digest = prop_oneof![
        12 => any::<Vec<u8>>().prop_map(|c| Some(Digest::of(&c).to_proto())),
        1 => Just(None),
        1 => ("[0-9a-fA-F]{0,66}", any::<i64>()).prop_map(|(hash, size_bytes)| Some(reapi::Digest { hash, size_bytes })),
    ];
    let file = (name.clone(), digest.clone(), any::<bool>()).prop_map(|(name, digest, is_executable)| {
        reapi::FileNode { name, digest, is_executable, node_properties: None }
    });
    let dir = (name.clone(), digest).prop_map(|(name, digest)| reapi::DirectoryNode { name, digest });
    let link = (name, ".{0,8}").prop_map(|(name, target)| reapi::SymlinkNode { name, target, node_properties: None });
    (
        proptest::collection::vec(file, 0..4),
        proptest::collection::vec(dir, 0..4),
        proptest::collection::vec(link, 0..4),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(mut files, mut directories, mut symlinks, sort)| {
            if sort {
                files.sort_by(|a, b| a.name.cmp(&b.name));
                directories.sort_by(|a, b| a.name.cmp(&b.name));
                symlinks.sort_by(|a, b| a.name.cmp(&b.name));
            }
            reapi::Directory { files, directories, symlinks, node_properties: None }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn disk_trees_round_trip_and_match_the_in_memory_builder(entries in model()) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &entries);
        let from_disk = MerkleTree::from_dir(dir.path()).unwrap();

        let mut builder = TreeBuilder::new();
        add(&mut builder, "", &entries);
        let in_memory = builder.build();
        prop_assert_eq!(from_disk.root_digest(), in_memory.root_digest());

        for encoded in from_disk.directories() {
            prop_assert_eq!(Digest::of(&encoded.bytes), encoded.digest);
            prop_assert_eq!(&decode_directory(&encoded.bytes).unwrap(), &encoded.directory);
            prop_assert_eq!(encoded.directory.encode_to_vec(), encoded.bytes.clone());
        }
        let valid = ValidTree::decode(&from_disk.to_tree().encode_to_vec()).unwrap();
        prop_assert_eq!(valid.root_digest(), from_disk.root_digest());
        prop_assert_eq!(valid.directories().count(), from_disk.directories().count());
        let files: Vec<Digest> = from_disk.files().iter().map(|f| f.digest).collect();
        prop_assert_eq!(valid.file_digests(), files);
        for blob in from_disk.files() {
            let content = fs::read(blob.path.as_ref().unwrap()).unwrap();
            prop_assert_eq!(Digest::of(&content), blob.digest);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_resource_names_round_trip(name in resource_name()) {
        let text = name.to_string();
        prop_assert_eq!(ResourceName::parse(&text).unwrap(), name.clone());
        if name.is_upload() {
            prop_assert!(ResourceName::parse_download(&text).is_err());
        } else {
            prop_assert!(ResourceName::parse_upload(&text).is_err());
        }
    }

    #[test]
    fn garbage_resource_names_never_panic(text in garbage_resource_name()) {
        if let Ok(name) = ResourceName::parse(&text) {
            prop_assert_eq!(ResourceName::parse(&name.to_string()).unwrap(), name);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_the_resource_name_parser(text in any::<String>()) {
        let _ = ResourceName::parse(&text);
    }

    #[test]
    fn accepted_directories_are_canonical(directory in arbitrary_directory()) {
        if validate_directory(&directory).is_ok() {
            let mut names: Vec<&str> = Vec::new();
            for list in [
                directory.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                directory.directories.iter().map(|d| d.name.as_str()).collect(),
                directory.symlinks.iter().map(|s| s.name.as_str()).collect(),
            ] {
                prop_assert!(list.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
                names.extend(list);
            }
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            prop_assert_eq!(names.len(), count);
            for name in names {
                prop_assert!(!name.is_empty() && name != "." && name != ".." && !name.contains('/'));
            }
            prop_assert!(directory.files.iter().all(|f| Digest::try_from(f.digest.as_ref()).is_ok()));
            prop_assert!(directory.directories.iter().all(|d| Digest::try_from(d.digest.as_ref()).is_ok()));
        }
        let bytes = directory.encode_to_vec();
        prop_assert_eq!(decode_directory(&bytes).is_ok(), validate_directory(&directory).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_directory(&bytes);
        let _ = ValidTree::decode(&bytes);
    }
}
