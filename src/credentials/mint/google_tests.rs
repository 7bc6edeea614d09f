use std::time::Duration;

use serde_json::json;

use super::*;
use crate::credentials::jwt::{self, DEFAULT_LEEWAY};
use crate::credentials::key::SigningKey;
use crate::credentials::mint::fake::{FakeClock, FakeTransport, at, token_json};
use crate::credentials::mint::{Grant, MintError};
use crate::credentials::test_keys;

const EMAIL: &str = "deployer@project-1.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

fn key_file(private_key: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "project-1",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

fn account() -> GoogleServiceAccount {
    GoogleServiceAccount::from_json(&key_file(&test_keys::pkcs8_pem()), vec![SCOPE.into()]).unwrap()
}

#[test]
fn a_key_file_is_read() {
    let account = account();
    assert_eq!(account.client_email, EMAIL);
    assert_eq!(account.private_key_id.as_deref(), Some("0123456789abcdef"));
    assert_eq!(account.token_uri, GOOGLE_TOKEN_URI);
    assert_eq!(account.scopes, [SCOPE]);
    assert_eq!(account.subject, None);
}

#[tokio::test]
async fn the_request_carries_a_jwt_signed_with_the_account_key() {
    let transport = FakeTransport::replying(200, &token_json("ya29.token", 3599));
    let clock = FakeClock::new();
    let grant = Grant::from(account());
    let minted = grant.mint_with_clock(&transport, &clock).await.unwrap();

    let sent = transport.last();
    assert_eq!(sent.uri, GOOGLE_TOKEN_URI);
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(sent.header("authorization"), None);
    let form = sent.form();
    assert_eq!(form.len(), 2);
    assert_eq!(form["grant_type"], JWT_BEARER_GRANT);
    let assertion = &form["assertion"];
    let claims = jwt::verify(
        assertion,
        &test_keys::verifying_key(),
        at(0),
        DEFAULT_LEEWAY,
    )
    .unwrap();
    let iat = FakeClock::START;
    assert_eq!(
        claims,
        json!({"iss": EMAIL, "scope": SCOPE, "aud": GOOGLE_TOKEN_URI, "iat": iat, "exp": iat + 3600})
    );
    let header = assertion.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef"})
    );

    assert_eq!(minted.token.value.as_str(), "ya29.token");
    assert_eq!(minted.token.expires_at, at(3599));
}

#[test]
fn several_scopes_and_a_subject_go_in_the_claims() {
    let mut account = account();
    account
        .scopes
        .push("https://www.googleapis.com/auth/drive".into());
    account.subject = Some("admin@example.com".into());
    let claims = account.claims(at(10));
    assert_eq!(
        claims["scope"],
        format!("{SCOPE} https://www.googleapis.com/auth/drive")
    );
    assert_eq!(claims["sub"], "admin@example.com");
    assert_eq!(claims["iat"], FakeClock::START + 10);
}

#[tokio::test]
async fn an_echoed_assertion_stays_out_of_the_error() {
    let transport = FakeTransport::new(|sent, _| {
        let body = json!({
            "error": "invalid_grant",
            "error_description": format!("Invalid JWT Signature: {}", sent.form()["assertion"]),
        });
        Ok((http::StatusCode::BAD_REQUEST, body.to_string().into()))
    });
    let error = Grant::from(account())
        .mint_with_clock(&transport, &FakeClock::new())
        .await
        .unwrap_err();
    let assertion = transport.last().form()["assertion"].clone();
    let signature = assertion.rsplit('.').next().unwrap();
    let text = format!("{error} {error:?}");
    assert!(!text.contains(&signature[..12]), "{text}");
    assert!(!text.contains("eyJ"), "{text}");
    assert!(
        matches!(&error, MintError::Refused { status: 400, error: Some(e), description: None, .. } if e == "invalid_grant"),
        "{error:?}"
    );
    assert!(
        text.contains("https://oauth2.googleapis.com/token"),
        "{text}"
    );
    assert!(
        text.contains("service-account key may be deleted or disabled"),
        "{text}"
    );
}

#[test]
fn unusable_key_files_are_refused_without_quoting_them() {
    let pem = test_keys::pkcs8_pem();
    let mut truncated = key_file(&pem[..600]);
    let cases = [
        ("{not json".to_owned(), ServiceAccountError::NotJson),
        ("[1]".to_owned(), ServiceAccountError::NotJson),
        (
            json!({"type": "authorized_user", "refresh_token": "1//secret"}).to_string(),
            ServiceAccountError::NotServiceAccount,
        ),
        (
            json!({"client_email": EMAIL}).to_string(),
            ServiceAccountError::Missing("private_key"),
        ),
        (
            json!({"private_key": pem}).to_string(),
            ServiceAccountError::Missing("client_email"),
        ),
        (
            json!({"private_key": pem, "client_email": EMAIL, "token_uri": "not a url"})
                .to_string(),
            ServiceAccountError::TokenUri,
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(
            GoogleServiceAccount::from_json(&json, vec![]).unwrap_err(),
            expected,
            "{json}"
        );
    }
    truncated.push(' ');
    let error = GoogleServiceAccount::from_json(&truncated, vec![]).unwrap_err();
    assert!(matches!(error, ServiceAccountError::Key(_)), "{error:?}");
    let text = format!("{error} {error:?}");
    let body_line = pem.lines().nth(2).unwrap();
    assert!(!text.contains(&body_line[..16]), "{text}");
}

#[test]
fn a_phantom_key_file_keeps_the_account_but_not_the_key() {
    let real = key_file(&test_keys::pkcs8_pem());
    let phantom_key = SigningKey::generate_rsa2048().unwrap();
    let phantom = phantom_json(&real, &phantom_key, "phantom-key-1").unwrap();

    let file: serde_json::Value = serde_json::from_str(&phantom).unwrap();
    assert_eq!(file["client_email"], EMAIL);
    assert_eq!(file["project_id"], "project-1");
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["private_key_id"], "phantom-key-1");
    let real_body = test_keys::pkcs8_pem().lines().nth(3).unwrap().to_owned();
    assert!(
        !phantom.contains(&real_body),
        "the real key must not reach the agent"
    );

    // What a client library does with the phantom file: sign an assertion with it.
    let agent = GoogleServiceAccount::from_json(&phantom, vec![SCOPE.into()]).unwrap();
    let assertion = jwt::sign(
        &agent.key,
        agent.private_key_id.as_deref(),
        &agent.claims(at(0)),
    )
    .unwrap();
    let phantom_public = phantom_key.verifying_key().unwrap();
    let claims = jwt::verify(&assertion, &phantom_public, at(5), Duration::ZERO).unwrap();
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(
        jwt::verify(
            &assertion,
            &test_keys::verifying_key(),
            at(5),
            Duration::ZERO
        )
        .unwrap_err(),
        jwt::JwtError::BadSignature
    );
}
