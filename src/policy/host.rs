//! Normalised upstream hosts and `host:port` authorities.
//!
//! Every host name that reaches policy goes through [`Host::parse`], so the
//! policy layer only ever compares one canonical spelling of a host:
//! lower-case, one trailing dot removed, internationalised names in punycode
//! (A-labels), IP literals as [`std::net::IpAddr`] (IPv4-mapped IPv6 folded to
//! IPv4). Names that resolvers would read as an IPv4 literal in a
//! non-canonical spelling (`2130706433`, `0x7f.1`, `127.1`) are rejected so
//! they cannot slip past name-based policy.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Longest host name accepted (RFC 1035 presentation form without the
/// trailing dot).
pub const MAX_NAME_LEN: usize = 253;

/// Longest single label accepted (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Inputs longer than this are refused before any IDNA processing.
const MAX_INPUT_LEN: usize = 1024;

/// Why a host, port or authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The host was empty (or only a single dot).
    #[error("empty host")]
    Empty,
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("invalid character {ch:?} in host name {host:?}")]
    InvalidChar {
        /// The host as given.
        host: String,
        /// The first offending character.
        ch: char,
    },
    /// IDNA (UTS #46) processing refused the name.
    #[error("invalid internationalised host name {host:?}")]
    Idna {
        /// The host as given.
        host: String,
    },
    /// Two consecutive dots, or a leading dot.
    #[error("empty label in host name {host:?}")]
    EmptyLabel {
        /// The host as given.
        host: String,
    },
    /// A label longer than 63 characters.
    #[error("label of {len} characters in host name {host:?} (at most 63 are allowed)")]
    LabelTooLong {
        /// The host as given.
        host: String,
        /// Length of the offending label after conversion.
        len: usize,
    },
    /// The whole name is longer than 253 characters.
    #[error("host name of {len} characters is too long (at most 253 are allowed)")]
    NameTooLong {
        /// Length of the name (after conversion when it could be converted).
        len: usize,
    },
    /// The last label is numeric or hexadecimal, so resolvers would treat the
    /// name as a (non-canonical) IPv4 literal.
    #[error(
        "host name {host:?} ends in a numeric label and would be read as an IPv4 address; \
         write IPv4 addresses as four decimal numbers, e.g. 127.0.0.1"
    )]
    NumericName {
        /// The host as given.
        host: String,
    },
    /// An IPv6 literal carried a zone id (`fe80::1%eth0`).
    #[error("IPv6 zone ids are not supported (in {host:?})")]
    ZoneId {
        /// The host as given.
        host: String,
    },
    /// Something that looked like an IPv6 literal did not parse.
    #[error("invalid IPv6 address {host:?}")]
    InvalidIpv6 {
        /// The host as given.
        host: String,
    },
    /// Brackets around something that is not an IPv6 address, or unbalanced brackets.
    #[error(
        "invalid brackets in {host:?}: only IPv6 addresses are written in brackets, as in [::1]"
    )]
    Brackets {
        /// The host as given.
        host: String,
    },
    /// A `host:port` was given where only a host is expected.
    #[error("unexpected port in host {host:?}: give the host alone")]
    PortNotAllowed {
        /// The host as given.
        host: String,
    },
    /// Port 0.
    #[error("port 0 is not a valid port")]
    PortZero,
    /// A numeric port above 65535.
    #[error("port {port} is out of range (1-65535)")]
    PortOutOfRange {
        /// The port as given.
        port: String,
    },
    /// A port containing something other than ASCII digits.
    #[error("port {port:?} is not a number (1-65535)")]
    PortNotNumeric {
        /// The port as given.
        port: String,
    },
    /// `host:` with nothing after the colon.
    #[error("empty port after ':' in {authority:?}")]
    EmptyPort {
        /// The authority as given.
        authority: String,
    },
    /// No port in the authority and no default port to fall back to.
    #[error("no port in {authority:?}")]
    MissingPort {
        /// The authority as given.
        authority: String,
    },
}

/// A normalised upstream host: lower-case, one trailing dot removed, IDNs in
/// punycode (A-labels).
///
/// Build it with [`Host::parse`] (or [`parse_authority`]); the variants are
/// public for matching, and constructing them by hand skips normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name in canonical ASCII form, e.g. `xn--bcher-kva.example`.
    Name(String),
    /// An IP literal; IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
}

