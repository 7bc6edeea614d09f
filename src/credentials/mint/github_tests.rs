use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::credentials::jwt;
use crate::credentials::mint::fake::{FakeClock, FakeTransport, at};
use crate::credentials::mint::{Grant, MintError};
use crate::credentials::test_keys;

const TOKEN_URI: &str = "https://api.github.com/app/installations/4242/access_tokens";

fn app(app_id: &str) -> GitHubApp {
    GitHubApp::new(
        GITHUB_API,
        app_id.into(),
        4242,
        Arc::new(test_keys::signing_key()),
    )
    .unwrap()
}

fn rfc3339(seconds_after_start: u64) -> String {
    let unix = (FakeClock::START + seconds_after_start) as i64;
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn answer(seconds_after_start: u64) -> String {
    json!({"token": "ghs_16C7e42F292c6912E7710c838347Ae178B4a", "expires_at": rfc3339(seconds_after_start)}).to_string()
}

#[tokio::test]
async fn the_request_carries_an_app_jwt_and_github_headers() {
    let transport = FakeTransport::replying(201, &answer(3600));
    let minted = Grant::from(app("12345"))
        .mint_with_clock(&transport, &FakeClock::new())
        .await
        .unwrap();
    let sent = transport.last();
    assert_eq!(sent.uri, TOKEN_URI);
    assert_eq!(sent.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(sent.header("user-agent"), Some("keygate"));
    assert_eq!(sent.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(sent.header("content-type"), None);
    assert!(sent.body.is_empty());
    assert!(sent.headers["authorization"].is_sensitive());
    let app_jwt = sent
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let claims = jwt::verify(app_jwt, &test_keys::verifying_key(), at(0), Duration::ZERO).unwrap();
    let now = FakeClock::START;
    assert_eq!(
        claims,
        json!({"iss": 12345, "iat": now - 60, "exp": now + 540})
    );

    assert_eq!(
        minted.token.value.as_str(),
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
    );
    assert_eq!(minted.token.expires_at, at(3600));
    assert!(minted.rotated_refresh_token.is_none());
}

#[test]
fn a_client_id_is_a_string_issuer() {
    let claims = app("Iv23liABCDEF").claims(at(0));
    assert_eq!(claims["iss"], "Iv23liABCDEF");
}

#[test]
fn github_enterprise_and_narrowed_tokens() {
    let mut app = GitHubApp::new(
        "https://ghe.example.com/api/v3/",
        "7".into(),
        99,
        Arc::new(test_keys::signing_key()),
    )
    .unwrap();
    assert_eq!(
        app.token_uri(),
        "https://ghe.example.com/api/v3/app/installations/99/access_tokens"
    );
    app.repositories = vec!["keygate".into()];
    app.permissions.insert("contents".into(), "read".into());
    let request = app.request(at(0)).unwrap();
    assert_eq!(request.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"repositories": ["keygate"], "permissions": {"contents": "read"}})
    );

    for bad in [
        "https://ghe.example.com/api/v3?x=1",
        "not a url at all",
        "/api/v3",
    ] {
        let error = GitHubApp::new(bad, "7".into(), 1, Arc::new(test_keys::signing_key()));
        assert!(matches!(error, Err(MintError::Request { .. })), "{bad}");
    }
}

fn parse(status: u16, body: &str) -> Result<Minted, MintError> {
    let app = app("12345");
    let request = app.request(at(0)).unwrap();
    app.parse(
        &request,
        http::StatusCode::from_u16(status).unwrap(),
        body.as_bytes(),
        at(0),
    )
}

#[test]
fn expires_at_is_capped_at_an_hour_and_must_be_ahead() {
    // GitHub's clock two hours ahead of ours: trust at most the documented hour.
    assert_eq!(
        parse(201, &answer(7200)).unwrap().token.expires_at,
        at(3600)
    );
    assert_eq!(
        parse(201, &answer(1800)).unwrap().token.expires_at,
        at(1800)
    );
    let error = parse(201, &answer(0)).unwrap_err();
    assert!(
        error.to_string().contains("check the system clock"),
        "{error}"
    );
    for body in [
        json!({"token": "ghs_x"}).to_string(),
        json!({"token": "ghs_x", "expires_at": "tomorrow"}).to_string(),
        json!({"expires_at": rfc3339(60)}).to_string(),
    ] {
        let error = parse(201, &body).unwrap_err();
        assert!(matches!(error, MintError::BadResponse { .. }), "{error:?}");
        assert!(!error.to_string().contains("ghs_x"), "{error}");
    }
}

#[tokio::test]
async fn a_refusal_keeps_githubs_message_but_never_the_app_jwt() {
    let transport = FakeTransport::new(|sent, call| {
        let jwt = sent.header("authorization").unwrap().to_owned();
        let message = if call == 0 {
            "Bad credentials".to_owned()
        } else {
            format!("'{jwt}' is not valid")
        };
        let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
        Ok((http::StatusCode::UNAUTHORIZED, body.to_string().into()))
    });
    let grant = Grant::from(app("12345"));
    let clock = FakeClock::new();
    let first = grant.mint_with_clock(&transport, &clock).await.unwrap_err();
    assert_eq!(
        first.to_string(),
        format!(
            "{TOKEN_URI} refused to issue a token (HTTP 401: Bad credentials); GitHub did not accept the App JWT: check the app id, the App's private key, and this machine's clock"
        )
    );
    let second = grant.mint_with_clock(&transport, &clock).await.unwrap_err();
    let text = format!("{second} {second:?}");
    assert!(!text.contains("eyJ"), "{text}");
    assert!(text.contains("HTTP 401)"), "{text}");

    let missing = parse(404, r#"{"message": "Not Found"}"#).unwrap_err();
    assert!(
        missing.to_string().contains("check the installation id"),
        "{missing}"
    );
}
