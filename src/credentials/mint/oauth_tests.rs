use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;
use crate::credentials::mint::fake::{FakeClock, FakeTransport, at, token_json};
use crate::credentials::mint::response::DEFAULT_EXPIRES_IN;
use crate::credentials::mint::{Grant, MintError};

const ENDPOINT: &str = "https://login.example.com/oauth2/token";
const SECRET: &str = "cs-9f8e7d6c5b4a3210";
const REFRESH: &str = "rt-1-a1b2c3d4e5f6a7b8";

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.into()).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn client_credentials(auth: ClientAuth) -> ClientCredentials {
    let mut grant = ClientCredentials::new(
        ENDPOINT.parse().unwrap(),
        "keygate-client".into(),
        value(SECRET),
    );
    grant.scope = Some("read write".into());
    grant.auth = auth;
    grant
}

fn refresh(client_secret: Option<&str>) -> RefreshToken {
    RefreshToken::new(
        ENDPOINT.parse().unwrap(),
        "keygate-client".into(),
        client_secret.map(value),
        value(REFRESH),
    )
}

async fn mint(grant: impl Into<Grant>, transport: &FakeTransport) -> Result<Minted, MintError> {
    grant
        .into()
        .mint_with_clock(transport, &FakeClock::new())
        .await
}

#[tokio::test]
async fn client_credentials_with_basic_auth_sends_the_exact_request() {
    let transport = FakeTransport::replying(200, &token_json("at-1", 1800));
    let minted = mint(client_credentials(ClientAuth::Basic), &transport)
        .await
        .unwrap();

    let sent = transport.last();
    assert_eq!(sent.uri, ENDPOINT);
    assert_eq!(
        sent.form(),
        form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read write")
        ])
    );
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("keygate-client:{SECRET}"))
    );
    assert_eq!(sent.header("authorization"), Some(basic.as_str()));
    assert!(sent.headers["authorization"].is_sensitive());
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(sent.header("accept"), Some("application/json"));

    assert_eq!(minted.token.value.as_str(), "at-1");
    assert_eq!(minted.token.expires_at, at(1800));
    assert!(minted.rotated_refresh_token.is_none());
}

#[tokio::test]
async fn basic_auth_form_encodes_id_and_secret_first() {
    let transport = FakeTransport::replying(200, &token_json("at-1", 60));
    let mut grant = client_credentials(ClientAuth::Basic);
    grant.client_id = "my client".into();
    grant.client_secret = value("p@ss:w+rd");
    mint(grant, &transport).await.unwrap();
    let header = transport.last().header("authorization").unwrap().to_owned();
    let decoded = STANDARD
        .decode(header.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"my%20client:p%40ss%3Aw%2Brd");
}

#[tokio::test]
async fn client_credentials_in_the_body_with_extra_parameters() {
    let transport = FakeTransport::replying(200, &token_json("at-1", 60));
    let mut grant = client_credentials(ClientAuth::Post);
    grant.scope = None;
    grant.extra = vec![("audience".into(), "https://api.example.com/".into())];
    mint(grant, &transport).await.unwrap();
    let sent = transport.last();
    assert_eq!(
        sent.form(),
        form(&[
            ("grant_type", "client_credentials"),
            ("audience", "https://api.example.com/"),
            ("client_id", "keygate-client"),
            ("client_secret", SECRET),
        ])
    );
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn refresh_sends_the_refresh_token_and_surfaces_a_rotation() {
    let body = json!({"access_token": "at-2", "expires_in": 600, "refresh_token": "rt-2-new"});
    let transport = FakeTransport::replying(200, &body.to_string());
    let minted = mint(refresh(Some(SECRET)), &transport).await.unwrap();
    let sent = transport.last();
    assert_eq!(
        sent.form(),
        form(&[("grant_type", "refresh_token"), ("refresh_token", REFRESH)])
    );
    assert!(sent.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(minted.token.value.as_str(), "at-2");
    assert_eq!(minted.rotated_refresh_token.unwrap().expose(), "rt-2-new");
}

#[tokio::test]
async fn the_same_or_no_refresh_token_back_is_not_a_rotation() {
    for body in [
        json!({"access_token": "at-2", "refresh_token": REFRESH}),
        json!({"access_token": "at-2"}),
    ] {
        let transport = FakeTransport::replying(200, &body.to_string());
        let minted = mint(refresh(Some(SECRET)), &transport).await.unwrap();
        assert!(minted.rotated_refresh_token.is_none(), "{body}");
    }
}

#[tokio::test]
async fn a_public_client_sends_its_id_in_the_body() {
    let transport = FakeTransport::replying(200, &token_json("at-2", 60));
    let mut grant = refresh(None);
    grant.scope = Some("repo".into());
    mint(grant, &transport).await.unwrap();
    let sent = transport.last();
    assert_eq!(
        sent.form(),
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH),
            ("scope", "repo"),
            ("client_id", "keygate-client"),
        ])
    );
    assert_eq!(sent.header("authorization"), None);
}

/// Parses `body` (status 200 unless given) as the client credentials grant's answer.
fn parse(status: u16, body: &str) -> Result<Minted, MintError> {
    let grant = client_credentials(ClientAuth::Basic);
    let request = grant.request().unwrap();
    let status = http::StatusCode::from_u16(status).unwrap();
    grant.parse(&request, status, body.as_bytes(), at(0))
}

