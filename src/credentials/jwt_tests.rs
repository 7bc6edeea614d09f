use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::credentials::test_keys::{self, A2_EXP};

const NOW: u64 = 1_780_000_000;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn part(token: &str, index: usize) -> Value {
    let text = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

fn claims() -> Value {
    json!({"iss": "agent@phantom.iam.gserviceaccount.com", "iat": NOW, "exp": NOW + 3600})
}

#[test]
fn sign_then_verify_round_trips_claims_and_header() {
    let key = test_keys::signing_key();
    let token = sign(&key, Some("key-id-1"), &claims()).unwrap();
    assert_eq!(
        part(&token, 0),
        json!({"alg": "RS256", "typ": "JWT", "kid": "key-id-1"})
    );
    let verified = verify(&token, &test_keys::verifying_key(), at(NOW), DEFAULT_LEEWAY).unwrap();
    assert_eq!(verified, claims());

    let no_kid = sign(&key, None, &claims()).unwrap();
    assert_eq!(part(&no_kid, 0), json!({"alg": "RS256", "typ": "JWT"}));
}

#[test]
fn the_rfc7515_a2_jwt_verifies_while_it_was_valid() {
    let key = test_keys::verifying_key();
    let claims = verify(&test_keys::a2_jwt(), &key, at(A2_EXP - 10), DEFAULT_LEEWAY).unwrap();
    assert_eq!(claims["iss"], "joe");
    assert_eq!(claims["http://example.com/is_root"], true);
    assert_eq!(
        verify(&test_keys::a2_jwt(), &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Expired(NOW - A2_EXP)
    );
}

#[test]
fn a_tampered_payload_or_signature_is_refused() {
    let key = test_keys::verifying_key();
    let token = sign(&test_keys::signing_key(), None, &claims()).unwrap();
    let pieces: Vec<&str> = token.split('.').collect();

    let mut widened = claims();
    widened["scope"] = json!("https://www.googleapis.com/auth/cloud-platform");
    let forged = format!("{}.{}.{}", pieces[0], b64(&widened), pieces[2]);
    assert_eq!(
        verify(&forged, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::BadSignature
    );

    let mut signature = URL_SAFE_NO_PAD.decode(pieces[2]).unwrap();
    signature[100] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        pieces[0],
        pieces[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(
        verify(&flipped, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn a_token_from_another_key_is_refused() {
    let other = SigningKey::generate_rsa2048().unwrap();
    let token = sign(&other, None, &claims()).unwrap();
    assert_eq!(
        verify(&token, &test_keys::verifying_key(), at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::BadSignature
    );
    // ...and accepted by its own.
    let own = other.verifying_key().unwrap();
    assert!(verify(&token, &own, at(NOW), DEFAULT_LEEWAY).is_ok());
}

#[test]
fn alg_none_and_hs256_with_the_public_key_as_secret_are_refused() {
    let key = test_keys::verifying_key();
    let payload = b64(&claims());
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})));
    assert_eq!(
        verify(&none, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Algorithm("none".into())
    );

    // The classic confusion: HMAC keyed with the verifier's public key PEM.
    let header = b64(&json!({"alg": "HS256", "typ": "JWT"}));
    let input = format!("{header}.{payload}");
    let secret = hmac::Key::new(hmac::HMAC_SHA256, key.to_pem().unwrap().as_bytes());
    let tag = hmac::sign(&secret, input.as_bytes());
    let hs256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(
        verify(&hs256, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Algorithm("HS256".into())
    );

    let no_alg = format!("{}.{payload}.", b64(&json!({"typ": "JWT"})));
    assert!(matches!(
        verify(&no_alg, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Malformed(_)
    ));
    let long = format!("{}.{payload}.", b64(&json!({"alg": "x\n".repeat(50)})));
    assert_eq!(
        verify(&long, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Algorithm("x?".repeat(8))
    );
}

#[test]
fn critical_extensions_are_refused() {
    let header = json!({"alg": "RS256", "crit": ["exp"], "exp": 1});
    let input = format!("{}.{}", b64(&header), b64(&claims()));
    let signature = test_keys::signing_key()
        .sign_rs256(input.as_bytes())
        .unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(
        verify(&token, &test_keys::verifying_key(), at(NOW), DEFAULT_LEEWAY).unwrap_err(),
        JwtError::Critical
    );
}

fn signed(claims: &Value) -> Zeroizing<String> {
    sign(&test_keys::signing_key(), None, claims).unwrap()
}

#[test]
fn exp_is_required_and_checked_with_the_leeway() {
    let key = test_keys::verifying_key();
    let leeway = Duration::from_secs(30);
    let token = signed(&json!({"exp": NOW}));
    assert!(verify(&token, &key, at(NOW + 30), leeway).is_ok());
    assert_eq!(
        verify(&token, &key, at(NOW + 31), leeway).unwrap_err(),
        JwtError::Expired(31)
    );
    assert_eq!(
        verify(&token, &key, at(NOW + 1), Duration::ZERO).unwrap_err(),
        JwtError::Expired(1)
    );
    for claims in [json!({"iat": NOW}), json!({"exp": "tomorrow"})] {
        assert_eq!(
            verify(&signed(&claims), &key, at(NOW), leeway).unwrap_err(),
            JwtError::MissingExp
        );
    }
    // A fractional NumericDate is allowed.
    let fractional = signed(&json!({"exp": NOW as f64 + 0.5}));
    assert!(verify(&fractional, &key, at(NOW), Duration::ZERO).is_ok());
}

#[test]
fn iat_and_nbf_in_the_future_are_refused_beyond_the_leeway() {
    let key = test_keys::verifying_key();
    let leeway = Duration::from_secs(60);
    let soon = signed(&json!({"iat": NOW + 60, "exp": NOW + 3600}));
    assert!(verify(&soon, &key, at(NOW), leeway).is_ok());
    let future = signed(&json!({"iat": NOW + 3600, "exp": NOW + 7200}));
    assert_eq!(
        verify(&future, &key, at(NOW), leeway).unwrap_err(),
        JwtError::IssuedInFuture(3600)
    );
    let not_yet = signed(&json!({"nbf": NOW + 600, "exp": NOW + 7200}));
    assert_eq!(
        verify(&not_yet, &key, at(NOW), leeway).unwrap_err(),
        JwtError::NotYetValid(600)
    );
}

#[test]
fn malformed_tokens_are_refused_without_quoting_them() {
    let key = test_keys::verifying_key();
    let token = signed(&claims());
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let header = b64(&json!({"alg": "RS256"}));
    let cases = [
        String::new(),
        "a.b".to_owned(),
        format!("{}.extra", &*token),
        format!("{}=", &*token),
        format!("!!.{}", &token[token.find('.').unwrap() + 1..]),
        format!("{}.{}.{signature}", b64(&json!([1])), b64(&claims())),
        format!("{header}.{}.{signature}", b64(&json!("text"))),
        format!("{header}.{}", "A".repeat(MAX_JWT_LEN)),
    ];
    for case in cases {
        let error = verify(&case, &key, at(NOW), DEFAULT_LEEWAY).unwrap_err();
        assert!(
            matches!(error, JwtError::Malformed(_) | JwtError::BadSignature),
            "{error:?}"
        );
        let text = format!("{error} {error:?}");
        assert!(!text.contains(&signature[..16]), "{text}");
        assert!(!text.contains("eyJ"), "{text}");
    }
}
