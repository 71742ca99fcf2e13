//! [`ExecImage`]: a command's program, arguments and environment prepared
//! as the C arrays `execve` takes, before a child process is created.
//!
//! Key decision: the `PATH` search happens in the child, after it has
//! entered the sandbox (the program is looked up in the input root, not on
//! the host), but the list of candidate paths is built here, in the parent,
//! so that the child only walks prepared strings. The search follows
//! `execvp`: a program name with a `/` is used as is; otherwise every
//! directory of the command's own `PATH` (or `/bin:/usr/bin` when it has
//! none) is tried in order.

use std::ffi::{CStr, CString};
use std::io;

use weir_proto::reapi::Command;

/// The search path `execvp` uses when the environment has no `PATH`.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// A command ready for `execve`: every string as a `CString`, and the
/// NULL-terminated pointer arrays into them.
#[derive(Debug)]
pub struct ExecImage {
    program: String,
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_pointers: Vec<*const libc::c_char>,
    envp_pointers: Vec<*const libc::c_char>,
}

fn c_string(text: &str, what: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")))
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

impl ExecImage {
    /// Prepares `command` (its first argument is the program).
    pub fn new(command: &Command) -> io::Result<Self> {
        let program = command.arguments.first().cloned().unwrap_or_default();
        let argv = command.arguments.iter().map(|a| c_string(a, "an argument")).collect::<io::Result<Vec<_>>>()?;
        let envp = command
            .environment_variables
            .iter()
            .map(|v| c_string(&format!("{}={}", v.name, v.value), "an environment variable"))
            .collect::<io::Result<Vec<_>>>()?;
        let candidates = if program.contains('/') {
            vec![c_string(&program, "the program")?]
        } else {
            let path = command
                .environment_variables
                .iter()
                .find(|v| v.name == "PATH")
                .map_or(DEFAULT_PATH, |v| v.value.as_str());
            path.split(':')
                .map(|dir| if dir.is_empty() { program.clone() } else { format!("{}/{program}", dir.trim_end_matches('/')) })
                .map(|candidate| c_string(&candidate, "the program"))
                .collect::<io::Result<Vec<_>>>()?
        };
        let argv_pointers = pointers(&argv);
        let envp_pointers = pointers(&envp);
        Ok(ExecImage { program, candidates, _argv: argv, _envp: envp, argv_pointers, envp_pointers })
    }

    /// The program as the command names it (for messages).
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Replaces the calling process with the command, trying each candidate
    /// path as `execvp` does. Returns only on failure, with the most telling
    /// error (`EACCES` from a candidate wins over a later `ENOENT`).
    ///
    /// # Safety
    /// Meant for a child process between its creation and `exec`: it makes
    /// raw system calls and does not allocate.
    pub unsafe fn exec(&self) -> io::Error {
        let mut denied = false;
        let mut last = libc::ENOENT;
        for candidate in &self.candidates {
            libc::execve(candidate.as_ptr(), self.argv_pointers.as_ptr(), self.envp_pointers.as_ptr());
            let errno = *libc::__errno_location();
            match errno {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ELOOP | libc::ENAMETOOLONG => last = errno,
                libc::EACCES => denied = true,
                other => return io::Error::from_raw_os_error(other),
            }
        }
        io::Error::from_raw_os_error(if denied { libc::EACCES } else { last })
    }

    /// The candidate paths, in the order they are tried.
    pub fn candidates(&self) -> impl Iterator<Item = &CStr> {
        self.candidates.iter().map(CString::as_c_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::reapi::command::EnvironmentVariable;

    fn command(arguments: &[&str], path: Option<&str>) -> Command {
        Command {
            arguments: arguments.iter().map(|a| a.to_string()).collect(),
            environment_variables: path
                .map(|p| vec![EnvironmentVariable { name: "PATH".into(), value: p.into() }])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn candidates(image: &ExecImage) -> Vec<String> {
        image.candidates().map(|c| c.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_bare_name_is_searched_in_the_commands_own_path() {
        let image = ExecImage::new(&command(&["sh", "-c", "true"], Some("/usr/bin:/bin/::/tools"))).unwrap();
        assert_eq!(candidates(&image), ["/usr/bin/sh", "/bin/sh", "sh", "/tools/sh"]);
    }

    #[test]
    fn without_path_the_execvp_default_is_searched() {
        let image = ExecImage::new(&command(&["make"], None)).unwrap();
        assert_eq!(candidates(&image), ["/bin/make", "/usr/bin/make"]);
    }

    #[test]
    fn a_name_with_a_slash_is_used_as_is() {
        let image = ExecImage::new(&command(&["./configure", "--prefix=/usr"], Some("/bin"))).unwrap();
        assert_eq!(candidates(&image), ["./configure"]);
        assert_eq!(image.argv_pointers.len(), 3, "two arguments and the terminating NULL");
        assert!(image.argv_pointers[2].is_null());
    }

    #[test]
    fn a_nul_byte_is_an_error_not_a_panic() {
        assert!(ExecImage::new(&command(&["sh", "a\0b"], None)).is_err());
    }
}
