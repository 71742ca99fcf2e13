//! End-to-end tests of `tar` and `remote` sources in `weir build` (issue 7,
//! "Sources needed for a first real build"), through the real `weir` binary
//! with the embedded worker and a private cache directory.
//!
//! Each test generates its project in a temporary directory: archives are
//! written with the `tar` crate, served over `http://127.0.0.1:PORT` by a
//! tiny HTTP server thread ([`FileServer`], which counts requests and stops
//! when dropped) or read through `file://` URLs. The `ref`s are the sha256
//! of the generated files, computed here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::Digest as _;

/// Serves a fixed set of files at `/dist/NAME` on 127.0.0.1 until dropped.
struct FileServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::SeqCst);
                            serve(stream, &files);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FileServer { addr, requests, stop, thread: Some(thread) }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one HTTP/1.1 request (bounded by read and write timeouts).
fn serve(mut stream: TcpStream, files: &BTreeMap<String, Vec<u8>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("");
    let response = match path.strip_prefix("/dist/").and_then(|name| files.get(name)) {
        Some(body) => [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes(), body.clone()].concat(),
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}

/// One member of a generated archive.
enum Member<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str, u32),
}

/// An uncompressed tar archive of `members`; names are written raw so that
/// hostile ones (`../escape`) can be made.
fn tar(members: &[Member]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, &str) = match member {
            Member::File(name, data, mode) => (name, tar::EntryType::Regular, data, *mode, ""),
            Member::Dir(name) => (name, tar::EntryType::Directory, b"", 0o755, ""),
            Member::Symlink(name, target) => (name, tar::EntryType::Symlink, b"", 0o777, target),
            Member::HardLink(name, target, mode) => (name, tar::EntryType::Link, b"", *mode, target),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// [`tar`], gzip-compressed.
fn tar_gz(members: &[Member]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar(members)).unwrap();
    encoder.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A generated project and the cache directory its builds use.
struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    /// A project whose alias `upstream` points at `http://ADDR/dist/`.
    fn new(server: &FileServer) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!("name: sources\nmin-version: 2.0\nelement-path: elements\naliases:\n  upstream: http://{}/dist/\n", server.addr);
        write(dir.path(), "project.conf", conf.as_bytes());
        Project { dir, cache: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn element(&self, name: &str, text: &str) {
        write(self.path(), &format!("elements/{name}"), text.as_bytes());
    }

    /// Runs `weir ARGS` with the embedded worker in this project's cache
    /// directory (`WEIR_CACHE_DIR`); no proxy, so loopback is reached directly.
    fn weir(&self, args: &[&str]) -> Output {
        Command::new(weir_tests::weir_bin())
            .current_dir(self.path())
            .args(args)
            .env_remove("WEIR_REMOTE")
            .env("WEIR_CACHE_DIR", self.cache.path())
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .expect("weir runs")
    }

    /// `weir build --json TARGET`, which must succeed; its events.
    fn build_ok(&self, target: &str) -> Vec<serde_json::Value> {
        let run = self.weir(&["build", "--json", target]);
        assert!(run.status.success(), "stderr: {}", text(&run.stderr));
        text(&run.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// Checks `element` out into a new directory.
    fn checkout(&self, element: &str) -> PathBuf {
        let out = self.path().join(format!("checkout-{element}"));
        let run = self.weir(&["artifact", "checkout", "--directory", out.to_str().unwrap_or_default(), element]);
        assert!(run.status.success(), "stderr: {}", text(&run.stderr));
        out
    }
}


/// The relative paths of the files and symlinks under `root`, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o100 != 0
}

/// The release archive the tests serve: one top-level directory.
fn release() -> Vec<u8> {
    tar_gz(&[
        Member::Dir("hello-1.0/"),
        Member::File("hello-1.0/configure", b"#!/bin/sh\necho configured > configured.txt\n", 0o755),
        Member::File("hello-1.0/src/hello.c", b"int main(void) { return 0; }\n", 0o644),
    ])
}

#[test]
fn tar_over_http_and_remote_from_file_are_staged_then_cached_without_downloading() {
    let archive = release();
    let server = FileServer::start(BTreeMap::from([("hello-1.0.tar.gz".to_string(), archive.clone())]));
    let project = Project::new(&server);
    let tool = b"#!/bin/sh\necho tool\n";
    write(project.path(), "upstream-files/tool.sh", tool);
    let tool_url = format!("file://{}", project.path().join("upstream-files/tool.sh").display());
    project.element(
        "hello.bst",
        &format!(
            "kind: import\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {}\n  directory: src\n- kind: remote\n  url: {tool_url}\n  ref: {}\n  filename: run-tool\n  executable: true\n",
            sha256(&archive),
            sha256(tool)
        ),
    );
    // A second element with the same archive: one download serves both.
    project.element(
        "docs.bst",
        &format!("kind: import\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {}\n  base-dir: ''\n", sha256(&archive)),
    );
    project.element("all.bst", "kind: stack\ndepends:\n- hello.bst\n- docs.bst\n");

    let first = project.build_ok("all.bst");
    let fetched: Vec<&serde_json::Value> = first.iter().filter(|e| e["event"] == "fetched").collect();
    assert_eq!(fetched.len(), 2, "the archive once, the remote file once: {first:?}");
    let http = fetched.iter().find(|e| e["url"].as_str().unwrap_or("").starts_with("http://")).expect("an http download");
    assert_eq!(http["url"], format!("http://{}/dist/hello-1.0.tar.gz", server.addr), "the alias was resolved");
    assert_eq!(http["bytes"], archive.len());
    assert_eq!(server.requests(), 1);
    assert_eq!(weir_tests::events::count(&first, "finished"), 3, "{first:?}");

    let hello = project.checkout("hello.bst");
    assert_eq!(files(&hello), ["run-tool", "src/configure", "src/src/hello.c"], "base-dir '*' stripped hello-1.0/");
    assert_eq!(std::fs::read(hello.join("run-tool")).unwrap(), tool);
    assert!(is_executable(&hello.join("run-tool")));
    assert!(is_executable(&hello.join("src/configure")));
    assert!(!is_executable(&hello.join("src/src/hello.c")));
    assert_eq!(std::fs::read(hello.join("src/src/hello.c")).unwrap(), b"int main(void) { return 0; }\n");
    let docs = project.checkout("docs.bst");
    assert_eq!(files(&docs), ["hello-1.0/configure", "hello-1.0/src/hello.c"], "base-dir '' keeps the archive whole");

    // A second build: everything cached, nothing downloaded.
    let second = project.build_ok("all.bst");
    assert_eq!((weir_tests::events::count(&second, "fetched"), weir_tests::events::count(&second, "cached")), (0, 3), "{second:?}");
    assert_eq!(server.requests(), 1, "the second build made no request");
    // Cached elements need no sources (as in BuildStream): with the whole
    // source cache gone, nothing is downloaded for them.
    std::fs::remove_dir_all(project.cache.path().join("sources")).unwrap();
    let third = project.build_ok("all.bst");
    assert_eq!((weir_tests::events::count(&third, "fetched"), weir_tests::events::count(&third, "cached")), (0, 3), "{third:?}");
    assert_eq!(server.requests(), 1, "no request for cached elements");
    // An element that must be built again fetches its own sources only.
    project.element(
        "docs.bst",
        &format!("kind: import\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {}\n  base-dir: ''\n  directory: doc\n", sha256(&archive)),
    );
    let fourth = project.build_ok("all.bst");
    let fetched: Vec<&str> = fourth.iter().filter(|e| e["event"] == "fetched").filter_map(|e| e["element"].as_str()).collect();
    assert_eq!(fetched, ["docs.bst"], "{fourth:?}");
    assert_eq!(server.requests(), 2);
    std::fs::remove_dir_all(&docs).unwrap();
    assert_eq!(files(&project.checkout("docs.bst")), ["doc/hello-1.0/configure", "doc/hello-1.0/src/hello.c"]);
}

#[test]
fn a_manual_element_builds_from_a_tar_source_in_the_sandbox() {
    let archive = release();
    let server = FileServer::start(BTreeMap::from([("hello-1.0.tar.gz".to_string(), archive.clone())]));
    let project = Project::new(&server);
    // The busybox example's prepare.sh fills files/base (a static busybox and its applets) beside it.
    std::fs::copy(weir_tests::repo_root().join("examples/busybox/prepare.sh"), project.path().join("prepare.sh")).unwrap();
    let prepare = Command::new("sh").arg(project.path().join("prepare.sh")).output().unwrap();
    assert!(prepare.status.success(), "prepare.sh: {}", text(&prepare.stderr));
    project.element("base.bst", "kind: import\nsources:\n- kind: local\n  path: files/base\n");
    project.element(
        "hello.bst",
        &format!(
            "kind: manual\nbuild-depends:\n- base.bst\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {}\nconfig:\n  build-commands:\n  - ./configure\n  install-commands:\n  - mkdir -p \"%{{install-root}}/share\"\n  - cp configured.txt src/hello.c \"%{{install-root}}/share/\"\n",
            sha256(&archive)
        ),
    );
    let events = project.build_ok("hello.bst");
    assert_eq!(weir_tests::events::count(&events, "finished"), 2, "{events:?}");
    let out = project.checkout("hello.bst");
    assert_eq!(std::fs::read_to_string(out.join("share/configured.txt")).unwrap(), "configured\n");
    assert_eq!(std::fs::read(out.join("share/hello.c")).unwrap(), b"int main(void) { return 0; }\n");
}

#[test]
fn weir_fetch_fills_the_source_cache_so_a_build_needs_no_network() {
    let archive = release();
    let server = FileServer::start(BTreeMap::from([("hello-1.0.tar.gz".to_string(), archive.clone())]));
    let project = Project::new(&server);
    project.element("hello.bst", &format!("kind: import\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {}\n", sha256(&archive)));
    project.element("all.bst", "kind: stack\ndepends:\n- hello.bst\n");
    // As `bst source fetch`: the targets only by default (a stack has no sources).
    let only_target = project.weir(&["fetch", "all.bst"]);
    assert!(only_target.status.success(), "{}", text(&only_target.stderr));
    assert_eq!(server.requests(), 0);
    let fetch = project.weir(&["fetch", "--deps", "all", "all.bst"]);
    assert!(fetch.status.success(), "{}", text(&fetch.stderr));
    assert!(text(&fetch.stderr).contains("[fetch  ] hello.bst"), "{}", text(&fetch.stderr));
    assert_eq!(server.requests(), 1);
    drop(server);
    let build = project.build_ok("all.bst");
    assert_eq!((weir_tests::events::count(&build, "fetched"), weir_tests::events::count(&build, "finished")), (0, 2), "{build:?}");
    assert_eq!(files(&project.checkout("hello.bst")), ["configure", "src/hello.c"]);
}

#[test]
fn a_wrong_sha256_fails_naming_the_source_and_caches_nothing() {
    let archive = release();
    let server = FileServer::start(BTreeMap::from([("hello-1.0.tar.gz".to_string(), archive.clone())]));
    let project = Project::new(&server);
    let wrong = sha256(b"something else");
    project.element("bad.bst", &format!("kind: import\nsources:\n- kind: tar\n  url: upstream:hello-1.0.tar.gz\n  ref: {wrong}\n"));
    let run = project.weir(&["--error-format", "json", "build", "bad.bst"]);
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let stderr = text(&run.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or("")).unwrap_or_default();
    assert_eq!((last["domain"].as_str(), last["reason"].as_str()), (Some("SOURCE"), Some("CHECKSUM_MISMATCH")), "{stderr}");
    let message = last["message"].as_str().unwrap_or("");
    for part in ["bad.bst", "tar source #1", &format!("http://{}/dist/hello-1.0.tar.gz", server.addr), &wrong, &sha256(&archive)] {
        assert!(message.contains(part), "'{part}' missing from: {message}");
    }
    let downloads = project.cache.path().join("sources/downloads");
    assert!(!downloads.exists() || std::fs::read_dir(&downloads).unwrap().next().is_none(), "nothing was cached");
    let tmp = project.cache.path().join("sources/tmp");
    assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0, "no temporary file left behind");
}

#[test]
fn an_archive_that_escapes_its_directory_is_refused() {
    let evil = tar_gz(&[Member::Dir("pkg/"), Member::File("pkg/ok.txt", b"fine", 0o644), Member::File("../escape.txt", b"gotcha", 0o644)]);
    let server = FileServer::start(BTreeMap::new());
    let project = Project::new(&server);
    write(project.path(), "upstream-files/evil.tar.gz", &evil);
    let url = format!("file://{}", project.path().join("upstream-files/evil.tar.gz").display());
    project.element("evil.bst", &format!("kind: import\nsources:\n- kind: tar\n  url: {url}\n  ref: {}\n  base-dir: ''\n", sha256(&evil)));
    let run = project.weir(&["--error-format", "json", "build", "evil.bst"]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("STAGE_FAILED") && stderr.contains("../escape.txt") && stderr.contains("outside"), "{stderr}");
    let staged = project.cache.path().join("sources");
    assert!(!staged.join("escape.txt").exists() && !staged.join("tmp/escape.txt").exists());
    assert!(!staged.join("staged").exists() || std::fs::read_dir(staged.join("staged")).unwrap().next().is_none(), "no staged tree kept");
    assert_eq!(server.requests(), 0);
}

#[test]
fn an_undeclared_alias_is_an_error_before_any_download() {
    let server = FileServer::start(BTreeMap::new());
    let project = Project::new(&server);
    project.element("m.bst", &format!("kind: import\nsources:\n- kind: remote\n  url: nowhere:file.txt\n  ref: {}\n", sha256(b"x")));
    let run = project.weir(&["build", "m.bst"]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("INVALID_SOURCE_ALIAS") && stderr.contains("'nowhere'") && stderr.contains("m.bst"), "{stderr}");
    assert_eq!(server.requests(), 0);
}

/// Every path under `root` with its kind, content, owner-execute bit or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            let value = if kind.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                pending.push(path);
                "dir".to_string()
            } else {
                format!("{} x={}", sha256(&std::fs::read(&path).unwrap()), is_executable(&path))
            };
            out.insert(name, value);
        }
    }
    out
}

