//! The macOS jail: a Seatbelt profile (SBPL) for `/usr/bin/sandbox-exec -p`.
//!
//! macOS has no unprivileged namespaces, so the jail is the kernel's Seatbelt policy,
//! generated here for one session. The module is pure text and platform-independent
//! so that it is unit-tested on Linux; **it is untested on a real Mac** (the header of
//! every profile says so).
//!
//! # Shape of the profile
//! SBPL applies the *last* rule that matches, so the profile is written in layers:
//! 1. `(deny default)` and a fixed allow list for what ordinary programs need (process,
//!    sysctl, a few Mach services, devices, ptys), modelled on the profiles Codex and
//!    Anthropic's sandbox-runtime ship. Not `(allow default)` with denies: that leaves
//!    every Mach service open, and several (LaunchServices opening a URL, nsurlsessiond,
//!    mDNSResponder) are ways out that do not go through keygate.
//! 2. Network: outbound TCP only to `localhost:<proxy_port>`; no DNS (the proxy
//!    resolves names), no inbound, no binding a TCP port. Unix sockets may be created
//!    (socketpair, runtimes' pipes) but bound and connected only inside the writable
//!    set, so the agent's own sockets work while ssh-agent, gpg-agent, Docker and the
//!    like stay out of reach.
//! 3. Files: reads allowed everywhere, writes nowhere; then one rule per policy path,
//!    ordered from the shallowest path to the deepest so that the most specific path
//!    wins, as with the Linux jail: a hidden path inside the current directory stays
//!    hidden, a writable path inside a hidden directory stays usable, and a readable
//!    exception (the session CA) shows through its hidden directory.
//! 4. Fixed denies, always last so nothing above can reopen them: the keychain's Mach
//!    services and files, hard links and clones (a second, visible name for a hidden
//!    file), and renaming any parent of a hidden path (which would move it out from
//!    under its rule).
//!
//! The trust daemon (`com.apple.trustd*`) is denied with the keychain: it fetches
//! OCSP/AIA URLs for its callers, a way out, and the session CA is not in the system
//! trust store anyway. Clients that verify TLS through Security.framework (Go,
//! native-tls) therefore fail in the jail; clients that take a CA bundle file (curl,
//! Python, Node, rustls with `SSL_CERT_FILE`) work.
//!
//! Seatbelt matches the paths the kernel resolves: callers pass canonical paths
//! (`/private/tmp`, not `/tmp`) and point `TMPDIR` at the private tmp dir they list
//! as writable. Paths that a profile string cannot name exactly (not UTF-8, control
//! characters, not canonical) are refused rather than approximated: an approximate
//! deny rule would silently not match.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The program that applies a profile and runs a command under it.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// What the Seatbelt profile allows; paths absolute, already canonicalised by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatbeltPolicy {
    /// keygate's session listener port on localhost: the only network destination.
    pub proxy_port: u16,
    /// Read-write subtrees: cwd, private tmp dir, agent state, `--writable`.
    pub writable: Vec<PathBuf>,
    /// Unreadable, unwritable subtrees: `$KEYGATE_HOME`, credential files/dirs, `--hide`.
    pub hidden: Vec<PathBuf>,
    /// Read-only exceptions inside `hidden`: the session CA certificate and bundle.
    pub readable: Vec<PathBuf>,
}

/// Why no profile could be written for a policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeatbeltError {
    /// Not UTF-8 or holding a control character (newline included).
    #[error("cannot name {0:?} in a Seatbelt profile (not UTF-8, or a control character)")]
    Unrepresentable(PathBuf),
    /// Relative, or holding `.`, `..` or an empty component.
    #[error("jail path {0:?} is not absolute and canonical")]
    NotCanonical(PathBuf),
    /// `/` in the writable set would make the whole filesystem writable.
    #[error("refusing to make the whole filesystem writable (`/` in the writable paths)")]
    WritableRoot,
}

/// Mach services that hand out keychain items, authorization or trust decisions.
pub const KEYCHAIN_SERVICES: &[&str] = &[
    "com.apple.SecurityServer",
    "com.apple.securityd",
    "com.apple.securityd.xpc",
    "com.apple.secd",
    "com.apple.security.agent",
    "com.apple.security.authhost",
    "com.apple.security.keychain-circle-notification",
    "com.apple.CoreAuthentication.daemon",
    "com.apple.ctkd.token-client",
    "com.apple.trustd",
    "com.apple.trustd.agent",
];

