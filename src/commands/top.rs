//! `keygate top`: the flows of a running `keygate start`, live, from its admin socket
//! (`/api/flows` then the `/api/flows/stream` feed). Full screen on a terminal (q quits,
//! r toggles refusals only); one line per flow otherwise (`--plain`).

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use keygate::home::Home;
use serde_json::Value;

use super::Failure;
use crate::cli::TopArgs;

/// Flows kept for the screen.
const KEEP: usize = 500;

pub fn run(home: &Home, args: TopArgs) -> Result<(), Failure> {
    let sock = home.admin_socket();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let plain = args.plain || !std::io::stdout().is_terminal();
    runtime.block_on(async move {
        let (recent, feed) = connect(&sock).await?;
        match plain {
            true => plain_view(recent, feed, args.count).await,
            false => screen(recent, feed, &sock).await,
        }
    })
}

/// The recent flows and the live feed's body.
async fn connect(sock: &Path) -> Result<(Vec<Value>, hyper::body::Incoming), Failure> {
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow!(
            "cannot reach keygate's admin socket {}: {e}; is `keygate start` running with this home?",
            sock.display()
        )
    };
    let recent = get(sock, "/api/flows?limit=200")
        .await
        .map_err(|e| unreachable(&e))?;
    let recent = recent["flows"].as_array().cloned().unwrap_or_default();
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = http::Request::get("/api/flows/stream")
        .header("host", "keygate-admin")
        .body(Empty::<Bytes>::new())
        .map_err(|e| anyhow!(e))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok((recent, response.into_body()))
}

/// One JSON GET on the admin socket.
async fn get(sock: &Path, path: &str) -> anyhow::Result<Value> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "keygate-admin")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(req).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// Reads the feed's SSE text into flows as whole events arrive.
struct Feed {
    body: hyper::body::Incoming,
    buffer: String,
}

impl Feed {
    /// The next flow; `None` when keygate closed the feed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if let Ok(flow) = serde_json::from_str(&data) {
                    return Some(flow);
                }
                continue;
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn text<'a>(flow: &'a Value, key: &str) -> &'a str {
    flow[key].as_str().unwrap_or("-")
}

