//! Runs the built `keygate` binary and curl, with every environment variable they would
//! otherwise pick up from this machine set or removed explicitly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::WAIT;

/// Proxy and trust variables this machine may set globally.
const INHERITED: &[&str] = &[
    "KEYGATE_HOME",
    "KEYGATE_KEYRING",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_DIR",
    "CURL_HOME",
];

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

fn scrubbed(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for var in INHERITED {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `keygate --home HOME ...` with a clean environment.
pub fn keygate(home: &Path) -> Command {
    let mut cmd = scrubbed(env!("CARGO_BIN_EXE_keygate"));
    cmd.arg("--home").arg(home);
    cmd
}

/// Runs `cmd` to completion (bounded by [`WAIT`]: the child is killed after it).
pub fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(id.to_string())
                .status();
            panic!("{cmd:?} did not finish within {}s", WAIT.as_secs());
        }
    };
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// curl with no config file, no proxy or trust variables from the environment, and the
/// trust variables it relies on pointing at `ca_file`.
pub fn curl(ca_file: &Path) -> Command {
    let mut cmd = scrubbed("/usr/bin/curl");
    cmd.env("CURL_CA_BUNDLE", ca_file)
        .env("SSL_CERT_FILE", ca_file)
        .arg("-q")
        .arg("--noproxy")
        .arg("")
        .arg("--cacert")
        .arg(ca_file)
        .arg("--silent")
        .arg("--show-error")
        .arg("--max-time")
        .arg(WAIT.as_secs().to_string());
    cmd
}

/// A `keygate start` running in the background; killed on drop if still running.
pub struct Running {
    child: Child,
    /// The address from the "keygate listening on http://ADDR" line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Spawns `cmd` (a `keygate start`) and waits for its "listening" line.
    pub fn start(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn keygate start");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let seen = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                seen.lock().expect("stderr lines").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut running = Running {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr: lines,
            reader: Some(reader),
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("keygate listening on http://") {
                        running.addr = addr.trim().parse().expect("listen address");
                        return running;
                    }
                }
                Err(_) => panic!(
                    "keygate start printed no listening line; stderr: {:#?}",
                    running.stderr()
                ),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lines").clone()
    }

    /// Waits (bounded) until stderr has a line containing `needle`.
    pub fn wait_for_line(&self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        while !self.stderr().iter().any(|l| l.contains(needle)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{needle}` line; stderr: {:#?}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// [`Running::terminate`], then every line the process wrote to stderr, to the end.
    pub fn terminate_with_stderr(mut self) -> (ExitStatus, Vec<String>) {
        let reader = self.reader.take();
        let lines = self.stderr.clone();
        let status = self.terminate();
        // The process is gone, so the reader reaches the end of the pipe at once.
        if let Some(reader) = reader {
            reader.join().expect("stderr reader");
        }
        let lines = lines.lock().expect("stderr lines").clone();
        (status, lines)
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").arg("-TERM").arg(&pid).status();
        assert!(sent.expect("run kill").success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "keygate did not exit within {}s of SIGTERM; stderr: {:#?}",
                WAIT.as_secs(),
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `keygate ARGS...` with `home` on the keyutils keyring (the backend tests use).
pub fn keygate_keyutils(home: &Path, args: &[&str]) -> Command {
    let mut cmd = keygate(home);
    cmd.env("KEYGATE_KEYRING", "keyutils").args(args);
    cmd
}

/// Removes the keyutils value of secret `0` when dropped, even when the test fails.
pub struct KeyutilsEntry(pub String);

impl Drop for KeyutilsEntry {
    fn drop(&mut self) {
        use keygate::secrets::SecretStore;
        if let Ok(store) = keygate::secrets::keyring::open(Some("keyutils")) {
            let _ = store.delete(&self.0);
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A home whose keygate.yaml listens on `127.0.0.1:port` (nothing answers there unless
/// a test starts something, so `run` embeds its own proxy).
pub fn home_listening_on(port: u16) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("listen: 127.0.0.1:{port}\n"),
    )
    .expect("keygate.yaml");
    home
}