#[test]
fn token_responses_are_read_leniently_where_providers_differ() {
    let cases = [
        (json!({"access_token": "a"}), DEFAULT_EXPIRES_IN),
        (
            json!({"access_token": "a", "expires_in": "120"}),
            Duration::from_secs(120),
        ),
        (
            json!({"access_token": "a", "expires_in": 90.5, "token_type": "bearer"}),
            Duration::from_secs_f64(90.5),
        ),
        (
            json!({"access_token": "a", "expires_in": null, "token_type": "BEARER"}),
            DEFAULT_EXPIRES_IN,
        ),
    ];
    for (body, lifetime) in cases {
        let minted = parse(200, &body.to_string()).unwrap();
        assert_eq!(minted.token.expires_at, at(0) + lifetime, "{body}");
    }
    assert!(parse(201, &token_json("a", 5)).is_ok());
}

#[test]
fn unusable_token_responses_are_refused_without_quoting_them() {
    let cases = [
        json!({"access_token": "at-SECRET", "token_type": "mac"}).to_string(),
        json!({"access_token": "at-SECRET", "expires_in": "soon"}).to_string(),
        json!({"access_token": "at-SECRET", "expires_in": -5}).to_string(),
        json!({"access_token": "at SECRET"}).to_string(),
        json!({"access_token": ""}).to_string(),
        json!({"access_token": 12345}).to_string(),
        json!({"token": "at-SECRET"}).to_string(),
        "access_token=at-SECRET&token_type=bearer".to_owned(),
        format!(
            "{{\"access_token\": \"at-SECRET\", \"pad\": \"{}\"}}",
            "x".repeat(70_000)
        ),
    ];
    for body in cases {
        let error = parse(200, &body).unwrap_err();
        assert!(
            matches!(error, MintError::BadResponse { status: 200, .. }),
            "{error:?}"
        );
        let text = format!("{error} {error:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains(ENDPOINT), "{text}");
    }
}

#[test]
fn an_error_status_names_the_endpoint_and_the_oauth_error() {
    let body =
        json!({"error": "invalid_scope", "error_description": "Scope \"write\" is not allowed"});
    let error = parse(400, &body.to_string()).unwrap_err();
    assert_eq!(
        error,
        MintError::Refused {
            endpoint: ENDPOINT.into(),
            status: 400,
            error: Some("invalid_scope".into()),
            description: Some("Scope \"write\" is not allowed".into()),
            advice: "the scope is not allowed for this client: fix the scope in the credential's configuration",
        }
    );
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "{ENDPOINT} refused to issue a token (HTTP 400: invalid_scope: Scope"
        )),
        "{text}"
    );
    assert_eq!(error.status(), Some(400));

    // An error inside a 200 is still an error.
    let error = parse(200, r#"{"error": "invalid_client"}"#).unwrap_err();
    assert!(
        matches!(error, MintError::Refused { status: 200, .. }),
        "{error:?}"
    );

    // No JSON at all: the status and advice still say what happened.
    let error = parse(503, "<html>Service Unavailable</html>").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{ENDPOINT} refused to issue a token (HTTP 503); the provider failed; keygate tries again on the next request"
        )
    );
}

#[tokio::test]
async fn an_endpoint_echoing_the_secret_does_not_put_it_in_the_error() {
    // The fake endpoint quotes back whatever authenticated the client.
    let transport = FakeTransport::new(|sent, _| {
        let quoted = match sent.header("authorization") {
            Some(basic) => basic.to_owned(),
            None => sent.form()["client_secret"].clone(),
        };
        let body = json!({
            "error": "invalid_client",
            "error_description": format!("client authentication failed for {quoted}"),
        });
        Ok((http::StatusCode::UNAUTHORIZED, body.to_string().into()))
    });
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let error = mint(client_credentials(auth), &transport)
            .await
            .unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(&SECRET[..10]), "{text}");
        assert!(
            !text.contains(&STANDARD.encode(format!("keygate-client:{SECRET}"))[..12]),
            "{text}"
        );
        assert!(
            text.contains(ENDPOINT) && text.contains("401") && text.contains("invalid_client"),
            "{text}"
        );
        assert!(
            text.contains("check the client id and client secret"),
            "{text}"
        );
    }
    // A revoked refresh token echoed back is withheld too.
    let echo = FakeTransport::new(|sent, _| {
        let body = json!({"error": "invalid_grant", "error_description": format!("token {} revoked", sent.form()["refresh_token"])});
        Ok((http::StatusCode::BAD_REQUEST, body.to_string().into()))
    });
    let error = mint(refresh(None), &echo).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains(&REFRESH[..10]), "{text}");
    assert!(text.contains("authorize again"), "{text}");
}

#[tokio::test]
async fn a_transport_error_quoting_the_request_is_withheld() {
    let quoting = FakeTransport::new(|sent, _| {
        Err(format!(
            "connection reset while sending {}",
            std::str::from_utf8(&sent.body).unwrap()
        ))
    });
    let error = mint(client_credentials(ClientAuth::Post), &quoting)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        MintError::Transport {
            endpoint: ENDPOINT.into(),
            reason: "(reason withheld: it quoted a credential)".into(),
        }
    );
    let plain = FakeTransport::new(|_, _| Err("TLS handshake failed: unknown issuer".into()));
    let error = mint(client_credentials(ClientAuth::Basic), &plain)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("TLS handshake failed: unknown issuer"),
        "{error}"
    );
}

#[test]
fn debug_output_never_shows_credentials() {
    let grant = Grant::from(refresh(Some(SECRET)));
    let request = grant.request(at(0)).unwrap();
    let minted = parse(200, &token_json("at-SECRET-VALUE", 60)).unwrap();
    let shown = format!("{grant:?} {request:?} {minted:?}");
    for secret in [SECRET, REFRESH, "at-SECRET-VALUE"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("body_len"), "{shown}");
}
