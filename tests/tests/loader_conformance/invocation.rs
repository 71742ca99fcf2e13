//! Running one case through the real `weir` binary: the argv, the working
//! directory, the user configuration, the faked host, and the temporary copy
//! of the project when the case needs one.
//!
//! Key decision: projects are run in place (the shared data is read-only and
//! `show` writes nothing) unless the case needs the tree changed: plugin stubs
//! installed at each declaring project's local plugin path, or symlinks that
//! the shared data stores as plain files (`generated_from` names them)
//! restored. Each run gets its own empty XDG config/cache directories so the
//! machine's own user configuration never leaks into a case.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use super::expectation::Outcome;
use super::harness_error::HarnessError;
use super::manifest::Case;

/// Where to find things a case run needs.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// The `weir` executable.
    pub weir: PathBuf,
    /// The manifest's data root.
    pub data_root: PathBuf,
    /// `tests/plugin-stubs/` of the repository.
    pub stubs_dir: PathBuf,
    /// After this long the process is killed and the case fails.
    pub timeout: Duration,
}

/// Prepares and runs `case`; the temporary directory lives until the run ends.
pub fn run_case(case: &Case, env: &RunEnv) -> Result<Outcome, HarnessError> {
    let scratch = tempfile::tempdir().map_err(|source| HarnessError::Write { path: std::env::temp_dir(), source })?;
    let project = prepare_project(case, env, scratch.path())?;
    let cwd = match &case.cwd {
        Some(sub) => project.join(sub),
        None => project,
    };

    let mut args: Vec<String> = Vec::new();
    if let Some(config) = &case.user_config {
        let path = scratch.path().join("user-config.yaml");
        let text = serde_yaml_ng::to_string(config).map_err(HarnessError::UserConfig)?;
        std::fs::write(&path, text).map_err(|source| HarnessError::Write { path: path.clone(), source })?;
        args.push("-c".into());
        args.push(path.display().to_string());
    }
    args.push("--error-format".into());
    args.push("json".into());
    args.extend(weir_argv(&case.command.argv, case.command.is_project_load()));

    let mut command = Command::new(&env.weir);
    command
        .args(&args)
        .current_dir(&cwd)
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .env("XDG_CACHE_HOME", scratch.path().join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("WEIR_HOST_MACHINE")
        .env_remove("WEIR_HOST_SYSTEM");
    if let Some(host) = &case.host {
        if let Some(machine) = &host.machine {
            command.env("WEIR_HOST_MACHINE", machine);
        }
        if let Some(system) = &host.system {
            command.env("WEIR_HOST_SYSTEM", system);
        }
    }
    run_with_timeout(command, &env.weir, env.timeout)
}

/// The case's argv for `weir`: `workspace list` (project-load cases) becomes
/// `project show`; everything else is passed exactly.
pub fn weir_argv(argv: &[String], project_load: bool) -> Vec<String> {
    if !project_load {
        return argv.to_vec();
    }
    let mut out = Vec::with_capacity(argv.len());
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "workspace" && argv.get(i + 1).map(String::as_str) == Some("list") {
            out.push("project".to_string());
            out.push("show".to_string());
            i += 2;
        } else {
            out.push(argv[i].clone());
            i += 1;
        }
    }
    out
}

/// Returns the project directory to run in: the shared one, or a prepared copy.
fn prepare_project(case: &Case, env: &RunEnv, scratch: &Path) -> Result<PathBuf, HarnessError> {
    let original = env.data_root.join(&case.project);
    let symlinks = symlinks_to_restore(case.generated_from.as_deref());
    if case.plugin_stubs.is_empty() && symlinks.is_empty() {
        return Ok(original);
    }
    // A project that is itself a stored symlink is copied with its parent.
    let (root, inner) = if original.is_dir() {
        (original.clone(), PathBuf::new())
    } else {
        let parent = original.parent().unwrap_or(&env.data_root).to_path_buf();
        let name = original.file_name().map(PathBuf::from).unwrap_or_default();
        (parent, name)
    };
    let copy = scratch.join("project");
    copy_tree(&root, &copy)?;
    for name in &symlinks {
        restore_symlinks(&copy, name)?;
    }
    for stub in &case.plugin_stubs {
        install_stub(&copy, stub, &env.stubs_dir)?;
    }
    Ok(copy.join(inner))
}

