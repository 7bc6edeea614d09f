//! What a client sends first through a CONNECT: its TLS ClientHello, read whole (and
//! kept, to be replayed upstream) and parsed by rustls, and the check of its SNI
//! against the CONNECT host (domain-fronting defence). Shared by [`super::tunnel`],
//! [`super::intercept`] and the [`super::refusal`] pages, so it lives below all three.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::policy::Host;

/// Largest ClientHello keygate reads before giving up (post-quantum key shares make
/// hellos of 2 KB common; 64 KiB is generous).
pub const MAX_HELLO_BYTES: usize = 64 * 1024;
/// TLS record content type of a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the client sent first.
#[derive(Debug)]
pub enum Hello {
    /// A complete TLS ClientHello; `sni` is its server_name, if any.
    Tls {
        /// The SNI host name as sent.
        sni: Option<String>,
    },
    /// Bytes that are not a TLS handshake.
    NotTls,
    /// A TLS record that is not a well-formed ClientHello, or too large.
    Malformed(String),
    /// The client closed before sending a complete hello.
    Closed,
    /// No complete hello within the time allowed (the text says which limit).
    TooSlow(String),
}

/// Reads until a complete ClientHello has arrived; returns it and every byte read (to be
/// replayed upstream). rustls parses the hello: no hand-written TLS parser.
pub async fn read_client_hello(
    io: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<(Hello, Vec<u8>)> {
    let mut seen = Vec::with_capacity(2048);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok((Hello::Closed, seen));
        }
        seen.extend_from_slice(&chunk[..n]);
        if seen[0] != TLS_HANDSHAKE {
            return Ok((Hello::NotTls, seen));
        }
        if seen.len() > MAX_HELLO_BYTES {
            return Ok((Hello::Malformed("ClientHello too large".into()), seen));
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            match acceptor.read_tls(&mut fresh) {
                Ok(0) => return Ok((Hello::Malformed("ClientHello too large".into()), seen)),
                Ok(_) => {}
                Err(e) => return Ok((Hello::Malformed(e.to_string()), seen)),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_string);
                return Ok((Hello::Tls { sni }, seen));
            }
            Ok(None) => continue,
            Err((e, _alert)) => return Ok((Hello::Malformed(e.to_string()), seen)),
        }
    }
}

/// Why a hello is not acceptable for a tunnel to `host`, or `None` when it is.
pub fn check_hello(hello: &Hello, host: &Host) -> Option<(&'static str, String)> {
    match hello {
        Hello::Tls { sni: None } => None,
        Hello::Tls { sni: Some(sni) } => match Host::parse(sni) {
            Ok(named) if &named == host => None,
            _ => Some((
                "sni-mismatch",
                format!("TLS SNI `{sni}` differs from the CONNECT host {host} (domain fronting?)"),
            )),
        },
        Hello::NotTls => Some((
            "not-tls",
            format!("the tunnel to {host} does not carry TLS; keygate tunnels only TLS"),
        )),
        Hello::Malformed(why) => Some(("bad-tls", format!("malformed TLS ClientHello: {why}"))),
        Hello::TooSlow(why) => Some(("bad-tls", why.clone())),
        Hello::Closed => Some((
            "client-closed",
            "the client closed before its TLS ClientHello".into(),
        )),
    }
}