/// The same archives staged by BuildStream 2.8.1 and by weir give the same
/// files: a `./` root entry (BuildStream then keeps the top directory), a
/// single top directory with a symlink and an executable, archives without
/// directory entries and two top-level directories (the first sorted wins),
/// an explicit nested `base-dir`, hard links (to a file outside the base
/// directory; with a mode other than their target's), and a `remote` file
/// named after its URL.
#[test]
fn tar_and_remote_sources_stage_as_buildstream_2_8_does() {
    let upstream = tempfile::tempdir().unwrap();
    let archives: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dot.tar.gz", tar_gz(&[Member::Dir("./"), Member::Dir("./pkg-2.0/"), Member::File("./pkg-2.0/README", b"dot\n", 0o644)]), "*"),
        (
            "plain.tar",
            tar(&[
                Member::Dir("pkg/"),
                Member::File("pkg/bin/run", b"#!/bin/sh\n", 0o755),
                Member::Symlink("pkg/bin/alias", "run"),
                Member::Symlink("pkg/abs", "/usr/lib"),
                Member::File("pkg/lib/data", b"data\n", 0o600),
            ]),
            "*",
        ),
        ("two.tar.gz", tar_gz(&[Member::File("beta/b.txt", b"b\n", 0o644), Member::File("alpha/x/a.txt", b"a\n", 0o644)]), "*"),
        ("nested.tar.gz", tar_gz(&[Member::Dir("top/"), Member::Dir("top/sub-1/"), Member::File("top/sub-1/n.txt", b"n\n", 0o644)]), "top/sub-*"),
        (
            "links.tar.gz",
            tar_gz(&[
                Member::File("elsewhere/a", b"linked\n", 0o755),
                Member::Dir("to_extract/"),
                Member::HardLink("to_extract/a", "elsewhere/a", 0o644),
                Member::File("to_extract/b", b"b\n", 0o644),
                Member::HardLink("to_extract/c", "to_extract/b", 0o755),
            ]),
            "to_extract",
        ),
    ];
    let tool = b"#!/bin/sh\necho tool\n";
    write(upstream.path(), "tool.sh", tool);
    let mut element = String::from("kind: import\nsources:\n");
    for (name, data, base_dir) in &archives {
        write(upstream.path(), name, data);
        element.push_str(&format!(
            "- kind: tar\n  url: up:{name}\n  ref: {}\n  base-dir: '{base_dir}'\n  directory: {}\n",
            sha256(data),
            name.split('.').next().unwrap_or(name)
        ));
    }
    element.push_str(&format!("- kind: remote\n  url: up:tool.sh\n  ref: {}\n  executable: true\n  directory: remote\n", sha256(tool)));

    let project = tempfile::tempdir().unwrap();
    let conf = format!("name: compare\nmin-version: 2.0\nelement-path: elements\naliases:\n  up: file://{}/\n", upstream.path().display());
    write(project.path(), "project.conf", conf.as_bytes());
    write(project.path(), "elements/all.bst", element.as_bytes());

    // BuildStream, with its caches in the test's directory.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("buildstream.conf");
    let cache = home.path().join("cache");
    write(home.path(), "buildstream.conf", format!("cachedir: {0}\nsourcedir: {0}/sources\nlogdir: {0}/logs\n", cache.display()).as_bytes());
    let bst_out = home.path().join("checkout");
    for args in [vec!["build", "all.bst"], vec!["artifact", "checkout", "--directory", bst_out.to_str().unwrap_or_default(), "all.bst"]] {
        let run = Command::new(weir_tests::peers::bst())
            .args(["--no-colors", "--no-interactive", "-c"])
            .arg(&config)
            .arg("-C")
            .arg(project.path())
            .args(&args)
            .env("XDG_CACHE_HOME", home.path().join("xdg-cache"))
            .env("XDG_CONFIG_HOME", home.path().join("xdg-config"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bst runs");
        assert!(run.status.success(), "bst {args:?}: {}", text(&run.stderr));
    }

    // weir.
    let weir = Project { dir: project, cache: tempfile::tempdir().unwrap() };
    weir.build_ok("all.bst");
    let weir_out = weir.checkout("all.bst");
    let expected = snapshot(&bst_out);
    assert!(expected.contains_key("dot/pkg-2.0/README") && expected.contains_key("links/a") && expected.contains_key("remote/tool.sh"), "{expected:#?}");
    assert!(expected["links/b"].ends_with("x=true"), "BuildStream gives a hard link's mode to its target too: {expected:#?}");
    assert_eq!(snapshot(&weir_out), expected);
}