/// Names of the entries `generated_from` says are relative symlinks
/// (``"… `elements` a relative symlink to project.conf"``).
pub fn symlinks_to_restore(generated_from: Option<&str>) -> Vec<String> {
    let Some(text) = generated_from else { return Vec::new() };
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("` a relative symlink") {
        if let Some(open) = rest[..at].rfind('`') {
            names.push(rest[open + 1..at].to_string());
        }
        rest = &rest[at + 1..];
    }
    names
}

/// Copies a tree, keeping symlinks and making everything writable.
fn copy_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HarnessError::Write { path, source }
    };
    std::fs::create_dir_all(to).map_err(write_err(to))?;
    let entries = std::fs::read_dir(from).map_err(|source| HarnessError::Read { path: from.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| HarnessError::Read { path: from.to_path_buf(), source })?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| HarnessError::Read { path: src.clone(), source })?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|source| HarnessError::Read { path: src.clone(), source })?;
            std::os::unix::fs::symlink(&target, &dst).map_err(write_err(&dst))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(write_err(&dst))?;
            set_mode(&dst, 0o644)?;
        }
    }
    set_mode(to, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| HarnessError::Write { path: path.to_path_buf(), source })
}

/// Replaces every regular file called `name` in the tree whose content is a
/// relative path to an existing sibling entry by a symlink to that path.
fn restore_symlinks(dir: &Path, name: &str) -> Result<(), HarnessError> {
    for path in walk(dir)? {
        if path.file_name().and_then(|n| n.to_str()) != Some(name) || !path.is_file() {
            continue;
        }
        let target = std::fs::read_to_string(&path).map_err(|source| HarnessError::Read { path: path.clone(), source })?;
        let target = target.trim();
        let parent = path.parent().unwrap_or(dir);
        if target.is_empty() || target.starts_with('/') || !parent.join(target).exists() {
            continue;
        }
        std::fs::remove_file(&path).map_err(|source| HarnessError::Write { path: path.clone(), source })?;
        std::os::unix::fs::symlink(target, &path).map_err(|source| HarnessError::Write { path: path.clone(), source })?;
    }
    Ok(())
}

/// Every path under `dir` (directories not followed through symlinks).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(here) = pending.pop() {
        let entries = std::fs::read_dir(&here).map_err(|source| HarnessError::Read { path: here.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| HarnessError::Read { path: here.clone(), source })?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Installs the stub for `kind` at `<path>/<kind>` beside every project.conf
/// in the tree that declares `kind` in a `plugins:` entry with `origin: local`.
/// A stub no project.conf declares (e.g. `duplicate-plugins`, whose projects
/// fail before any plugin runs) installs nothing.
fn install_stub(tree: &Path, kind: &str, stubs_dir: &Path) -> Result<(), HarnessError> {
    let stub = stubs_dir.join(kind);
    for conf in walk(tree)?.into_iter().filter(|p| p.file_name().and_then(|n| n.to_str()) == Some("project.conf")) {
        let Ok(text) = std::fs::read_to_string(&conf) else { continue };
        let Ok(value) = serde_yaml_ng::from_str::<Value>(&text) else { continue };
        let conf_dir = conf.parent().unwrap_or(tree);
        for plugin_path in local_plugin_paths(&value, kind) {
            if !stub.is_file() {
                return Err(HarnessError::MissingStub { path: stub });
            }
            let dir = conf_dir.join(plugin_path);
            std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Write { path: dir.clone(), source })?;
            let dest = dir.join(kind);
            std::fs::copy(&stub, &dest).map_err(|source| HarnessError::Write { path: dest.clone(), source })?;
            set_mode(&dest, 0o755)?;
        }
    }
    Ok(())
}