/// Layer 1: deny by default, then what ordinary command-line programs need.
const BASE: &str = r#"(version 1)
(deny default)

; Processes: run anything; see and signal only the jail's own processes.
(allow process-exec process-fork)
(allow process-info* (target same-sandbox))
(allow signal (target same-sandbox))
(allow mach-priv-task-port (target same-sandbox))

; System facts runtimes read at start-up. Not kern.procargs2: other processes'
; arguments and environments stay unreadable.
(allow mach-host*)
(allow sysctl-read
  (sysctl-name-prefix "hw.")
  (sysctl-name-prefix "machdep.cpu.")
  (sysctl-name-prefix "kern.proc.pid.")
  (sysctl-name-prefix "kern.proc.pgrp.")
  (sysctl-name-prefix "net.routetable.")
  (sysctl-name "kern.argmax") (sysctl-name "kern.boottime") (sysctl-name "kern.hostname")
  (sysctl-name "kern.maxfiles") (sysctl-name "kern.maxfilesperproc")
  (sysctl-name "kern.maxproc") (sysctl-name "kern.ngroups")
  (sysctl-name "kern.osproductversion") (sysctl-name "kern.osrelease")
  (sysctl-name "kern.ostype") (sysctl-name "kern.osvariant_status")
  (sysctl-name "kern.osversion") (sysctl-name "kern.secure_kernel")
  (sysctl-name "kern.usrstack64") (sysctl-name "kern.version")
  (sysctl-name "security.mac.lockdown_mode_state") (sysctl-name "sysctl.proc_cputype")
  (sysctl-name "sysctl.proc_translated") (sysctl-name "vm.loadavg")
  (sysctl-name "vm.pagesize"))
(allow sysctl-write (sysctl-name "kern.grade_cputype") (sysctl-name "kern.tcsm_enable"))
(allow user-preference-read)
(allow ipc-posix-sem ipc-posix-shm)
(allow iokit-open (iokit-registry-entry-class "RootDomainUserClient"))
(allow iokit-get-properties)

; Mach services: user lookup, temp dirs, logging, preferences. Nothing that opens
; URLs, resolves names, or reaches the network for the caller.
(allow mach-lookup
  (global-name "com.apple.system.opendirectoryd.libinfo")
  (global-name "com.apple.system.opendirectoryd.membership")
  (global-name "com.apple.system.DirectoryService.libinfo_v1")
  (global-name "com.apple.bsd.dirhelper")
  (global-name "com.apple.PowerManagement.control")
  (global-name "com.apple.system.logger")
  (global-name "com.apple.logd")
  (global-name "com.apple.system.notification_center")
  (global-name "com.apple.cfprefsd.agent")
  (global-name "com.apple.cfprefsd.daemon"))

; Terminals and the devices every program writes to.
(allow pseudo-tty)
(allow file-write-data file-ioctl
  (literal "/dev/null") (literal "/dev/zero") (literal "/dev/tty")
  (literal "/dev/dtracehelper") (literal "/dev/ptmx")
  (regex #"^/dev/ttys[0-9]+$")
  (subpath "/dev/fd"))

; Files: read anything not hidden below; write nothing not allowed below.
(allow file-read*)
"#;

/// Layer 4, first part: the keychain's files, and no second names for any file.
const FIXED_DENIES: &str = r#"(deny file-read* file-write*
  (subpath "/Library/Keychains")
  (regex #"^/Users/[^/]+/Library/Keychains(/|$)"))
(deny file-link file-clone)
"#;

/// Which list of the policy a path came from; the order breaks ties at equal depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Writable,
    Hidden,
    Readable,
}

/// One validated policy path; sorting by (depth, kind) makes deeper rules come later.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    depth: usize,
    kind: Kind,
    path: String,
}

