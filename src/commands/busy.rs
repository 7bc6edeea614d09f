//! What `keygate start` says when its listen address is taken: which process holds it
//! (another keygate, asked through its self-test origin, and on Linux the process id
//! and name found in /proc) and what to do.

use std::net::SocketAddr;

use super::probe::{Found, keygate_at};

/// The message for `listen` being in use.
pub async fn in_use(listen: SocketAddr) -> String {
    let found = keygate_at(keygate::agent::client_address(listen)).await;
    let holder = holder_of(listen);
    match found {
        Found::Keygate { version } => {
            let mut about = Vec::new();
            match version {
                Some(v) => about.push(format!("version {v}")),
                None => about.push("it requires proxy credentials".to_string()),
            }
            if let Some((pid, _)) = &holder {
                about.push(format!("pid {pid}"));
            }
            format!(
                "{listen} is in use by another keygate ({}); stop it, or start this one with --listen 127.0.0.1:0",
                about.join(", ")
            )
        }
        Found::Other => {
            let who = match holder {
                Some((pid, Some(name))) => format!("{name} (pid {pid}), not a keygate"),
                Some((pid, None)) => format!("process {pid}, not a keygate"),
                None => "another program (not a keygate that answers)".to_string(),
            };
            format!(
                "cannot listen on {listen}: the address is in use by {who}; stop it, or start keygate with --listen 127.0.0.1:0 (or another `listen:` in keygate.yaml)"
            )
        }
    }
}

/// The process id (and command name) of a process listening on `listen`'s port at that
/// address or a wildcard one, when /proc shows it (Linux; only this user's processes
/// unless root). Best effort: `None` when it cannot tell.
#[cfg(target_os = "linux")]
fn holder_of(listen: SocketAddr) -> Option<(u32, Option<String>)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| listening_inodes(&text, listen))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|link| targets.iter().any(|t| link.as_os_str() == t.as_str()))
        });
        if holds {
            let name = std::fs::read_to_string(process.path().join("comm"))
                .ok()
                .map(|n| n.trim().to_string());
            return Some((pid, name));
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
fn holder_of(_: SocketAddr) -> Option<(u32, Option<String>)> {
    None
}

/// The socket inodes of listening sockets in a /proc/net/tcp{,6} table that take
/// `listen`'s port: bound to its address, or either side a wildcard address.
#[cfg(target_os = "linux")]
fn listening_inodes(table: &str, listen: SocketAddr) -> Vec<String> {
    /// The state column's value for a listening socket.
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let bound = parse_proc_addr(local)?;
            let takes = bound.port() == listen.port()
                && (bound.ip() == listen.ip()
                    || bound.ip().is_unspecified()
                    || listen.ip().is_unspecified());
            (*state == LISTEN && takes).then(|| inode.to_string())
        })
        .collect()
}

/// `0100007F:22AD` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each
/// 32-bit word of the network-order address as a native-endian number.
#[cfg(target_os = "linux")]
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..ip.len() / 8)
        .map(|i| {
            let word = ip.get(i * 8..i * 8 + 8)?;
            u32::from_str_radix(word, 16).ok().map(u32::to_ne_bytes)
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:22AD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:22AD 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1\n";
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(listening_inodes(v4, at("127.0.0.1:8877")), ["4242"]);
        assert_eq!(listening_inodes(v4, at("0.0.0.0:8877")), ["4242"]);
        assert_eq!(
            listening_inodes(v4, at("127.0.0.1:8080")),
            ["4444"],
            "wildcard"
        );
        assert!(listening_inodes(v4, at("127.0.0.1:9")).is_empty());
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:22AD"),
            Some(at("[::1]:8877"))
        );
    }

    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (pid, _) = holder_of(addr).expect("found in /proc");
        assert_eq!(pid, std::process::id());
    }
}