impl Host {
    /// Parse a host as it appears in a CONNECT authority, URL or Host header,
    /// *without* a port.
    ///
    /// Accepts `[::1]` (brackets) and bare `::1`, canonical dotted-quad IPv4,
    /// and DNS names. Names are lower-cased, lose one trailing dot and are
    /// converted to punycode; labels must be 1 to 63 characters of
    /// `[a-z0-9-_]`, the whole name at most 253. Names whose last label is all
    /// digits or starts with `0x` are refused (non-canonical IPv4 spellings),
    /// as are IPv6 zone ids. IPv4-mapped IPv6 is folded to IPv4.
    pub fn parse(s: &str) -> Result<Host, HostError> {
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(HostError::NameTooLong { len: s.len() });
        }
        if s.starts_with('[') || s.ends_with(']') {
            return parse_bracketed(s);
        }
        if s.contains(':') {
            return parse_bare_ipv6(s);
        }
        parse_name_or_ipv4(s)
    }

    /// True for IP literals, false for DNS names.
    pub fn is_ip(&self) -> bool {
        matches!(self, Host::Ip(_))
    }

    /// The host as a plain string: the name, or the address with IPv6
    /// written without brackets (`::1`). See [`fmt::Display`] for the
    /// bracketed form.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            Host::Name(name) => Cow::Borrowed(name),
            Host::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// Shows the host as it goes into an authority: names and IPv4 as is, IPv6
/// in brackets (`[::1]`).
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Parses `host`, see [`Host::parse`].
impl std::str::FromStr for Host {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Host::parse(s)
    }
}

/// Split an authority `host:port`, `[v6]:port`, `host`, `[v6]` or bare `v6`
/// into a normalised host and a port.
///
/// When the authority has no port, `default_port` is used; without one that
/// is an error. A bare IPv6 address (two or more colons, no brackets) never
/// carries a port. Ports must be decimal digits only, 1 to 65535.
pub fn parse_authority(s: &str, default_port: Option<u16>) -> Result<(Host, u16), HostError> {
    let (host, port) = split_authority(s)?;
    let port = match port {
        Some("") => {
            return Err(HostError::EmptyPort {
                authority: s.to_string(),
            });
        }
        Some(p) => parse_port(p)?,
        None => default_port.ok_or_else(|| HostError::MissingPort {
            authority: s.to_string(),
        })?,
    };
    Ok((Host::parse(host)?, port))
}

/// Parse a decimal port number: ASCII digits only (no sign, no spaces),
/// value 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16, HostError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::PortNotNumeric {
            port: s.to_string(),
        });
    }
    let digits = s.trim_start_matches('0');
    if digits.is_empty() {
        return Err(HostError::PortZero);
    }
    match digits.parse::<u16>() {
        Ok(port) => Ok(port),
        Err(_) => Err(HostError::PortOutOfRange {
            port: s.to_string(),
        }),
    }
}

/// Split an authority into its host text and optional port text (which may
/// be empty when the authority ends in `:`).
fn split_authority(s: &str) -> Result<(&str, Option<&str>), HostError> {
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.starts_with('[') {
        let Some(close) = s.find(']') else {
            return Err(HostError::Brackets {
                host: s.to_string(),
            });
        };
        let (host, rest) = s.split_at(close + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(HostError::Brackets {
                host: s.to_string(),
            }),
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => match s.split_once(':') {
            Some(("", _)) => Err(HostError::Empty),
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((s, None)),
        },
        _ => Ok((s, None)),
    }
}

/// `[v6]`: brackets must enclose an IPv6 address and nothing else.
fn parse_bracketed(s: &str) -> Result<Host, HostError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|inner| !inner.contains(['[', ']']));
    match inner {
        Some("") => Err(HostError::Empty),
        Some(inner) if inner.contains(':') => parse_ipv6(inner, s),
        _ => Err(HostError::Brackets {
            host: s.to_string(),
        }),
    }
}

/// A host containing a colon without brackets: a bare IPv6 address, or a
/// mistaken `host:port`.
fn parse_bare_ipv6(s: &str) -> Result<Host, HostError> {
    if s.matches(':').count() == 1 {
        return Err(HostError::PortNotAllowed {
            host: s.to_string(),
        });
    }
    parse_ipv6(s, s)
}

/// Parse IPv6 text (no brackets); `original` is what the caller gave, for
/// error messages.
fn parse_ipv6(text: &str, original: &str) -> Result<Host, HostError> {
    if text.contains('%') {
        return Err(HostError::ZoneId {
            host: original.to_string(),
        });
    }
    text.parse::<Ipv6Addr>()
        .map(|ip| Host::Ip(IpAddr::V6(ip).to_canonical()))
        .map_err(|_| HostError::InvalidIpv6 {
            host: original.to_string(),
        })
}

