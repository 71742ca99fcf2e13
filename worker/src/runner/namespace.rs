//! The `namespace` sandbox: starting a command in fresh Linux user, mount,
//! pid, uts, ipc and (unless the action asks for the network) network
//! namespaces whose `/` is the action's input root.
//!
//! Key decision: one `clone(CLONE_VM | CLONE_VFORK | CLONE_NEW*)`, as
//! `posix_spawn` does, instead of `fork`: the child runs on a small stack
//! while sharing the worker's memory until it execs, so starting a command
//! costs the same in a 20 MB worker and in a 2 GB `weir build` that embeds
//! one (a `fork` copies the page tables, and every page the parent writes
//! afterwards is copied again). Everything the child needs (paths, uid/gid
//! maps, argv, environment) is prepared as C strings beforehand by
//! [`NamespaceSetup::new`] and [`ExecImage`], so the child makes raw system
//! calls and never allocates. The set-up follows BuildStream's bubblewrap
//! sandbox:
//!
//! 1. The clone creates the namespaces; the child is pid 1 of the new pid
//!    namespace, so killing it ends everything the command started. It dies
//!    with the thread that started it (`PR_SET_PDEATHSIG`), leads its own
//!    process group and maps uid/gid 0 inside to the invoking user.
//! 2. It makes `/` private, binds the input root onto itself, mounts a fresh
//!    `/proc`, a `tmpfs` `/dev` with bind-mounted `null`, `zero`, `full`,
//!    `random`, `urandom`, `tty` and the usual symlinks, brings up `lo` in a
//!    new network namespace, `pivot_root`s into the input root, detaches the
//!    old root and changes to the working directory.
//! 3. It execs the command, looking the program up in the sandbox's own
//!    `PATH` ([`ExecImage::exec`]).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::exec_image::ExecImage;
use super::pidfd_child::PidfdChild;

