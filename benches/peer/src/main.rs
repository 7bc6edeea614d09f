//! hudsucker-swap: the "bare Rust MITM" peer of benches/e2e.sh. A hudsucker proxy that
//! intercepts every CONNECT with its own rcgen CA, verifies the upstream against one extra
//! root (and nothing else), and replaces a dummy API key with the real one in `x-api-key`
//! and `Authorization: Bearer`. No policy, no audit, no scrubbing.
//!
//!   hudsucker-swap --listen 127.0.0.1:PORT --ca-out FILE --upstream-ca FILE \
//!     --dummy D --real R [--resolve HOST:PORT=IP:PORT]...

use hudsucker::{
    certificate_authority::RcgenAuthority,
    hyper::{header::HeaderValue, Request},
    hyper_util::client::legacy::connect::{dns::Name, HttpConnector},
    rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose},
    rustls::{
        crypto::aws_lc_rs,
        pki_types::{pem::PemObject, CertificateDer},
        ClientConfig, RootCertStore,
    },
    Body, HttpContext, HttpHandler, Proxy, RequestOrResponse,
};
use std::{
    collections::HashMap,
    future::{ready, Ready},
    io,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The --resolve names: HOST to IP (the port is the request's, which --resolve must keep).
/// Other names are refused: no DNS. SNI and verification stay on HOST.
#[derive(Clone)]
struct Resolve(Arc<HashMap<String, SocketAddr>>);

impl tower_service::Service<Name> for Resolve {
    type Response = std::iter::Once<SocketAddr>;
    type Error = io::Error;
    type Future = Ready<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        ready(
            self.0
                .get(name.as_str())
                .map(|&addr| std::iter::once(addr))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{name} is not in --resolve"),
                    )
                }),
        )
    }
}

/// The (dummy, real) values of `x-api-key` and of `Authorization`.
#[derive(Clone)]
struct Swap([(&'static str, HeaderValue, HeaderValue); 2]);

impl HttpHandler for Swap {
    async fn handle_request(
        &mut self,
        _: &HttpContext,
        mut req: Request<Body>,
    ) -> RequestOrResponse {
        for (name, dummy, real) in &self.0 {
            if let Some(value) = req.headers_mut().get_mut(*name) {
                if value == dummy {
                    *value = real.clone();
                }
            }
        }
        req.into()
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args: HashMap<String, Vec<String>> = HashMap::new();
    let mut argv = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (argv.next(), argv.next()) {
        args.entry(flag).or_default().push(value);
    }
    let arg = |name: &str| -> Result<&str, Error> {
        match args.get(name).map(Vec::as_slice) {
            Some([value]) => Ok(value),
            _ => Err(format!("usage: exactly one {name} VALUE is required").into()),
        }
    };

    let mut names = HashMap::new();
    for entry in args.get("--resolve").into_iter().flatten() {
        let (from, to) = entry.split_once('=').ok_or("--resolve HOST:PORT=IP:PORT")?;
        let (host, port) = from.rsplit_once(':').ok_or("--resolve HOST:PORT=IP:PORT")?;
        let to: SocketAddr = to.parse()?;
        if port.parse::<u16>()? != to.port() {
            return Err("--resolve: the port must stay the same".into());
        }
        names.insert(host.to_owned(), to);
    }

    // Our own CA, made afresh at each start; the load generator trusts its certificate.
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "hudsucker-swap bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    std::fs::write(arg("--ca-out")?, params.self_signed(&key)?.pem())?;
    let ca = RcgenAuthority::new(
        Issuer::new(params, key),
        1_000,
        aws_lc_rs::default_provider(),
    );

    // Upstream: strict verification against the one extra root, HTTP/1.1 and h2, pooled.
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(arg("--upstream-ca")?)? {
        roots.add(cert?)?;
    }
    let tls = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(Resolve(Arc::new(names)));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

    let (dummy, real) = (arg("--dummy")?, arg("--real")?);
    let handler = Swap([
        ("x-api-key", dummy.parse()?, real.parse()?),
        (
            "authorization",
            format!("Bearer {dummy}").parse()?,
            format!("Bearer {real}").parse()?,
        ),
    ]);

    let listener = tokio::net::TcpListener::bind(arg("--listen")?).await?;
    println!("listening on {}", listener.local_addr()?);
    Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(https)
        .with_http_handler(handler)
        .build()?
        .start()
        .await?;
    Ok(())
}