/// A DNS name or a canonical dotted-quad IPv4 address.
fn parse_name_or_ipv4(s: &str) -> Result<Host, HostError> {
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    if trimmed.is_empty() {
        return Err(HostError::Empty);
    }
    if let Ok(ip) = trimmed.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    check_ascii_chars(trimmed, s)?;
    let ascii = to_ascii(trimmed, s)?;
    check_name(&ascii, s)?;
    Ok(Host::Name(ascii))
}

/// Is `b` allowed in a normalised host name?
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
}

/// Refuse ASCII characters that no host name may contain, before IDNA has a
/// chance to map or reject them less clearly.
fn check_ascii_chars(name: &str, original: &str) -> Result<(), HostError> {
    let bad = name
        .chars()
        .find(|c| c.is_ascii() && !is_name_byte(c.to_ascii_lowercase() as u8));
    match bad {
        Some(ch) => Err(HostError::InvalidChar {
            host: original.to_string(),
            ch,
        }),
        None => Ok(()),
    }
}

/// Lower-case and convert to punycode (UTS #46), validating any `xn--` labels.
fn to_ascii(name: &str, original: &str) -> Result<String, HostError> {
    idna::domain_to_ascii(name).map_err(|_| HostError::Idna {
        host: original.to_string(),
    })
}

