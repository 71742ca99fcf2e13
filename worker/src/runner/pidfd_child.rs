//! [`PidfdChild`]: a child process created with `clone(CLONE_PIDFD)`,
//! waited for asynchronously through its pidfd.
//!
//! Key decision: the pidfd, not the pid, is the handle. It becomes readable
//! when the process exits, so tokio's reactor waits for it without a
//! `SIGCHLD` handler, and `waitid(P_PIDFD)` reaps exactly this process (a
//! recycled pid can never be signalled or reaped by mistake). A child that
//! is dropped before it was reaped is killed and reaped then, like
//! `tokio::process::Command::kill_on_drop`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `waitid`'s id type for a pidfd (Linux 5.4).
const P_PIDFD: libc::idtype_t = 3;

/// A running (or exited, not yet reaped) child process.
#[derive(Debug)]
pub struct PidfdChild {
    pid: libc::pid_t,
    /// `None` once reaped.
    pidfd: Option<Pidfd>,
    status: Option<ExitStatus>,
}

/// The pidfd, registered with tokio's reactor on the first asynchronous wait.
#[derive(Debug)]
enum Pidfd {
    Plain(OwnedFd),
    Watched(AsyncFd<OwnedFd>),
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Pidfd::Plain(fd) => fd.as_raw_fd(),
            Pidfd::Watched(fd) => fd.get_ref().as_raw_fd(),
        }
    }
}

impl PidfdChild {
    /// Takes ownership of a child process and its pidfd.
    pub fn new(pid: libc::pid_t, pidfd: OwnedFd) -> Self {
        PidfdChild { pid, pidfd: Some(Pidfd::Plain(pidfd)), status: None }
    }

    /// The process id (in the caller's pid namespace).
    pub fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the process to exit and reaps it. Must run within a tokio
    /// runtime. Cancel-safe; returns the same status again once reaped.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.pidfd = match self.pidfd.take() {
            // SAFETY: an OwnedFd keeps its one descriptor open until dropped.
            Some(Pidfd::Plain(fd)) => match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(watched) => Some(Pidfd::Watched(watched)),
                Err(e) => {
                    let (fd, error) = e.into_parts();
                    self.pidfd = Some(Pidfd::Plain(fd));
                    return Err(error);
                }
            },
            other => other,
        };
        let Some(Pidfd::Watched(watched)) = &self.pidfd else {
            return Err(io::Error::other("the child process was already reaped"));
        };
        // A pidfd turns readable when its process exits.
        watched.readable().await?.retain_ready();
        self.reap()
    }

    /// Waits for the process to exit and reaps it, blocking the thread.
    pub fn wait_blocking(mut self) -> io::Result<ExitStatus> {
        match self.status {
            Some(status) => Ok(status),
            None => self.reap(),
        }
    }

    fn reap(&mut self) -> io::Result<ExitStatus> {
        let pidfd = self.pidfd.as_ref().ok_or_else(|| io::Error::other("the child process was already reaped"))?;
        let status = wait_exited(pidfd.as_raw_fd())?;
        self.pidfd = None;
        self.status = Some(status);
        Ok(status)
    }

    /// Sends SIGKILL to the process unless it was already reaped.
    pub fn kill(&self) {
        if let Some(pidfd) = &self.pidfd {
            // SAFETY: a plain system call on a descriptor this value owns.
            unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<()>(), 0);
            }
        }
    }
}

impl Drop for PidfdChild {
    fn drop(&mut self) {
        if self.pidfd.is_some() {
            self.kill();
            // A killed process exits at once; reaping it here leaves no zombie.
            let _ = self.reap();
        }
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED)`: waits for the process to exit, reaps
/// it and returns its status.
fn wait_exited(pidfd: RawFd) -> io::Result<ExitStatus> {
    loop {
        // SAFETY: `info` is a properly sized, zeroed siginfo_t the kernel fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let result = unsafe { libc::waitid(P_PIDFD, pidfd as libc::id_t, &mut info, libc::WEXITED) };
        if result != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo.
        let (code, value) = unsafe { (info.si_code, info.si_status()) };
        // Rebuild the wait(2) status word that ExitStatus wraps.
        let raw = match code {
            libc::CLD_EXITED => (value & 0xff) << 8,
            libc::CLD_DUMPED => (value & 0x7f) | 0x80,
            _ => value & 0x7f,
        };
        return Ok(ExitStatus::from_raw(raw));
    }
}
