//! `logging: key-length` of the user configuration (issue 5): `%{key}` is
//! that many characters of the full key, as `bst show` prints it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn short_keys_follow_the_user_configuration_like_buildstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    write(&root, "project.conf", "name: keys\nmin-version: 2.0\n");
    write(&root, "files/a.txt", "a\n");
    write(&root, "a.bst", "kind: import\nsources:\n- kind: local\n  path: files\n");
    write(&root, "b.bst", "kind: stack\ndepends:\n- a.bst\n");
    for length in [12, 3] {
        let home = dir.path().join(format!("home-{length}"));
        let logging = format!("logging:\n  key-length: {length}\n");
        let args = ["show", "--format", "%{name} %{key} %{full-key}", "b.bst"];
        let mut bst = weir_tests::peers::bst_command(&home, &root, &logging);
        let config = home.join("buildstream.conf");
        let weir = stdout(&Command::new(weir_tests::weir_bin()).arg("-C").arg(&root).arg("-c").arg(&config).args(args).output().expect("weir"));
        for line in weir.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[1].len(), length, "{line}");
            assert!(fields[2].starts_with(fields[1]), "{line}");
        }
        assert_eq!(weir, stdout(&bst.args(args).output().expect("bst")), "key-length {length}");
    }
}
