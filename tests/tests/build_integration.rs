//! A BuildElement (`manual`), and a `script` element likewise, integrates the dependencies it stages at `/`
//! before its own commands run, as BuildStream's BuildElement does
//! ("Integrating sandbox"): their `public: bst: integration-commands` run
//! in `/` first. The same element is built by `weir build` and by
//! BuildStream 2.8.1, and the checked-out artifacts must be the same.
//!
//! Also `digest-environment`: a build dependency with that configuration
//! sets the named variable to the CAS digest of its staged runtime closure,
//! which the element records in its artifact; weir's must equal bst's.
//!
//! `examples/busybox`'s `greeting.bst` declares the integration command
//! `ls /usr/share/greeting > /usr/share/greeting/index`; the element here
//! copies that index into its artifact, which it can only do if the
//! integration ran.

mod busybox_example;

use std::fs;
use std::process::Command;

const INDEXED: &str = "kind: manual\nbuild-depends:\n- base.bst\n- greeting.bst\nconfig:\n  install-commands:\n  - mkdir -p \"%{install-root}\"\n  - cp /usr/share/greeting/index \"%{install-root}/index\"\n";

const SCRIPTED: &str = "kind: script\nbuild-depends:\n- base.bst\n- greeting.bst\nconfig:\n  commands:\n  - mkdir -p \"%{install-root}\"\n  - cp /usr/share/greeting/index \"%{install-root}/index\"\n";

const DIGESTED: &str = "kind: manual\nbuild-depends:\n- base.bst\n- filename: greeting.bst\n  config:\n    digest-environment: GREETING_DIGEST\nconfig:\n  install-commands:\n  - mkdir -p \"%{install-root}\"\n  - echo \"$GREETING_DIGEST\" > \"%{install-root}/digest\"\n";

#[test]
fn a_build_element_runs_its_dependencies_integration_commands_first_like_buildstream() {
    let project = busybox_example::prepared();
    let root = project.path();
    fs::write(root.join("elements/indexed.bst"), INDEXED).expect("write");
    fs::write(root.join("elements/digested.bst"), DIGESTED).expect("write");
    fs::write(root.join("elements/scripted.bst"), SCRIPTED).expect("write");

    let cache = tempfile::tempdir().expect("tempdir");
    let weir = |args: &[&str]| {
        let run = Command::new(weir_tests::weir_bin())
            .current_dir(root)
            .args(args)
            .env_remove("WEIR_REMOTE")
            .env("WEIR_CACHE_DIR", cache.path())
            .output()
            .expect("weir runs");
        assert!(run.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&run.stderr));
    };
    weir(&["build", "indexed.bst", "digested.bst", "scripted.bst"]);
    let our_script = root.join("weir-script");
    weir(&["artifact", "checkout", "--directory", our_script.to_str().expect("utf-8 path"), "scripted.bst"]);
    let ours = root.join("weir-checkout");
    weir(&["artifact", "checkout", "--directory", ours.to_str().expect("utf-8 path"), "indexed.bst"]);
    let our_digest = root.join("weir-digest");
    weir(&["artifact", "checkout", "--directory", our_digest.to_str().expect("utf-8 path"), "digested.bst"]);

    let home = tempfile::tempdir().expect("tempdir");
    let bst = |args: &[&str]| {
        let run = weir_tests::peers::bst_command(home.path(), root, "").args(args).output().expect("bst runs");
        assert!(run.status.success(), "bst {args:?}: {}", String::from_utf8_lossy(&run.stderr));
    };
    bst(&["build", "indexed.bst", "digested.bst", "scripted.bst"]);
    let their_script = root.join("bst-script");
    bst(&["artifact", "checkout", "--directory", their_script.to_str().expect("utf-8 path"), "scripted.bst"]);
    let theirs = root.join("bst-checkout");
    bst(&["artifact", "checkout", "--directory", theirs.to_str().expect("utf-8 path"), "indexed.bst"]);
    let their_digest = root.join("bst-digest");
    bst(&["artifact", "checkout", "--directory", their_digest.to_str().expect("utf-8 path"), "digested.bst"]);

    let index = fs::read_to_string(ours.join("index")).expect("weir's index");
    assert!(index.lines().any(|l| l == "message.txt"), "the integration command listed the greeting: {index:?}");
    assert_eq!(busybox_example::snapshot(&ours), busybox_example::snapshot(&theirs), "the same artifact as BuildStream's");
    assert!(our_script.join("index").is_file(), "the script element integrated its dependencies too");
    assert_eq!(busybox_example::snapshot(&our_script), busybox_example::snapshot(&their_script), "the script's artifact as BuildStream's");
    let digest = fs::read_to_string(our_digest.join("digest")).expect("weir's digest");
    assert_eq!(digest.trim().len(), 64 + 1 + digest.trim().split('/').nth(1).map_or(0, str::len), "hash/size: {digest:?}");
    assert_eq!(digest, fs::read_to_string(their_digest.join("digest")).expect("bst's digest"), "digest-environment as BuildStream sets it");
}
