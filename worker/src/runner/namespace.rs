//! The `namespace` sandbox, child side: what runs between `fork` and `exec`
//! to put a command into fresh Linux user, mount, pid, uts, ipc and (unless
//! the action asks for the network) network namespaces whose `/` is the
//! action's input root.
//!
//! Key decision: everything the child needs (paths, uid/gid maps, flags) is
//! prepared as C strings in the parent by [`NamespaceSetup::new`], so the
//! code after `fork` makes raw system calls and never allocates. The set-up
//! follows BuildStream's bubblewrap sandbox:
//!
//! 1. `unshare` the namespaces; map uid/gid 0 inside to the invoking user.
//! 2. `fork` once more: the grandchild is pid 1 of the new pid namespace; the
//!    intermediate process closes every inherited descriptor (so the parent's
//!    `spawn` returns as soon as the grandchild execs), waits, and exits with
//!    the grandchild's status. Both die with their parent (`PR_SET_PDEATHSIG`),
//!    and killing the intermediate kills pid 1 and so the whole namespace.
//! 3. In the grandchild: make `/` private, bind the input root onto itself,
//!    mount a fresh `/proc`, a `tmpfs` `/dev` with bind-mounted `null`,
//!    `zero`, `full`, `random`, `urandom`, `tty` and the usual symlinks,
//!    bring up `lo` in a new network namespace, `pivot_root` into the input
//!    root, detach the old root and `chdir` to the working directory.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Device nodes bound from the host's `/dev`, as BuildStream's sandbox does.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Symlinks created in `/dev`: (link name, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];
/// Empty directories created in `/dev`.
const DEV_DIRS: [&str; 2] = ["shm", "pts"];