/// Device nodes bound from the host's `/dev`, as BuildStream's sandbox does.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// The [`DEVICES`] this host has, looked up once.
fn host_devices() -> &'static [&'static str] {
    static PRESENT: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    PRESENT.get_or_init(|| DEVICES.into_iter().filter(|name| Path::new("/dev").join(name).exists()).collect())
}

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
        let devices = host_devices()
            .iter()
            .map(|name| Ok((c_path(&Path::new("/dev").join(name))?, c_path(&dev.join(name))?)))
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

    /// Starts `image` in the sandbox and returns at once: one
    /// `clone(CLONE_VM | CLONE_VFORK | CLONE_NEW*)` makes the command pid 1 of
    /// its new namespaces. `stdio` are the descriptors for its stdin, stdout
    /// and stderr.
    ///
    /// The child shares the caller's memory until it execs (the caller's
    /// thread is suspended meanwhile), so nothing is copied however large the
    /// caller is, and no copy of the caller's descriptors outlives the
    /// `exec`. A failure in the child (a mount, the `exec` itself) is
    /// reported through that shared memory and returned here.
    pub fn spawn(&self, image: &ExecImage, stdio: [RawFd; 3]) -> io::Result<PidfdChild> {
        let child = ChildContext { setup: self, image, stdio, failed_step: AtomicUsize::new(0), errno: AtomicI32::new(0) };
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        // The stack grows down: pass its 16-byte aligned top.
        let top = (stack.as_mut_ptr() as usize + CHILD_STACK_BYTES) & !15;
        let flags = self.flags.bits() | libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
        let mut pidfd: libc::c_int = -1;
        // SAFETY: all signals are blocked around the clone so that none runs
        // one of the caller's handlers on the child's stack; the child only
        // makes raw system calls on `child` (which lives until the clone
        // returns, i.e. until the child has exec'd or exited) and resets its
        // signal handlers before unblocking them.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            let pid = libc::clone(
                child_main,
                top as *mut libc::c_void,
                flags,
                &child as *const ChildContext as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            if pid < 0 {
                return Err(error);
            }
            pid
        };
        drop(stack);
        // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
        let process = PidfdChild::new(pid, unsafe { OwnedFd::from_raw_fd(pidfd) });
        let step = child.failed_step.load(Ordering::Acquire);
        if step != 0 {
            drop(process); // exited already: reaps it
            let error = io::Error::from_raw_os_error(child.errno.load(Ordering::Acquire));
            let step = CHILD_STEPS.get(step).copied().unwrap_or("setting up");
            return Err(io::Error::new(error.kind(), format!("{step}: {error}")));
        }
        Ok(process)
    }

    /// The child's side, on the shared stack: enter the sandbox, then exec.
    /// Returns the step that failed and its error.
    ///
    /// # Safety
    /// Only in the child of [`Self::spawn`]: raw system calls, no allocation.
    unsafe fn enter_and_exec(&self, image: &ExecImage, stdio: [RawFd; 3]) -> (usize, io::Error) {
        macro_rules! step {
            ($index:expr, $call:expr) => {
                if let Err(e) = $call {
                    return ($index, e);
                }
            };
        }
        step!(STEP_SIGNALS, reset_signals());
        step!(STEP_PARENT, set_parent_death_signal());
        step!(STEP_GROUP, check(libc::setpgid(0, 0)));
        step!(STEP_STDIO, redirect_stdio(stdio));
        step!(STEP_ID_MAPS, self.write_id_maps());
        step!(STEP_MOUNTS, self.mount_root());
        if self.new_network {
            step!(STEP_NETWORK, loopback_up());
        }
        let name = b"weir";
        step!(STEP_HOSTNAME, check(libc::sethostname(name.as_ptr().cast(), name.len())));
        step!(STEP_WORKING_DIR, check(libc::chdir(self.working_dir.as_ptr())));
        if self.probe_only {
            let in_new_pid_namespace = libc::getpid() == 1;
            let proc_mounted = libc::access(c"/proc/self/status".as_ptr(), libc::R_OK) == 0;
            libc::_exit(if in_new_pid_namespace && proc_mounted { 0 } else { 2 });
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        (STEP_EXEC, image.exec())
    }

    unsafe fn write_id_maps(&self) -> io::Result<()> {
        write_file(c"/proc/self/setgroups", c"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid_map)?;
        write_file(c"/proc/self/gid_map", &self.gid_map)
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

/// The size of the stack the child runs on until it execs.
const CHILD_STACK_BYTES: usize = 256 * 1024;

/// What the child of [`NamespaceSetup::spawn`] works on, shared with the
/// (suspended) parent; the child reports a failure in the two atomics.
struct ChildContext<'a> {
    setup: &'a NamespaceSetup,
    image: &'a ExecImage,
    stdio: [RawFd; 3],
    failed_step: AtomicUsize,
    errno: AtomicI32,
}

const STEP_SIGNALS: usize = 1;
const STEP_PARENT: usize = 2;
const STEP_GROUP: usize = 3;
const STEP_STDIO: usize = 4;
const STEP_ID_MAPS: usize = 5;
const STEP_MOUNTS: usize = 6;
const STEP_NETWORK: usize = 7;
const STEP_HOSTNAME: usize = 8;
const STEP_WORKING_DIR: usize = 9;
const STEP_EXEC: usize = 10;
/// What each step does, for the error message (index 0: no failure).
const CHILD_STEPS: [&str; 11] = [
    "",
    "resetting signal handlers",
    "setting the parent-death signal",
    "creating the process group",
    "redirecting stdin, stdout and stderr",
    "writing the user namespace's id maps",
    "mounting the sandbox's root, /proc and /dev",
    "bringing up the loopback interface",
    "setting the host name",
    "changing to the working directory",
    "starting the command",
];

extern "C" fn child_main(argument: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `argument` is the parent's `ChildContext`, alive and unchanged
    // while the parent is suspended (CLONE_VFORK).
    let child = unsafe { &*(argument as *const ChildContext) };
    let (step, error) = unsafe { child.setup.enter_and_exec(child.image, child.stdio) };
    child.errno.store(error.raw_os_error().unwrap_or(libc::EIO), Ordering::Release);
    child.failed_step.store(step, Ordering::Release);
    // SAFETY: ends the child without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction` (the C library's
/// wrapper refuses the signals it reserves for itself).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Restores the default action of every signal (the child has a copy of the
/// parent's handlers, which must never run on the shared memory), as
/// `posix_spawn` does; ignored signals (SIGPIPE in Rust programs, and the
/// C library's own) are reset too, so the command starts as from `init`.
unsafe fn reset_signals() -> io::Result<()> {
    let default = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let set = libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &default as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        );
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes `stdio` descriptors 0, 1 and 2, and every other inherited
/// descriptor close-on-exec (Rust opens its own that way already).
unsafe fn redirect_stdio(stdio: [RawFd; 3]) -> io::Result<()> {
    for (target, source) in stdio.into_iter().enumerate() {
        if libc::dup2(source, target as RawFd) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
    Ok(())
}