/// The Seatbelt profile for one session.
pub fn profile(p: &SeatbeltPolicy) -> Result<String, SeatbeltError> {
    let entries = entries(p)?;
    let mut out = format!(
        "; keygate {}: Seatbelt profile generated for one session.\n\
         ; UNTESTED on a real Mac as of this version (unit-tested on Linux only).\n\
         ; The last matching rule wins; the fixed denies at the end stay last.\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(BASE);
    // Writing into a String cannot fail: the fmt::Results below are ignored.
    let _ = write!(
        out,
        "\n; Network: the only way out is keygate's session listener.\n\
         (deny network*)\n\
         (allow network-outbound (remote tcp \"localhost:{}\"))\n\
         (allow system-socket (socket-domain AF_UNIX))\n\
         (allow system-socket (require-all (socket-domain AF_SYSTEM) (socket-protocol 2)))\n\
         \n; Policy paths, shallowest first: the most specific path wins.\n",
        p.proxy_port
    );
    for e in &entries {
        path_rules(&mut out, e);
    }
    metadata_rules(&mut out, &entries);
    out.push_str("\n; Fixed denies: keychain, links, renaming a hidden path's parents.\n");
    out.push_str(FIXED_DENIES);
    let _ = writeln!(out, "(deny mach-lookup");
    for name in KEYCHAIN_SERVICES {
        let _ = writeln!(out, "  (global-name {})", quote(name));
    }
    out.push_str(")\n");
    let parents: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Hidden)
        .flat_map(|e| ancestors(&e.path))
        .collect();
    for a in parents {
        let _ = writeln!(out, "(deny file-write-unlink (literal {}))", quote(a));
    }
    Ok(out)
}

/// `sandbox-exec`'s arguments: `-p PROFILE -- CMD...` (the program is [`SANDBOX_EXEC`]).
pub fn sandbox_exec_args(profile: &str, command: &[OsString]) -> Vec<OsString> {
    let mut args = vec!["-p".into(), profile.into(), "--".into()];
    args.extend(command.iter().cloned());
    args
}

