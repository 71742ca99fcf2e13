//! [`ActionSpec`]: the REAPI `Command` and `Action` of an element that runs
//! commands, built from its [`CommandsRecipe`] and its input root.
//!
//! Key decisions: one action per element. Its command is `sh -e -c SCRIPT`
//! where the script changes to the build root and runs each of the
//! element's commands through its own `sh -e -c`, as BuildStream does (so a
//! `cd` or a variable in one command does not leak into the next, and the
//! first failing command stops the build). Paths inside the action are
//! relative to the input root (`working_directory` is the root), so the
//! action means the same in a chroot-like sandbox and in the worker's `host`
//! sandbox; the install root is the one output path.

use std::collections::BTreeMap;

use prost::Message;
use weir_proto::reapi::{command, platform, Action, Command, Platform};
use weir_proto::Digest;

use super::CommandsRecipe;

/// The command and action of one element, encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    /// The command.
    pub command: Command,
    /// The action (refers to the command and the input root).
    pub action: Action,
    /// The output paths, relative to the input root (the install root for
    /// elements that run commands).
    pub output_paths: Vec<String>,
}

impl ActionSpec {
    /// The action for `recipe` over the input root `input_root`; its output
    /// is the install root.
    pub fn new(recipe: &CommandsRecipe, input_root: Digest) -> Self {
        ActionSpec::with_outputs(recipe, input_root, vec![relative(&recipe.install_root)])
    }

    /// The action for `recipe` collecting `output_paths` (relative to the input root).
    pub fn with_outputs(recipe: &CommandsRecipe, input_root: Digest, output_paths: Vec<String>) -> Self {
        let mut environment: Vec<command::EnvironmentVariable> = recipe
            .environment
            .iter()
            .map(|(name, value)| command::EnvironmentVariable { name: name.clone(), value: value.clone() })
            .collect();
        environment.sort_by(|a, b| a.name.cmp(&b.name));
        let platform = platform_of(&recipe.platform);
        #[allow(deprecated)] // `Command.platform` is still read by pre-2.2 servers.
        let command = Command {
            arguments: vec!["sh".into(), "-e".into(), "-c".into(), script(recipe)],
            environment_variables: environment,
            output_paths: output_paths.clone(),
            working_directory: String::new(),
            platform: platform.clone(),
            // The output tree as separately stored `Directory` messages too, so
            // that the artifact needs no second upload (a server that only
            // sends a `Tree` is handled as well).
            output_directory_format: command::OutputDirectoryFormat::TreeAndDirectory as i32,
            ..Default::default()
        };
        let action = Action {
            command_digest: Some(Digest::of(&command.encode_to_vec()).to_proto()),
            input_root_digest: Some(input_root.to_proto()),
            platform,
            ..Default::default()
        };
        ActionSpec { command, action, output_paths }
    }

    /// The action's digest.
    pub fn action_digest(&self) -> Digest {
        Digest::of(&self.action.encode_to_vec())
    }
}

/// REAPI platform properties, sorted by name (`None` when there are none).
fn platform_of(properties: &BTreeMap<String, String>) -> Option<Platform> {
    if properties.is_empty() {
        return None;
    }
    Some(Platform {
        properties: properties.iter().map(|(name, value)| platform::Property { name: name.clone(), value: value.clone() }).collect(),
    })
}

/// An absolute sandbox path as a path relative to the input root.
pub fn relative(path: &str) -> String {
    path.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

/// Quotes `text` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The outer script: merge stderr into stdout, enter the build root, then
/// each command in its own `sh -e -c`, announced as BuildStream's log does.
fn script(recipe: &CommandsRecipe) -> String {
    // One log in order: the commands' stderr goes with their stdout.
    let mut script = String::from("exec 2>&1\n");
    // Integration of the dependencies, in `/` (the input root).
    for command in recipe.integration_commands.iter().map(|c| c.trim_end()).filter(|c| !c.trim().is_empty()) {
        script.push_str(&format!("printf '%s\\n' {} >&2\n", quote(&format!("Running integration command {command}"))));
        script.push_str(&format!("sh -e -c {}\n", quote(command)));
    }
    let build_root = relative(&recipe.build_root);
    if !build_root.is_empty() {
        script.push_str(&format!("cd {}\n", quote(&build_root)));
    }
    for command in &recipe.commands {
        let command = command.trim_end();
        if command.trim().is_empty() {
            continue;
        }
        script.push_str(&format!("printf '%s\\n' {} >&2\n", quote(&format!("Running {command}"))));
        script.push_str(&format!("sh -e -c {}\n", quote(command)));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(commands: &[&str]) -> CommandsRecipe {
        CommandsRecipe {
            build_root: "/buildstream/proj/hello.bst".into(),
            install_root: "/buildstream-install".into(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            environment: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into()), ("HOME".into(), "/tmp".into())]),
            platform: BTreeMap::from([("OSFamily".into(), "linux".into()), ("ISA".into(), "x86-64".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn command_is_canonical_and_relative_to_the_input_root() {
        let spec = ActionSpec::new(&recipe(&["make"]), Digest::empty());
        assert_eq!(spec.output_paths, ["buildstream-install"]);
        assert_eq!(spec.command.output_paths, ["buildstream-install"]);
        assert_eq!(&spec.command.arguments[..3], ["sh", "-e", "-c"]);
        let names: Vec<_> = spec.command.environment_variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["HOME", "PATH"]);
        let props: Vec<_> = spec.action.platform.as_ref().unwrap().properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(props, ["ISA", "OSFamily"]);
        assert_eq!(spec.action.command_digest, Some(Digest::of(&spec.command.encode_to_vec()).to_proto()));
        // Same inputs, same action digest.
        assert_eq!(spec.action_digest(), ActionSpec::new(&recipe(&["make"]), Digest::empty()).action_digest());
        assert_ne!(spec.action_digest(), ActionSpec::new(&recipe(&["make all"]), Digest::empty()).action_digest());
    }

    #[test]
    fn script_runs_each_command_in_its_own_shell_and_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("buildstream/proj/hello.bst")).unwrap();
        let spec = ActionSpec::new(
            &recipe(&["X=leaked; echo one > ../../../out", "echo \"x=$X it's\" >> ../../../out", "exit 3", "echo never >> ../../../out"]),
            Digest::empty(),
        );
        let status = std::process::Command::new("/bin/sh")
            .args(&spec.command.arguments[1..])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(std::fs::read_to_string(dir.path().join("out")).unwrap(), "one\nx= it's\n");
    }
}
