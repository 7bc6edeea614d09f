//! What every admin answer is built from: the body type, a JSON answer, an error
//! answer (`{"error": CODE, "reason": "…"}`), the content type and `no-store`. Shared by
//! the routes ([`super::api`]), the dashboard's assets and the token check.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// The body of every admin answer.
pub type AdminBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> AdminBody {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> AdminBody {
    full(Bytes::new())
}

/// `response` with its content type, never cached.
pub fn with_type(mut response: Response<AdminBody>, kind: &'static str) -> Response<AdminBody> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `value` as JSON with `status`.
pub fn json_status(status: StatusCode, value: &Value) -> Response<AdminBody> {
    let mut response = Response::new(full(format!("{value}\n")));
    *response.status_mut() = status;
    with_type(response, "application/json")
}

/// An error answer.
pub fn error(status: StatusCode, code: &str, reason: String) -> Response<AdminBody> {
    json_status(status, &json!({"error": code, "reason": reason}))
}
