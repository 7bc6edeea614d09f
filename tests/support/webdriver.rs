//! A headless Chromium driven over WebDriver: chromedriver's HTTP JSON protocol (W3C
//! WebDriver), spoken directly over a blocking `TcpStream` with serde_json. The few
//! commands the dashboard test needs, nothing more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::WAIT;

/// The key of a W3C element reference in a WebDriver answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// True when the browser tests must run: scripts/test sets `KEYGATE_TEST_BROWSER=1`, and
/// a missing Chromium or chromedriver then fails instead of skipping.
pub fn required() -> bool {
    std::env::var("KEYGATE_TEST_BROWSER").is_ok_and(|v| v == "1")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or a skip note (a failure when [`required`]).
pub fn found() -> Option<(PathBuf, PathBuf)> {
    let browser = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|p| on_path(p));
    let driver = on_path("chromedriver");
    match (browser, driver) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            assert!(
                !required(),
                "KEYGATE_TEST_BROWSER=1 but chromium or chromedriver is missing; install them with: apt-get install --no-install-recommends chromium chromium-driver"
            );
            eprintln!(
                "skipping: chromium or chromedriver not found (apt-get install chromium chromium-driver; ./scripts/test requires them)"
            );
            None
        }
    }
}

/// A running chromedriver; killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
    browser: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; closed on drop.
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Driver {
    /// Starts `driver` on a free port and waits until it is ready.
    pub fn start(browser: &Path, driver: &Path) -> Driver {
        let port = super::bin::free_port();
        let mut cmd = Command::new(driver);
        // The machine's proxy variables must not reach the browser: it talks to the
        // admin listener directly.
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver = Driver {
            child,
            port,
            profile: tempfile::tempdir().expect("profile dir"),
            browser: browser.to_path_buf(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(status) = driver.call("GET", "/status", None)
                && status["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new headless Chromium session with a throw-away profile.
    pub fn session(&self) -> Session<'_> {
        let profile = self.profile.path().display().to_string();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-proxy-server",
                    "--window-size=1440,900", "--no-first-run",
                    format!("--user-data-dir={profile}"),
                ],
            },
        }}});
        let value = self
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("new session: {e}"));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_string();
        Session { driver: self, id }
    }

    /// One command: the answer's `value`, or the error it carried.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(WAIT * 3)).ok();
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        tcp.write_all(head.as_bytes())
            .and_then(|()| tcp.write_all(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        let (head, body) = read_answer(&mut tcp)?;
        let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let value = json["value"].clone();
        if head.starts_with("HTTP/1.1 2") {
            Ok(value)
        } else {
            Err(format!("{}: {}", value["error"], value["message"]))
        }
    }
}

/// Reads one answer: its head and its body (by Content-Length: chromedriver keeps the
/// connection open even when asked to close it).
fn read_answer(tcp: &mut TcpStream) -> Result<(String, String), String> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length in {head}"))?;
            if answer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&answer[end + 4..end + 4 + length]);
                return Ok((head, body.into_owned()));
            }
        }
        let n = tcp.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("chromedriver closed the connection mid-answer".into());
        }
        answer.extend_from_slice(&chunk[..n]);
    }
}

impl Session<'_> {
    fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{what}", self.id);
        self.driver
            .call(method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {what}: {e}"))
    }

    /// Navigates to `url`.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn eval(&self, script: &str, args: &[Value]) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` until it returns a truthy value (its value), failing after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, script: &str, args: &[Value]) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(script, args);
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?} (last: {value})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `css` finds, as a user would.
    pub fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        let element = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(&json!({})),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("a PNG in base64")
    }
}