/// Everything the child needs to enter the sandbox, prepared in the parent.
#[derive(Debug, Clone)]
pub struct NamespaceSetup {
    flags: CloneFlags,
    new_network: bool,
    root: CString,
    proc_dir: CString,
    dev_dir: CString,
    devices: Vec<(CString, CString)>,
    dev_links: Vec<(CString, CString)>,
    dev_dirs: Vec<CString>,
    working_dir: CString,
    uid_map: CString,
    gid_map: CString,
    probe_only: bool,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn c_str(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

impl NamespaceSetup {
    /// Prepares a sandbox rooted at `root` (an absolute path whose `proc` and
    /// `dev` directories exist) that starts the command in `working_dir`
    /// (relative to the root; empty for the root itself).
    pub fn new(root: &Path, working_dir: &str, network: bool) -> io::Result<Self> {
        let mut flags = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        if !network {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let dev = root.join("dev");
        let devices = DEVICES
            .iter()
            .map(|name| Path::new("/dev").join(name))
            .filter(|host| host.exists())
            .map(|host| Ok((c_path(&host)?, c_path(&dev.join(host.file_name().unwrap_or_default()))?)))
            .collect::<io::Result<_>>()?;
        let dev_links = DEV_LINKS
            .iter()
            .map(|(name, target)| Ok((c_str(target)?, c_path(&dev.join(name))?)))
            .collect::<io::Result<_>>()?;
        let dev_dirs = DEV_DIRS.iter().map(|name| c_path(&dev.join(name))).collect::<io::Result<_>>()?;
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        Ok(NamespaceSetup {
            flags,
            new_network: !network,
            root: c_path(root)?,
            proc_dir: c_path(&root.join("proc"))?,
            dev_dir: c_path(&dev)?,
            devices,
            dev_links,
            dev_dirs,
            working_dir: c_str(&format!("/{working_dir}"))?,
            uid_map: c_str(&format!("0 {uid} 1\n"))?,
            gid_map: c_str(&format!("0 {gid} 1\n"))?,
            probe_only: false,
        })
    }

    /// Makes the child exit 0 right after a successful set-up instead of
    /// returning to exec the command (used by [`super::probe`]).
    pub fn probe_only(mut self) -> Self {
        self.probe_only = true;
        self
    }

    /// Enters the sandbox. Called between `fork` and `exec` (a
    /// `pre_exec` hook): returns in the grandchild, which then execs the
    /// command as pid 1; the intermediate process never returns.
    ///
    /// # Safety
    /// Must only be called in a freshly forked, single-threaded child. It
    /// makes raw system calls and does not allocate.
    pub unsafe fn enter(&self) -> io::Result<()> {
        set_parent_death_signal()?;
        nix::sched::unshare(self.flags)?;
        write_file(c"/proc/self/setgroups", c"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid_map)?;
        write_file(c"/proc/self/gid_map", &self.gid_map)?;

        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            child => relay_exit(child),
        }
        // The grandchild: pid 1 of the new pid namespace.
        set_parent_death_signal()?;
        self.mount_root()?;
        if self.new_network {
            loopback_up()?;
        }
        let name = b"weir";
        if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::chdir(self.working_dir.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if self.probe_only {
            let in_new_pid_namespace = libc::getpid() == 1;
            let proc_mounted = libc::access(c"/proc/self/status".as_ptr(), libc::R_OK) == 0;
            libc::_exit(if in_new_pid_namespace && proc_mounted { 0 } else { 2 });
        }
        Ok(())
    }

    unsafe fn mount_root(&self) -> io::Result<()> {
        let none: Option<&std::ffi::CStr> = None;
        nix::mount::mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
        nix::mount::mount(Some(self.root.as_c_str()), self.root.as_c_str(), none, MsFlags::MS_BIND | MsFlags::MS_REC, none)?;
        nix::mount::mount(
            Some(c"proc"),
            self.proc_dir.as_c_str(),
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            none,
        )?;
        nix::mount::mount(Some(c"tmpfs"), self.dev_dir.as_c_str(), Some(c"tmpfs"), MsFlags::MS_NOSUID, Some(c"mode=0755"))?;
        for (host, target) in &self.devices {
            let fd = libc::open(target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::close(fd);
            nix::mount::mount(Some(host.as_c_str()), target.as_c_str(), none, MsFlags::MS_BIND, none)?;
        }
        for (target, link) in &self.dev_links {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for dir in &self.dev_dirs {
            if libc::mkdir(dir.as_ptr(), 0o755) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::chdir(self.root.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        nix::unistd::pivot_root(c".", c".")?;
        nix::mount::umount2(c".", MntFlags::MNT_DETACH)?;
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Dies with SIGKILL when the parent does.
unsafe fn set_parent_death_signal() -> io::Result<()> {
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `content` to the file `path` (a `/proc` control file).
unsafe fn write_file(path: &std::ffi::CStr, content: &std::ffi::CStr) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = content.to_bytes();
    let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    let error = io::Error::last_os_error();
    libc::close(fd);
    if written != bytes.len() as isize {
        return Err(error);
    }
    Ok(())
}

/// The intermediate process: drops every inherited descriptor, waits for
/// pid 1 and exits the way it did.
unsafe fn relay_exit(child: libc::pid_t) -> ! {
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        for fd in 3..1024 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    loop {
        let waited = libc::waitpid(child, &mut status, 0);
        if waited == child {
            break;
        }
        if waited < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    let signal = libc::WTERMSIG(status);
    libc::signal(signal, libc::SIG_DFL);
    libc::kill(libc::getpid(), signal);
    libc::_exit(128 + signal);
}

/// Brings up the loopback interface of a new network namespace.
unsafe fn loopback_up() -> io::Result<()> {
    let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut request: libc::ifreq = std::mem::zeroed();
    request.ifr_name[0] = b'l' as libc::c_char;
    request.ifr_name[1] = b'o' as libc::c_char;
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    let result = libc::ioctl(socket, libc::SIOCSIFFLAGS as _, &request);
    let error = io::Error::last_os_error();
    libc::close(socket);
    if result != 0 {
        return Err(error);
    }
    Ok(())
}