/// The `path:` of every local plugin origin in a project.conf that declares
/// `kind` among its `elements:` or `sources:`.
pub fn local_plugin_paths(conf: &Value, kind: &str) -> Vec<String> {
    let Some(plugins) = conf.get("plugins").and_then(Value::as_sequence) else { return Vec::new() };
    plugins
        .iter()
        .filter(|origin| origin.get("origin").and_then(Value::as_str) == Some("local"))
        .filter(|origin| {
            ["elements", "sources"].iter().any(|list| {
                origin
                    .get(*list)
                    .and_then(Value::as_sequence)
                    .is_some_and(|kinds| kinds.iter().any(|k| k.as_str() == Some(kind)))
            })
        })
        .filter_map(|origin| origin.get("path").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Runs the command, capturing both streams; kills it after `timeout`.
fn run_with_timeout(mut command: Command, program: &Path, timeout: Duration) -> Result<Outcome, HarnessError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn { program: program.to_path_buf(), source })?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                // The process may have ended just now; either way it is gone.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(HarnessError::Spawn { program: program.to_path_buf(), source }),
        }
    };
    let collect = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle.and_then(|h| h.join().ok()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    };
    Ok(Outcome { status, timed_out, stdout: collect(stdout), stderr: collect(stderr) })
}

fn drain(mut stream: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture; what was read so far is kept.
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_list_becomes_project_show() {
        let argv: Vec<String> = ["--option", "a", "b", "workspace", "list"].iter().map(|s| s.to_string()).collect();
        assert_eq!(weir_argv(&argv, true), ["--option", "a", "b", "project", "show"]);
        let show: Vec<String> = ["show", "workspace", "list"].iter().map(|s| s.to_string()).collect();
        assert_eq!(weir_argv(&show, false), show);
    }

    #[test]
    fn symlink_names_come_from_generated_from() {
        let text = "format/project/element-path copied to real/, elements/element.bst written (kind: manual), and `linked` a relative symlink to real/";
        assert_eq!(symlinks_to_restore(Some(text)), ["linked"]);
        assert!(symlinks_to_restore(Some("a `b` c")).is_empty());
        assert!(symlinks_to_restore(None).is_empty());
    }

    #[test]
    fn local_plugin_paths_match_declared_kinds() {
        let conf: Value = serde_yaml_ng::from_str(
            "plugins:\n- origin: local\n  path: plugins\n  elements: [a, b]\n- origin: junction\n  junction: j.bst\n  elements: [a]\n- origin: local\n  path: more\n  sources: [a]\n",
        )
        .unwrap();
        assert_eq!(local_plugin_paths(&conf, "a"), ["plugins", "more"]);
        assert_eq!(local_plugin_paths(&conf, "b"), ["plugins"]);
        assert!(local_plugin_paths(&conf, "c").is_empty());
    }

    #[test]
    fn stubs_are_installed_and_symlinks_restored_in_a_copy() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("project.conf"), "name: t\nplugins:\n- origin: local\n  path: plugins\n  elements: [k]\n")
            .unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/link"), "../project.conf").unwrap();
        let stubs = tempfile::tempdir().unwrap();
        std::fs::write(stubs.path().join("k"), "#!/bin/sh\n").unwrap();

        let dst = tempfile::tempdir().unwrap();
        let copy = dst.path().join("copy");
        copy_tree(src.path(), &copy).unwrap();
        install_stub(&copy, "k", stubs.path()).unwrap();
        restore_symlinks(&copy, "link").unwrap();
        assert!(copy.join("plugins/k").is_file());
        assert_eq!(std::fs::read_link(copy.join("sub/link")).unwrap(), PathBuf::from("../project.conf"));

        let missing = install_stub(&copy, "k", dst.path());
        assert!(matches!(missing, Err(HarnessError::MissingStub { .. })));
    }

    #[test]
    fn a_hanging_process_is_killed_at_the_timeout() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let started = Instant::now();
        let outcome = run_with_timeout(command, Path::new("sleep"), Duration::from_millis(200)).unwrap();
        assert!(outcome.timed_out);
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