/// One flow on one line: time, client, decision, method, host, path, status, secret, ms,
/// and for a refusal its code.
fn line(flow: &Value) -> String {
    let ts = text(flow, "ts");
    let time = ts.get(11..19).unwrap_or(ts);
    let status = flow["status"]
        .as_u64()
        .map_or("-".to_string(), |s| s.to_string());
    let mut out = format!(
        "{time} {:<21} {:<9} {:<7} {}{} {status} {} {}ms",
        text(flow, "client"),
        text(flow, "decision"),
        text(flow, "method"),
        text(flow, "host"),
        flow["path"].as_str().unwrap_or(""),
        text(flow, "secret"),
        flow["ms"].as_u64().unwrap_or(0),
    );
    if let Some(code) = flow["code"].as_str() {
        out.push_str(&format!(" [{code}]"));
    }
    // Control characters from the network never reach the terminal.
    out.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

async fn plain_view(
    recent: Vec<Value>,
    body: hyper::body::Incoming,
    count: Option<usize>,
) -> Result<(), Failure> {
    let mut printed = 0;
    let mut stdout = std::io::stdout();
    let mut show = |flow: &Value| -> bool {
        let _ = writeln!(stdout, "{}", line(flow));
        let _ = stdout.flush();
        printed += 1;
        count.is_some_and(|n| printed >= n)
    };
    for flow in &recent {
        if show(flow) {
            return Ok(());
        }
    }
    let mut feed = Feed {
        body,
        buffer: String::new(),
    };
    while let Some(flow) = feed.next().await {
        if show(&flow) {
            return Ok(());
        }
    }
    Err(anyhow!("keygate closed the feed (it stopped?)").into())
}

/// Restores the terminal however the view ends.
struct Terminal;

impl Terminal {
    fn enter() -> std::io::Result<Terminal> {
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(Terminal)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

async fn screen(
    recent: Vec<Value>,
    body: hyper::body::Incoming,
    sock: &Path,
) -> Result<(), Failure> {
    let mut flows: VecDeque<Value> = recent.into_iter().collect();
    let mut feed = Feed {
        body,
        buffer: String::new(),
    };
    let _terminal = Terminal::enter().context("setting up the terminal")?;
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if let crossterm::event::Event::Key(key) = event
                && keys_tx.send(key).is_err()
            {
                break;
            }
        }
    });
    let mut refusals_only = false;
    let mut secrets = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let sock: PathBuf = sock.to_path_buf();
    loop {
        draw(&flows, refusals_only, &secrets)?;
        tokio::select! {
            flow = feed.next() => match flow {
                Some(flow) => {
                    flows.push_back(flow);
                    if flows.len() > KEEP {
                        flows.pop_front();
                    }
                }
                None => return Err(anyhow!("keygate closed the feed (it stopped?)").into()),
            },
            key = keys.recv() => {
                use crossterm::event::{KeyCode, KeyModifiers};
                let Some(key) = key else { return Ok(()) };
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    KeyCode::Char('r') => refusals_only = !refusals_only,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if let Ok(list) = get(&sock, "/api/secrets").await {
                    secrets = list["secrets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| format!("{} {}", text(s, "name"), s["uses"].as_u64().unwrap_or(0)))
                        .collect::<Vec<_>>()
                        .join("  ");
                }
            }
        }
    }
}

fn draw(flows: &VecDeque<Value>, refusals_only: bool, secrets: &str) -> anyhow::Result<()> {
    use crossterm::style::{Color, Print, ResetColor, SetForegroundColor};
    use crossterm::{cursor, queue, terminal};
    let (width, height) = terminal::size().unwrap_or((100, 30));
    let (width, height) = (usize::from(width), usize::from(height));
    let mut out = std::io::stdout();
    queue!(
        out,
        terminal::Clear(terminal::ClearType::All),
        cursor::MoveTo(0, 0)
    )?;
    let refused = flows.iter().filter(|f| f["decision"] == "deny").count();
    let title = format!(
        "keygate top: {} flows, {refused} refused{}   q quit  r refusals only",
        flows.len(),
        if refusals_only {
            " (showing refusals)"
        } else {
            ""
        }
    );
    queue!(out, Print(clip(&title, width)), cursor::MoveToNextLine(1))?;
    let uses = format!(
        "secrets (uses): {}",
        if secrets.is_empty() { "-" } else { secrets }
    );
    queue!(out, Print(clip(&uses, width)), cursor::MoveToNextLine(2))?;
    let rows = height.saturating_sub(4);
    let shown: Vec<&Value> = flows
        .iter()
        .rev()
        .filter(|f| !refusals_only || f["decision"] == "deny")
        .take(rows)
        .collect();
    for flow in shown {
        let color = match flow["decision"].as_str() {
            Some("deny") => Color::Red,
            Some("intercept") => Color::Cyan,
            _ => Color::Reset,
        };
        queue!(
            out,
            SetForegroundColor(color),
            Print(clip(&line(flow), width)),
            ResetColor,
            cursor::MoveToNextLine(1)
        )?;
    }
    out.flush()?;
    Ok(())
}

fn clip(text: &str, width: usize) -> String {
    text.chars().take(width.saturating_sub(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_the_flow_and_no_control_character() {
        let flow = serde_json::json!({
            "ts": "2026-12-05T10:11:12Z", "client": "127.0.0.1:5", "decision": "deny",
            "method": "GET", "host": "evil\u{1b}[2J.example", "path": "/x", "status": 403,
            "ms": 2, "code": "not-allowed"
        });
        let text = line(&flow);
        assert!(text.starts_with("10:11:12 127.0.0.1:5"), "{text}");
        assert!(
            text.contains("[not-allowed]") && text.contains(" 403 "),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
