//! The dashboard at the admin listener's `/`: one page and its script and style sheet,
//! embedded in the binary (no CDN, no build step). The page reads the same JSON API as
//! scripts do, so it can show nothing the API does not hold: no secret value.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::answer::{AdminBody, error};

const INDEX: &str = include_str!("dashboard/index.html");
const APP: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// The page's Content-Security-Policy.
// SECURITY: the page shows hosts, paths and client names an attacker chooses. It builds
// its DOM with textContent only; this policy is the second wall: no inline or foreign
// script, no request to another origin, and no framing (clickjacking of the Allow
// buttons).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// `/`: the page.
pub fn page() -> Response<AdminBody> {
    respond(INDEX, "text/html; charset=utf-8")
}

/// `/assets/NAME`: the script or the style sheet; any other name is not found.
pub fn asset(name: &str) -> Response<AdminBody> {
    match name {
        "app.js" => respond(APP, "text/javascript; charset=utf-8"),
        "style.css" => respond(STYLE, "text/css; charset=utf-8"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not-found",
            "the dashboard's assets are /assets/app.js and /assets/style.css".into(),
        ),
    }
}

fn respond(text: &'static str, kind: &'static str) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // SECURITY: a script or style sheet is only ever run as the type it is served as.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // SECURITY: the log-in URL carried the token; no link from the page may leak a URL.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_carry_the_strict_headers() {
        for response in [page(), asset("app.js"), asset("style.css")] {
            assert_eq!(response.status(), 200);
            let h = response.headers();
            assert_eq!(h["content-security-policy"], CSP);
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h["cache-control"], "no-store");
        }
        assert_eq!(asset("../mod.rs").status(), 404);
        assert_eq!(asset("").status(), 404);
    }

    #[test]
    fn the_page_loads_only_its_own_assets_and_the_script_never_uses_inner_html() {
        assert!(INDEX.contains(r#"src="/assets/app.js""#));
        assert!(INDEX.contains(r#"href="/assets/style.css""#));
        assert!(!INDEX.contains("<script>"), "no inline script (CSP)");
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        // SECURITY: flow fields are attacker-chosen; only textContent may show them.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn the_page_has_the_approvals_panel_and_the_script_answers_with_the_api_decisions() {
        assert!(INDEX.contains(r#"<section id="approvals">"#));
        assert!(INDEX.contains(r#"id="approval-list""#));
        assert!(APP.contains(r#"api("/api/approvals")"#));
        for (class, decision) in [
            ("approve-once", r#""once""#),
            ("approve-always", r#""always""#),
            ("approve-deny", r#""deny""#),
        ] {
            assert!(APP.contains(class), "app.js has no {class} button");
            assert!(APP.contains(decision), "app.js never sends {decision}");
        }
    }
}