/// Check the converted name: characters, label and name lengths, no empty
/// labels, and a last label that cannot be read as a number.
fn check_name(ascii: &str, original: &str) -> Result<(), HostError> {
    if let Some(ch) = ascii
        .chars()
        .find(|c| !c.is_ascii() || !is_name_byte(*c as u8))
    {
        return Err(HostError::InvalidChar {
            host: original.to_string(),
            ch,
        });
    }
    if ascii.is_empty() {
        return Err(HostError::Empty);
    }
    if ascii.len() > MAX_NAME_LEN {
        return Err(HostError::NameTooLong { len: ascii.len() });
    }
    for label in ascii.split('.') {
        check_label(label, original)?;
    }
    match ascii.rsplit('.').next() {
        Some(last) if looks_numeric(last) => Err(HostError::NumericName {
            host: original.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A label must be 1 to 63 characters.
fn check_label(label: &str, original: &str) -> Result<(), HostError> {
    if label.is_empty() {
        return Err(HostError::EmptyLabel {
            host: original.to_string(),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(HostError::LabelTooLong {
            host: original.to_string(),
            len: label.len(),
        });
    }
    Ok(())
}

/// Would an IPv4 parser (inet_aton, WHATWG URL) read this last label as a
/// number? All decimal digits, or a `0x` prefix.
fn looks_numeric(label: &str) -> bool {
    label.bytes().all(|b| b.is_ascii_digit()) || label.starts_with("0x")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn name(s: &str) -> Host {
        Host::Name(s.to_string())
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Host {
        Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(s: &str) -> Host {
        Host::Ip(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()))
    }

    #[test]
    fn normalises_names() {
        let cases = [
            ("example.com", "example.com"),
            ("EXAMPLE.Com", "example.com"),
            ("example.com.", "example.com"),
            ("Api.Example.COM.", "api.example.com"),
            ("localhost", "localhost"),
            ("_dmarc.example.com", "_dmarc.example.com"),
            ("my-host.example", "my-host.example"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
            ("1.2.3.example.com", "1.2.3.example.com"),
            ("0x7f.example", "0x7f.example"),
            ("123abc", "123abc"),
            ("a", "a"),
        ];
        for (input, want) in cases {
            assert_eq!(Host::parse(input), Ok(name(want)), "input {input:?}");
        }
    }

    #[test]
    fn parses_ip_literals() {
        assert_eq!(Host::parse("127.0.0.1"), Ok(v4(127, 0, 0, 1)));
        assert_eq!(Host::parse("127.0.0.1."), Ok(v4(127, 0, 0, 1)));
        assert_eq!(Host::parse("0.0.0.0"), Ok(v4(0, 0, 0, 0)));
        assert_eq!(Host::parse("[::1]"), Ok(v6("::1")));
        assert_eq!(Host::parse("::1"), Ok(v6("::1")));
        assert_eq!(Host::parse("[FD00::AB]"), Ok(v6("fd00::ab")));
        assert_eq!(Host::parse("::ffff:127.0.0.1"), Ok(v4(127, 0, 0, 1)));
        assert_eq!(Host::parse("[::ffff:10.1.2.3]"), Ok(v4(10, 1, 2, 3)));
    }

    #[test]
    fn rejects_numeric_names_that_resolvers_read_as_ipv4() {
        for input in [
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "0X7F000001",
            "127.1",
            "127.0.1",
            "1.2.3.04",
            "01.2.3.4",
            "127.0.0.1.1",
            "example.123",
            "example.0x1",
            "1.2.3.4..",
        ] {
            let err = Host::parse(input).unwrap_err();
            if input == "1.2.3.4.." {
                assert_eq!(err, HostError::EmptyLabel { host: input.into() });
            } else {
                assert_eq!(
                    err,
                    HostError::NumericName { host: input.into() },
                    "{input:?}"
                );
                assert!(err.to_string().contains("IPv4"), "{err}");
            }
        }
        // Full-width digits are mapped by IDNA before the check.
        assert!(matches!(
            Host::parse("１２７．１"),
            Err(HostError::NumericName { .. })
        ));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Host::parse(""), Err(HostError::Empty));
        assert_eq!(Host::parse("."), Err(HostError::Empty));
        assert_eq!(
            Host::parse("a..b"),
            Err(HostError::EmptyLabel {
                host: "a..b".into()
            })
        );
        assert_eq!(
            Host::parse(".example.com"),
            Err(HostError::EmptyLabel {
                host: ".example.com".into()
            })
        );
        assert_eq!(
            Host::parse("example.com.."),
            Err(HostError::EmptyLabel {
                host: "example.com..".into()
            })
        );
        for (input, ch) in [
            ("exa mple.com", ' '),
            ("a/b", '/'),
            ("user@example.com", '@'),
            ("*.example.com", '*'),
            ("exa%mple", '%'),
            ("a\nb", '\n'),
        ] {
            let err = Host::parse(input).unwrap_err();
            assert_eq!(
                err,
                HostError::InvalidChar {
                    host: input.into(),
                    ch
                }
            );
            assert!(err.to_string().contains("invalid character"), "{err}");
        }
        // IDNA maps full-width solidus to '/', which is still refused.
        assert!(matches!(
            Host::parse("a／b.example"),
            Err(HostError::InvalidChar { ch: '/', .. })
        ));
    }

    #[test]
    fn rejects_invalid_idn() {
        // Invalid punycode in an A-label.
        assert!(matches!(
            Host::parse("xn--a.example"),
            Err(HostError::Idna { .. })
        ));
        let err = Host::parse("xn--ls8h-.example").unwrap_err();
        assert!(err.to_string().contains("xn--ls8h-.example"), "{err}");
    }

    #[test]
    fn enforces_lengths() {
        let label63 = "a".repeat(63);
        assert_eq!(
            Host::parse(&format!("{label63}.com")),
            Ok(name(&format!("{label63}.com")))
        );
        let label64 = "a".repeat(64);
        assert!(matches!(
            Host::parse(&format!("{label64}.com")),
            Err(HostError::LabelTooLong { len: 64, .. })
        ));
        let ok = format!("{0}.{0}.{0}.{0}.a", "a".repeat(62));
        assert_eq!(ok.len(), 253);
        assert!(Host::parse(&ok).is_ok());
        let long = format!("{0}.{0}.{0}.{0}.abcd", "a".repeat(62));
        assert_eq!(long.len(), 256);
        assert_eq!(Host::parse(&long), Err(HostError::NameTooLong { len: 256 }));
        let huge = "a.".repeat(5000);
        assert!(matches!(
            Host::parse(&huge),
            Err(HostError::NameTooLong { .. })
        ));
    }

    #[test]
    fn rejects_bad_ipv6() {
        assert_eq!(
            Host::parse("fe80::1%eth0"),
            Err(HostError::ZoneId {
                host: "fe80::1%eth0".into()
            })
        );
        assert_eq!(
            Host::parse("[fe80::1%25eth0]"),
            Err(HostError::ZoneId {
                host: "[fe80::1%25eth0]".into()
            })
        );
        assert_eq!(
            Host::parse("1::2::3"),
            Err(HostError::InvalidIpv6 {
                host: "1::2::3".into()
            })
        );
        assert_eq!(Host::parse("[]"), Err(HostError::Empty));
        for input in ["[::1", "::1]", "[example.com]", "[127.0.0.1]", "[[::1]]"] {
            assert_eq!(
                Host::parse(input),
                Err(HostError::Brackets { host: input.into() }),
                "{input:?}"
            );
        }
        assert_eq!(
            Host::parse("example.com:443"),
            Err(HostError::PortNotAllowed {
                host: "example.com:443".into()
            })
        );
    }

    #[test]
    fn display_and_as_str() {
        let h = Host::parse("[::1]").unwrap();
        assert_eq!(h.to_string(), "[::1]");
        assert_eq!(h.as_str(), "::1");
        assert!(h.is_ip());
        let h = Host::parse("10.0.0.1").unwrap();
        assert_eq!(h.to_string(), "10.0.0.1");
        assert_eq!(h.as_str(), "10.0.0.1");
        assert!(h.is_ip());
        let h = Host::parse("Bücher.Example.").unwrap();
        assert_eq!(h.to_string(), "xn--bcher-kva.example");
        assert_eq!(h.as_str(), "xn--bcher-kva.example");
        assert!(!h.is_ip());
        assert_eq!("EXAMPLE.com".parse::<Host>(), Ok(name("example.com")));
    }

    #[test]
    fn display_round_trips_through_parse() {
        for input in ["example.com", "[::1]", "fd00::1", "10.1.2.3", "ÄÖ.example"] {
            let h = Host::parse(input).unwrap();
            assert_eq!(Host::parse(&h.to_string()), Ok(h.clone()), "{input:?}");
            assert_eq!(Host::parse(&h.as_str()), Ok(h), "{input:?}");
        }
    }

    #[test]
    fn parse_authority_accepts() {
        assert_eq!(
            parse_authority("Example.COM:8443", None),
            Ok((name("example.com"), 8443))
        );
        assert_eq!(
            parse_authority("example.com", Some(443)),
            Ok((name("example.com"), 443))
        );
        assert_eq!(
            parse_authority("example.com.:80", None),
            Ok((name("example.com"), 80))
        );
        assert_eq!(parse_authority("[::1]:443", None), Ok((v6("::1"), 443)));
        assert_eq!(parse_authority("[::1]", Some(443)), Ok((v6("::1"), 443)));
        assert_eq!(parse_authority("::1", Some(80)), Ok((v6("::1"), 80)));
        assert_eq!(
            parse_authority("fd00::1:443", Some(80)),
            Ok((v6("fd00::1:443"), 80))
        );
        assert_eq!(
            parse_authority("10.0.0.1:65535", None),
            Ok((v4(10, 0, 0, 1), 65535))
        );
        assert_eq!(parse_authority("host:1", None), Ok((name("host"), 1)));
        assert_eq!(parse_authority("host:0443", None), Ok((name("host"), 443)));
    }

    #[test]
    fn parse_authority_rejects() {
        let err = parse_authority("example.com:0", None).unwrap_err();
        assert_eq!(err, HostError::PortZero);
        assert_eq!(err.to_string(), "port 0 is not a valid port");
        assert_eq!(parse_authority("host:000", None), Err(HostError::PortZero));
        assert_eq!(parse_authority(":443", None), Err(HostError::Empty));
        assert_eq!(parse_authority("", Some(443)), Err(HostError::Empty));
        assert_eq!(parse_authority("[]:443", None), Err(HostError::Empty));
        let err = parse_authority("host:65536", None).unwrap_err();
        assert_eq!(
            err,
            HostError::PortOutOfRange {
                port: "65536".into()
            }
        );
        assert!(err.to_string().contains("65536"), "{err}");
        assert!(matches!(
            parse_authority("host:99999999999999999999999", None),
            Err(HostError::PortOutOfRange { .. })
        ));
        assert_eq!(
            parse_authority("host:", Some(443)),
            Err(HostError::EmptyPort {
                authority: "host:".into()
            })
        );
        for bad in ["+1", "-1", " 1", "1 ", "abc", "0x50", "44３"] {
            let err = parse_authority(&format!("host:{bad}"), None).unwrap_err();
            assert_eq!(
                err,
                HostError::PortNotNumeric { port: bad.into() },
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_authority("example.com", None),
            Err(HostError::MissingPort {
                authority: "example.com".into()
            })
        );
        assert_eq!(
            parse_authority("[::1]", None),
            Err(HostError::MissingPort {
                authority: "[::1]".into()
            })
        );
        for bad in ["[::1]443", "[::1", "[::1]:443]"] {
            assert!(parse_authority(bad, Some(1)).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_authority("127.1:80", None),
            Err(HostError::NumericName { .. })
        ));
        assert!(matches!(
            parse_authority("fe80::1%eth0", Some(80)),
            Err(HostError::ZoneId { .. })
        ));
    }

    #[test]
    fn parse_port_bounds() {
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(parse_port("0"), Err(HostError::PortZero));
        assert_eq!(
            parse_port("70000"),
            Err(HostError::PortOutOfRange {
                port: "70000".into()
            })
        );
        assert_eq!(
            parse_port(""),
            Err(HostError::PortNotNumeric { port: "".into() })
        );
    }
}
