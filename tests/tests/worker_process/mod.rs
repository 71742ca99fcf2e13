//! [`WorkerProcess`]: a real `weir-worker` started on 127.0.0.1 port 0 for
//! one test, and killed (SIGKILL) when dropped, so no test leaves a server
//! behind. Shared by the worker end-to-end test files.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running worker.
pub struct WorkerProcess {
    child: Child,
    /// The gRPC address it listens on.
    pub addr: SocketAddr,
    /// The HTTP status/metrics address, when configured.
    pub metrics: Option<SocketAddr>,
    /// Its root directory.
    pub root: PathBuf,
}

impl WorkerProcess {
    /// Starts `weir-worker --listen 127.0.0.1:0 --root ROOT ARGS...` and
    /// waits (up to 30 s) for it to print its address.
    pub fn start(root: &Path, args: &[&str]) -> WorkerProcess {
        let mut child = Command::new(weir_tests::worker_bin())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(root)
            .args(args)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir-worker starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut addr = None;
        let mut metrics = None;
        while addr.is_none() || (args.contains(&"--metrics-listen") && metrics.is_none()) {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("weir-worker did not print its address; exit: {:?}", child.wait());
                }
            };
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.trim().parse().expect("a socket address"));
            } else if let Some(m) = line.strip_prefix("metrics on http://") {
                metrics = Some(m.trim().trim_end_matches("/metrics").parse().expect("a socket address"));
            }
        }
        WorkerProcess { child, addr: addr.expect("address read"), metrics, root: root.to_path_buf() }
    }

    /// `http://ADDR`, for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        self.child.wait().expect("the worker exits")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
