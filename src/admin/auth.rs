//! Who may use the admin API over TCP (`admin.listen`): a request with the bearer token
//! (generated into the keyring, `keygate admin token`), in `Authorization: Bearer` or in
//! the dashboard's cookie, and a `Host` naming the admin listener (a page on another
//! name that resolves to 127.0.0.1, DNS rebinding, is refused). The Unix socket needs no
//! token: only its owner can open it.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::answer::{AdminBody, error};
use crate::secrets::SecretValue;

/// The keyring account of the admin token. Secret names start with a letter or a
/// digit, so no secret can take it.
pub const ADMIN_TOKEN_ACCOUNT: &str = "_admin-token";
/// The dashboard's cookie.
pub const COOKIE: &str = "keygate_admin";

/// What to do with a TCP request.
#[derive(Debug)]
pub enum Access {
    /// Serve it.
    Granted,
    /// Answer this instead (a refusal, or the dashboard's log-in redirect).
    Answer(Response<AdminBody>),
}

fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The token the request carries: `Authorization: Bearer`, or the cookie.
fn presented<B>(req: &Request<B>) -> Option<Vec<u8>> {
    if let Some(bearer) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    {
        return Some(bearer.trim_ascii().to_vec());
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .find_map(|c| c.strip_prefix(COOKIE.as_bytes())?.strip_prefix(b"="))
        .map(<[u8]>::to_vec)
}

/// True when `Host` names the listener: its own address, or localhost, on its port.
fn host_ok<B>(req: &Request<B>, listen: std::net::SocketAddr) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let port = listen.port();
    let names = [
        listen.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    names.iter().any(|n| n.eq_ignore_ascii_case(host))
}

/// Decides a TCP request against `token`.
pub fn check<B>(req: &Request<B>, token: &SecretValue, listen: std::net::SocketAddr) -> Access {
    if !host_ok(req, listen) {
        return Access::Answer(error(
            StatusCode::FORBIDDEN,
            "bad-host",
            format!(
                "the admin API answers to Host {listen} or localhost:{} only",
                listen.port()
            ),
        ));
    }
    if presented(req).is_some_and(|t| same(&t, token.expose().as_bytes())) {
        return Access::Granted;
    }
    // The URL `keygate admin token` prints: the token in the query once, then a cookie.
    let query_token = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("token="));
    if req.method() == Method::GET
        && req.uri().path() == "/"
        && let Some(given) = query_token
        && same(given.as_bytes(), token.expose().as_bytes())
    {
        let mut answer = Response::new(super::answer::empty());
        *answer.status_mut() = StatusCode::SEE_OTHER;
        answer
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        let cookie = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            token.expose()
        );
        if let Ok(mut value) = HeaderValue::from_str(&cookie) {
            value.set_sensitive(true);
            answer.headers_mut().insert(header::SET_COOKIE, value);
        }
        return Access::Answer(answer);
    }
    Access::Answer(error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin API on TCP needs its token: `keygate admin token` prints a URL with it for the browser; scripts send `Authorization: Bearer TOKEN`".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, headers: &[(&str, &str)], uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_the_token_on_the_right_host_gets_in() {
        let token = SecretValue::new("t0ken-0123456789abcdef".into()).unwrap();
        let listen: std::net::SocketAddr = "127.0.0.1:8878".parse().unwrap();
        let granted = |r: &Request<()>| matches!(check(r, &token, listen), Access::Granted);
        let status = |r: &Request<()>| match check(r, &token, listen) {
            Access::Granted => 200,
            Access::Answer(a) => a.status().as_u16(),
        };
        assert!(granted(&req(
            "127.0.0.1:8878",
            &[("authorization", "Bearer t0ken-0123456789abcdef")],
            "/api/flows"
        )));
        assert!(granted(&req(
            "localhost:8878",
            &[("cookie", "a=b; keygate_admin=t0ken-0123456789abcdef")],
            "/"
        )));
        assert_eq!(
            status(&req(
                "127.0.0.1:8878",
                &[("authorization", "Bearer nope")],
                "/api/flows"
            )),
            401
        );
        assert_eq!(status(&req("127.0.0.1:8878", &[], "/metrics")), 401);
        assert_eq!(
            status(&req(
                "evil.example:8878",
                &[("authorization", "Bearer t0ken-0123456789abcdef")],
                "/"
            )),
            403
        );
        let login = match check(
            &req("127.0.0.1:8878", &[], "/?token=t0ken-0123456789abcdef"),
            &token,
            listen,
        ) {
            Access::Answer(a) => a,
            Access::Granted => panic!("a redirect"),
        };
        assert_eq!(login.status(), 303);
        let cookie = login.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert_eq!(status(&req("127.0.0.1:8878", &[], "/?token=wrong")), 401);
    }
}
