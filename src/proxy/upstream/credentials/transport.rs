//! [`UpstreamTransport`]: the token caches' network, the verified upstream client.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;

use super::super::tls::TlsConnector;
use crate::credentials::mint::response::MAX_RESPONSE_BYTES;
use crate::credentials::mint::{PostFuture, Transport};

/// One HTTPS POST over the verified upstream client, for the token caches.
pub struct UpstreamTransport<B> {
    client: Client<TlsConnector, B>,
    timeout: Duration,
}

impl<B> UpstreamTransport<B> {
    /// Posts through `client`, each exchange bounded by `timeout`.
    pub fn new(client: Client<TlsConnector, B>, timeout: Duration) -> UpstreamTransport<B> {
        UpstreamTransport { client, timeout }
    }
}

impl Transport for UpstreamTransport<crate::proxy::Body> {
    fn post(&self, url: &Uri, headers: HeaderMap, body: Bytes) -> PostFuture<'_> {
        let url = url.clone();
        Box::pin(async move {
            let body = Full::new(body).map_err(|never| match never {}).boxed();
            let mut request = Request::post(url)
                .body(body)
                .map_err(|e| format!("cannot build the request: {e}"))?;
            *request.headers_mut() = headers;
            let exchange = async {
                let response = self
                    .client
                    .request(request)
                    .await
                    .map_err(|e| describe(&e))?;
                let status = response.status();
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES + 1)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, body))
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
        })
    }
}

/// A hyper client error with its causes (no request content: none is in them).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
