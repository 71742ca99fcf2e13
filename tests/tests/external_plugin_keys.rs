//! External plugin kinds: cache keys (issue 5) and builds (issue 7).
//!
//! The project is the busybox example plus two element kinds from a
//! `local` plugin origin, each written twice: as a BuildStream Python
//! plugin (`plugins/KIND.py`, `.yaml`) for bst 2.8.1, and as a Weir
//! protocol executable (`plugins/KIND`) for weir:
//!
//! - `shout`, a BuildElement (what `autotools`, `cmake`, ... are): its YAML
//!   defaults give variables and command lists; the Weir plugin declares
//!   `cache-key: build-element`;
//! - `animal`, a plain Element with its own `get_unique_key()`; the Weir
//!   plugin declares `cache-key: plugin` and returns the same unique key;
//! - `fancy`, a Source whose Weir plugin returns the unique key the Python
//!   one computes (as a `git` plugin would).
//!
//! `weir show` and `bst show` must print the same keys for every element,
//! and `weir build` must build the `shout` element like a `manual` one.

mod busybox_example;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const SHOUT_PY: &str = r#"from buildstream import BuildElement


class ShoutElement(BuildElement):
    BST_MIN_VERSION = "2.0"


def setup():
    return ShoutElement
"#;

const SHOUT_YAML: &str = r#"variables:
  volume: loud
config:
  configure-commands:
  - echo "%{volume}" > volume.txt
  build-commands: []
  install-commands:
  - mkdir -p "%{install-root}%{datadir}/shout"
  - cp volume.txt "%{install-root}%{datadir}/shout/%{element-name}.txt"
  strip-commands: []
"#;

const ANIMAL_PY: &str = r#"from buildstream import Element


class AnimalElement(Element):
    BST_MIN_VERSION = "2.0"

    def configure(self, node):
        node.validate_keys(["name", "legs"])
        # (not `self.name`: that is the element's own name)
        self.creature = node.get_str("name")
        self.legs = node.get_int("legs", 4)

    def preflight(self):
        pass

    def get_unique_key(self):
        return {"name": self.creature, "legs": self.legs}

    def configure_sandbox(self, sandbox):
        pass

    def stage(self, sandbox):
        pass

    def assemble(self, sandbox):
        return "/"


def setup():
    return AnimalElement
"#;

const FANCY_PY: &str = r#"from buildstream import Source


class FancySource(Source):
    BST_MIN_VERSION = "2.0"

    def configure(self, node):
        node.validate_keys(["url", "ref"] + Source.COMMON_CONFIG_KEYS)
        self.url = node.get_str("url")
        self.ref = node.get_str("ref", None)

    def preflight(self):
        pass

    def get_unique_key(self):
        return [self.url, self.ref, {"depth": 1}]

    def is_resolved(self):
        return self.ref is not None

    def is_cached(self):
        return True

    def load_ref(self, node):
        self.ref = node.get_str("ref", None)

    def get_ref(self):
        return self.ref

    def set_ref(self, ref, node):
        node["ref"] = self.ref = ref

    def track(self):
        return self.ref

    def fetch(self):
        pass

    def stage(self, directory):
        pass


def setup():
    return FancySource
"#;

/// The Weir side of the three kinds, in one executable (the kind comes with `hello`).
const WEIR_PLUGIN: &str = r#"#!/usr/bin/env python3
import json, sys

SHOUT_DEFAULTS = {
    "variables": {"volume": "loud"},
    "config": {
        "configure-commands": ['echo "%{volume}" > volume.txt'],
        "build-commands": [],
        "install-commands": [
            'mkdir -p "%{install-root}%{datadir}/shout"',
            'cp volume.txt "%{install-root}%{datadir}/shout/%{element-name}.txt"',
        ],
        "strip-commands": [],
    },
}

kind = None
for line in sys.stdin:
    request = json.loads(line)
    what = request["request"]
    if what == "hello":
        kind = request["kind"]
        if request["type"] == "source":
            reply = {"protocol": 1}
        elif kind == "shout":
            reply = {"protocol": 1, "defaults": SHOUT_DEFAULTS, "cache-key": "build-element"}
        else:
            reply = {"protocol": 1, "cache-key": "plugin", "run-commands": True}
    elif what == "configure":
        config = request["config"]
        reply = {}
        if kind == "fancy":
            reply = {"unique-key": [config["url"], config.get("ref"), {"depth": 1}]}
        elif kind == "animal":
            unknown = [k for k in config if k not in ("name", "legs")]
            if unknown:
                reply = {"error": {"domain": "LOAD", "reason": "INVALID_DATA", "message": "Unexpected key: " + unknown[0], "path": [unknown[0]]}}
            else:
                reply = {"unique-key": {"name": config["name"], "legs": int(config.get("legs", "4"))}}
    elif what == "bye":
        break
    else:
        reply = {}
    print(json.dumps(reply), flush=True)
