//! A server process a test started: its log, its pid, the signals tests send it, its
//! end. Shared by the test binaries (each includes it with `#[path]`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};

pub struct Process {
    child: Option<Child>,
    /// Where the process's stderr goes.
    log: PathBuf,
}

impl Process {
    pub fn new(log: PathBuf) -> Process {
        Process { child: None, log }
    }

    /// Takes the spawned child over.
    pub fn started(&mut self, child: Child) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`) through `kill(1)`, which keeps the
    /// test crates free of libc.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill").success();
        assert!(ok, "kill -{sig} failed");
    }

    /// The exit status, if the process has ended by itself (it is then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}