/// Validates every policy path and sorts them shallowest first (deterministic).
fn entries(p: &SeatbeltPolicy) -> Result<Vec<Entry>, SeatbeltError> {
    let lists = [
        (Kind::Writable, &p.writable),
        (Kind::Hidden, &p.hidden),
        (Kind::Readable, &p.readable),
    ];
    let mut out = Vec::new();
    for (kind, paths) in lists {
        for path in paths {
            let s = sbpl_path(path)?;
            if kind == Kind::Writable && s == "/" {
                return Err(SeatbeltError::WritableRoot);
            }
            let depth = s.split('/').filter(|c| !c.is_empty()).count();
            out.push(Entry {
                depth,
                kind,
                path: s,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The rules of one policy path.
fn path_rules(out: &mut String, e: &Entry) {
    let q = quote(&e.path);
    let _ = match e.kind {
        Kind::Writable => write!(
            out,
            "(allow file-read* file-write* (subpath {q}))\n\
             (allow network-bind (local unix-socket (subpath {q})))\n\
             (allow network-outbound (remote unix-socket (subpath {q})))\n"
        ),
        Kind::Hidden => write!(
            out,
            "(deny file-read* file-write* (subpath {q}))\n\
             (deny network-bind (local unix-socket (subpath {q})))\n\
             (deny network-outbound (remote unix-socket (subpath {q})))\n"
        ),
        Kind::Readable => writeln!(out, "(allow file-read* (subpath {q}))"),
    };
}

/// Lets `stat` (not listing or reading) reach the parents of a writable or readable
/// path that lie inside a hidden one, so that `realpath()` and `cd` get through.
fn metadata_rules(out: &mut String, entries: &[Entry]) {
    let hidden: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Hidden)
        .map(|e| e.path.as_str())
        .collect();
    let parents: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.kind != Kind::Hidden)
        .flat_map(|e| ancestors(&e.path))
        .filter(|a| hidden.iter().any(|h| within(a, h)))
        .collect();
    for a in parents {
        let _ = writeln!(out, "(allow file-read-metadata (literal {}))", quote(a));
    }
}

/// The path as profile text: UTF-8, no control characters, absolute and canonical
/// (a trailing `/` is dropped). Anything else could not be matched exactly.
fn sbpl_path(path: &Path) -> Result<String, SeatbeltError> {
    let s = path
        .to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| SeatbeltError::Unrepresentable(path.to_path_buf()))?;
    let s = s.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(s);
    let canonical = s == "/"
        || (s.starts_with('/') && s[1..].split('/').all(|c| !matches!(c, "" | "." | "..")));
    if !canonical {
        return Err(SeatbeltError::NotCanonical(path.to_path_buf()));
    }
    Ok(s.to_owned())
}

/// An SBPL string literal: `\` and `"` escaped, so a path cannot end the string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The proper ancestors of a canonical path, `/` excluded: `/a/b/c` → `/a`, `/a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .skip(1)
        .map(move |(i, _)| &path[..i])
}

/// Whether `path` is `dir` or lies below it.
fn within(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A top-level form of a profile: its text and its decoded string literals.
    type Form = (String, Vec<String>);

    /// Splits a profile into top-level forms, reading strings as SBPL does.
    fn forms(profile: &str) -> Vec<Form> {
        let (mut out, mut depth, mut cur, mut strs) = (vec![], 0i32, String::new(), vec![]);
        let mut chars = profile.chars();
        while let Some(c) = chars.next() {
            if depth == 0 && c == ';' {
                chars.by_ref().find(|&c| c == '\n');
                continue;
            }
            cur.push(c);
            if c == '"' {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    cur.push(c);
                    match c {
                        '"' => break,
                        '\\' => s.extend(chars.next().inspect(|&n| cur.push(n))),
                        _ => s.push(c),
                    }
                }
                strs.push(s);
            }
            depth += i32::from(c == '(') - i32::from(c == ')');
            assert!(depth >= 0, "unbalanced profile");
            if depth == 0 && c == ')' {
                out.push((cur.trim().to_owned(), std::mem::take(&mut strs)));
                cur.clear();
            }
        }
        assert_eq!(depth, 0, "unbalanced profile");
        out
    }

    fn policy() -> SeatbeltPolicy {
        let v = |s: &[&str]| s.iter().map(PathBuf::from).collect();
        SeatbeltPolicy {
            proxy_port: 8877,
            writable: v(&["/Users/u/proj", "/private/tmp/kg-1", "/Users/u/.claude"]),
            hidden: v(&["/Users/u/.keygate", "/Users/u/.ssh", "/Users/u/proj/.env"]),
            readable: v(&[
                "/Users/u/.keygate/s/ca.pem",
                "/Users/u/.keygate/s/bundle.pem",
            ]),
        }
    }

    fn edited(edit: impl FnOnce(&mut SeatbeltPolicy)) -> SeatbeltPolicy {
        let mut p = policy();
        edit(&mut p);
        p
    }

    /// Index of the first form that starts with `head` and names `path`.
    fn position(f: &[Form], head: &str, path: &str) -> usize {
        let hit = |(t, s): &Form| t.starts_with(head) && s.iter().any(|s| s == path);
        f.iter()
            .position(hit)
            .unwrap_or_else(|| panic!("no {head} {path}"))
    }

    fn all_writable(p: &SeatbeltPolicy, strings: &[String]) -> bool {
        strings
            .iter()
            .all(|s| p.writable.iter().any(|w| w.to_str() == Some(s)))
    }

    #[test]
    fn network_only_reaches_the_proxy_port() {
        let p = policy();
        let f = forms(&profile(&p).unwrap());
        let proxy = r#"(allow network-outbound (remote tcp "localhost:8877"))"#;
        let at = |text: &str| f.iter().position(|(t, _)| t == text);
        assert!(at("(deny network*)") < at(proxy) && at(proxy).is_some());
        for (t, s) in f.iter().filter(|(t, _)| t.starts_with("(allow network")) {
            let own_socket = t.contains("unix-socket (subpath") && all_writable(&p, s);
            assert!(t == proxy || own_socket, "unexpected network rule {t}");
        }
        assert!(
            !f.iter()
                .any(|(t, _)| t.starts_with("(allow") && t.contains("inbound"))
        );
    }

    #[test]
    fn hidden_paths_denied_and_exceptions_allowed_later() {
        let f = forms(&profile(&policy()).unwrap());
        let deny = "(deny file-read* file-write*";
        let keygate = position(&f, deny, "/Users/u/.keygate");
        position(&f, deny, "/Users/u/.ssh");
        for r in [
            "/Users/u/.keygate/s/ca.pem",
            "/Users/u/.keygate/s/bundle.pem",
        ] {
            assert!(position(&f, "(allow file-read* (subpath", r) > keygate);
        }
        // Hidden inside writable: the deny comes after the allow, so it wins.
        let proj = position(&f, "(allow file-read* file-write*", "/Users/u/proj");
        assert!(position(&f, deny, "/Users/u/proj/.env") > proj);
        // Parents of hidden paths cannot be renamed; parents of exceptions can be stat'ed.
        position(&f, "(deny file-write-unlink (literal", "/Users/u/proj");
        position(
            &f,
            "(allow file-read-metadata (literal",
            "/Users/u/.keygate/s",
        );
    }

    #[test]
    fn writes_only_to_writable_paths_and_devices() {
        let p = policy();
        let f = forms(&profile(&p).unwrap());
        for w in &p.writable {
            position(
                &f,
                "(allow file-read* file-write* (subpath",
                w.to_str().unwrap(),
            );
        }
        for (t, s) in f
            .iter()
            .filter(|(t, _)| t.starts_with("(allow") && t.contains("file-write"))
        {
            assert!(
                !s.is_empty() && !s.iter().any(|s| s == "/"),
                "broad write rule {t}"
            );
            let devices = s
                .iter()
                .all(|s| s.starts_with("/dev/") || s.starts_with("^/dev/"));
            assert!(
                all_writable(&p, s) || (devices && !t.contains("file-write*")),
                "{t}"
            );
        }
        let root = edited(|p| p.writable.push("/".into()));
        assert_eq!(profile(&root), Err(SeatbeltError::WritableRoot));
    }

    #[test]
    fn keychain_lookups_denied_after_every_allow() {
        let f = forms(&profile(&policy()).unwrap());
        let deny = f
            .iter()
            .position(|(t, _)| t.starts_with("(deny mach-lookup"))
            .unwrap();
        for name in KEYCHAIN_SERVICES {
            assert!(f[deny].1.iter().any(|s| s == name), "{name} not denied");
        }
        for (i, (_, s)) in f
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| t.contains("(allow mach"))
        {
            assert!(i < deny && !s.iter().any(|s| KEYCHAIN_SERVICES.contains(&s.as_str())));
        }
    }

    #[test]
    fn quotes_and_backslashes_stay_inside_the_string() {
        let evil = r#"/Users/u/a"b\c")) (allow file-write* (subpath "/x"#;
        let text = profile(&edited(|p| p.hidden = vec![evil.into()])).unwrap();
        let benign = profile(&edited(|p| p.hidden = vec!["/Users/u/abc/x".into()])).unwrap();
        assert_eq!(forms(&text).len(), forms(&benign).len());
        position(&forms(&text), "(deny file-read* file-write*", evil);
        assert!(text.contains(r#""/Users/u/a\"b\\c\")) (allow file-write* (subpath \"/x""#));
    }

    #[test]
    fn unnameable_paths_are_refused() {
        for bad in ["/a\nb", "/a\"\rb", "/a\u{7f}"] {
            let p = edited(|p| p.hidden.push(bad.into()));
            assert_eq!(profile(&p), Err(SeatbeltError::Unrepresentable(bad.into())));
        }
        for bad in ["rel/x", "/a/../b", "/a//b", "/a/./b", ""] {
            let p = edited(|p| p.readable.push(bad.into()));
            assert_eq!(profile(&p), Err(SeatbeltError::NotCanonical(bad.into())));
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = PathBuf::from(OsString::from_vec(b"/a/\xff".to_vec()));
            let p = edited(|p| p.hidden.push(bad.clone()));
            assert_eq!(profile(&p), Err(SeatbeltError::Unrepresentable(bad)));
        }
        let slash = edited(|p| p.hidden[1] = "/Users/u/.ssh/".into());
        assert_eq!(profile(&slash), profile(&policy()));
    }

    #[test]
    fn output_is_deterministic_and_marked_untested() {
        let text = profile(&policy()).unwrap();
        assert_eq!(text, profile(&policy()).unwrap());
        let reordered = edited(|p| {
            p.writable.reverse();
            p.hidden.reverse();
            p.readable.reverse();
        });
        assert_eq!(text, profile(&reordered).unwrap());
        assert!(text.starts_with("; keygate ") && text.contains("UNTESTED on a real Mac"));
    }

    #[test]
    fn sandbox_exec_args_pass_profile_then_command() {
        let args = sandbox_exec_args("(version 1)", &["claude".into(), "-p".into()]);
        assert_eq!(
            args,
            ["-p", "(version 1)", "--", "claude", "-p"].map(OsString::from)
        );
    }
}