"#;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// The busybox example with the two plugin kinds and three elements using them.
fn project() -> tempfile::TempDir {
    let dir = busybox_example::prepared();
    let root = dir.path();
    let conf = fs::read_to_string(root.join("project.conf")).expect("project.conf");
    write(root, "project.conf", &format!("{conf}\nplugins:\n- origin: local\n  path: plugins\n  elements:\n  - shout\n  - animal\n  sources:\n  - fancy\n"));
    write(root, "plugins/shout.py", SHOUT_PY);
    write(root, "plugins/shout.yaml", SHOUT_YAML);
    write(root, "plugins/animal.py", ANIMAL_PY);
    write(root, "plugins/fancy.py", FANCY_PY);
    for kind in ["shout", "animal", "fancy"] {
        write(root, &format!("plugins/{kind}"), WEIR_PLUGIN);
        fs::set_permissions(root.join("plugins").join(kind), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    write(root, "elements/quiet.bst", "kind: shout\nbuild-depends:\n- base.bst\nvariables:\n  volume: quiet\n");
    write(root, "elements/loud.bst", "kind: shout\nbuild-depends:\n- base.bst\n- quiet.bst\n");
    write(root, "elements/pony.bst", "kind: animal\nconfig:\n  name: pony\n  legs: 4\n");
    write(root, "elements/gem.bst", "kind: import\nsources:\n- kind: fancy\n  url: https://example.com/gem.git\n  ref: 0123abcd\n");
    write(root, "elements/plugins.bst", "kind: stack\ndepends:\n- loud.bst\n- pony.bst\n- gem.bst\n");
    dir
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const SHOW: [&str; 5] = ["show", "--deps", "all", "--format", "%{name} %{full-key}"];

#[test]
fn external_kinds_have_buildstreams_keys_and_a_build_element_kind_builds() {
    let dir = project();
    let root = dir.path();
    let weir = Command::new(weir_tests::weir_bin()).current_dir(root).args(SHOW).arg("plugins.bst").output().expect("weir runs");
    assert!(weir.status.success(), "weir show: {}", String::from_utf8_lossy(&weir.stderr));
    assert!(!String::from_utf8_lossy(&weir.stderr).contains("not shown"), "{}", String::from_utf8_lossy(&weir.stderr));

    let home = tempfile::tempdir().expect("tempdir");
    let bst = weir_tests::peers::bst_command(home.path(), root, "").args(SHOW).arg("plugins.bst").output().expect("bst runs");
    assert!(bst.status.success(), "bst show: {}", String::from_utf8_lossy(&bst.stderr));
    assert_eq!(text(&weir), text(&bst), "weir's keys differ from BuildStream's");
    // Not vacuous: the keys are there, and the two `shout` elements differ.
    let shown = text(&weir);
    let keys: Vec<&str> = shown.lines().filter_map(|l| l.split_once(' ').map(|(_, k)| k)).map(str::trim).collect();
    assert!(keys.len() >= 6 && keys.iter().all(|k| k.len() == 64), "{keys:?}");

    // The BuildElement kind builds like `manual`, in the namespace sandbox.
    let cache = tempfile::tempdir().expect("tempdir");
    let build = Command::new(weir_tests::weir_bin())
        .current_dir(root)
        .args(["build", "loud.bst"])
        .env_remove("WEIR_REMOTE")
        .env("WEIR_CACHE_DIR", cache.path())
        .output()
        .expect("weir runs");
    assert!(build.status.success(), "weir build: {}", String::from_utf8_lossy(&build.stderr));
    let out = root.join("checkout");
    let checkout = Command::new(weir_tests::weir_bin())
        .current_dir(root)
        .args(["artifact", "checkout", "--directory"])
        .arg(&out)
        .arg("loud.bst")
        .env_remove("WEIR_REMOTE")
        .env("WEIR_CACHE_DIR", cache.path())
        .output()
        .expect("weir runs");
    assert!(checkout.status.success(), "checkout: {}", String::from_utf8_lossy(&checkout.stderr));
    let paths: Vec<String> = busybox_example::snapshot(&out).into_keys().collect();
    assert_eq!(paths, ["usr", "usr/share", "usr/share/shout", "usr/share/shout/loud.bst.txt"], "only what the install commands made");
    assert_eq!(fs::read_to_string(out.join("usr/share/shout/loud.bst.txt")).expect("the installed file"), "loud\n");
}
