//! What is refused (wrong keys, tampering, malformed or unsupported signatures), what the
//! errors may say, and that no phantom byte survives a re-signing.

use http::request::Parts;
use http::{HeaderValue, StatusCode};
use zeroize::Zeroizing;

use super::tests::{VECTORS, Vector, real_keys, suite_keys};
use super::*;

const HOST: &str = "example.amazonaws.com";

fn vector(name: &str) -> &'static Vector {
    VECTORS.iter().find(|v| v.name == name).unwrap()
}

/// A suite request signed by the "phantom" (the suite's keys), its signature and hash.
fn phantom_signed(name: &str, presigned: bool) -> (Parts, Signed, String, AwsKeys) {
    let v = vector(name);
    let parts = match (presigned, v.query) {
        (true, Some(query)) => v.query_signed(query),
        _ => v.header_signed(),
    };
    let signed = parse(&parts).unwrap().unwrap();
    let hash = v.payload_hash(&parts, &signed);
    (parts, signed, hash, suite_keys(v.token))
}

/// Fails when any form of the phantom's access key id, secret or session token is left
/// in a header name or value, the path or the query.
pub(super) fn assert_no_phantom(parts: &Parts, phantom: &AwsKeys, case: &str) {
    let mut needles = vec![
        phantom.access_key_id.clone(),
        phantom.secret_access_key.to_string(),
        encoded(&phantom.secret_access_key),
    ];
    if let Some(token) = &phantom.session_token {
        needles.push(token.to_string());
        needles.push(encoded(token));
    }
    let mut places: Vec<String> = vec![parts.uri.to_string()];
    for (name, value) in &parts.headers {
        places.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    for place in &places {
        for needle in &needles {
            assert!(
                !place.contains(needle.as_str()),
                "{case}: a phantom value in `{place}`"
            );
        }
    }
}

#[test]
fn a_wrong_secret_is_refused_and_the_error_tells_nothing_secret() {
    let (parts, signed, hash, phantom) = phantom_signed("get-vanilla-with-session-token", false);
    let other = AwsKeys {
        secret_access_key: Zeroizing::new("another/secret+key".into()),
        ..phantom.clone()
    };
    let err = verify(&parts, HOST, &hash, &signed, &other).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureMismatch { .. }), "{err}");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    // What the other secret would have signed: not in the message, nor any key material.
    let mut resigned = parts.clone();
    resign(&mut resigned, HOST, &hash, &signed, &other).unwrap();
    let expected = parse(&resigned).unwrap().unwrap().signature;
    let message = format!("{err} {err:?}");
    for secret in [
        expected.as_str(),
        "another/secret+key",
        "6e86291e8372ff2a2260956d",
    ] {
        assert!(!message.contains(secret), "{message}");
    }
    assert!(
        message.contains("AWS_SECRET_ACCESS_KEY"),
        "says how to fix it: {message}"
    );
}

#[test]
fn another_access_key_id_or_token_is_refused() {
    let (parts, signed, hash, phantom) = phantom_signed("get-vanilla-with-session-token", false);
    let other_id = AwsKeys {
        access_key_id: "AKIDEXAMPLF".into(),
        ..phantom.clone()
    };
    let err = verify(&parts, HOST, &hash, &signed, &other_id).unwrap_err();
    assert_eq!(err, SigV4Error::NotThePhantom);
    let other_token = AwsKeys {
        session_token: Some(Zeroizing::new("other".into())),
        ..phantom.clone()
    };
    let err = verify(&parts, HOST, &hash, &signed, &other_token).unwrap_err();
    assert_eq!(err, SigV4Error::WrongSessionToken);
    // A token the phantom does not have, even one left out of the signature.
    let (parts, signed, hash, _) = phantom_signed("post-sts-header-after", false);
    let tokenless = suite_keys(None);
    let err = verify(&parts, HOST, &hash, &signed, &tokenless).unwrap_err();
    assert_eq!(err, SigV4Error::WrongSessionToken);
    assert!(!err.to_string().contains("AQoDYXdz"));
}

#[test]
fn tampering_with_a_signed_part_is_refused() {
    let (parts, signed, hash, phantom) = phantom_signed("get-header-value-trim", false);
    verify(&parts, HOST, &hash, &signed, &phantom).unwrap();
    let refused = |parts: &Parts, host: &str, hash: &str| {
        let err = verify(parts, host, hash, &signed, &phantom).unwrap_err();
        assert!(matches!(err, SigV4Error::SignatureMismatch { .. }), "{err}");
    };
    let mut header = parts.clone();
    header
        .headers
        .insert("my-header1", HeaderValue::from_static("value2"));
    refused(&header, HOST, &hash);
    let mut path = parts.clone();
    path.uri = "/other".parse().unwrap();
    refused(&path, HOST, &hash);
    let mut query = parts.clone();
    query.uri = "/?a=1".parse().unwrap();
    refused(&query, HOST, &hash);
    let mut method = parts.clone();
    method.method = http::Method::POST;
    refused(&method, HOST, &hash);
    refused(&parts, "example.amazonaws.com:8443", &hash);
    refused(&parts, HOST, &sha256_hex(b"another body"));
    // The default port is not part of what is signed.
    verify(
        &parts,
        "example.amazonaws.com:443",
        &hash,
        &signed,
        &phantom,
    )
    .unwrap();
    // A header outside SignedHeaders is not covered (AWS does not check it either).
    let mut unsigned = parts.clone();
    unsigned
        .headers
        .insert("user-agent", HeaderValue::from_static("changed"));
    verify(&unsigned, HOST, &hash, &signed, &phantom).unwrap();
    // A signed header that went missing is named.
    let mut missing = parts.clone();
    missing.headers.remove("my-header2");
    let err = verify(&missing, HOST, &hash, &signed, &phantom).unwrap_err();
    assert_eq!(err, SigV4Error::MissingSignedHeader("my-header2".into()));
}

#[test]
fn tampering_with_a_presigned_query_is_refused() {
    let (parts, signed, hash, phantom) = phantom_signed("get-vanilla-query-order-key-case", true);
    verify(&parts, HOST, &hash, &signed, &phantom).unwrap();
    let mut changed = parts.clone();
    let target = parts.uri.to_string().replace("value2", "value3");
    changed.uri = target.parse().unwrap();
    let err = verify(&changed, HOST, &hash, &signed, &phantom).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureMismatch { .. }), "{err}");
}

#[test]
fn resign_leaves_no_phantom_byte_and_verifies_with_the_real_keys() {
    let cases = [
        ("get-vanilla-with-session-token", false, true),
        ("get-vanilla-with-session-token", false, false),
        ("get-vanilla-with-session-token", true, true),
        ("get-vanilla-with-session-token", true, false),
        ("post-sts-header-after", false, true),
        ("post-x-www-form-urlencoded", false, true),
        ("post-x-www-form-urlencoded", true, true),
    ];
    for (name, presigned, real_token) in cases {
        let (mut parts, signed, hash, phantom) = phantom_signed(name, presigned);
        let real = real_keys(real_token);
        resign(&mut parts, HOST, &hash, &signed, &real).unwrap();
        let case = format!("{name} presigned={presigned} real_token={real_token}");
        assert_no_phantom(&parts, &phantom, &case);
        let again = parse(&parts).unwrap().unwrap();
        assert_eq!(again.access_key_id, real.access_key_id);
        assert_eq!(
            (again.amz_date.as_str(), again.presigned),
            (signed.amz_date.as_str(), presigned)
        );
        verify(&parts, HOST, &hash, &again, &real).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            verify(&parts, HOST, &hash, &again, &phantom).is_err(),
            "{case}"
        );
        let token = match presigned {
            true => query_param(parts.uri.query().unwrap(), "X-Amz-Security-Token").unwrap(),
            false => parts
                .headers
                .get("x-amz-security-token")
                .map(|v| v.to_str().unwrap().into()),
        };
        assert_eq!(
            token.as_deref(),
            real.session_token.as_deref().map(String::as_str),
            "{case}"
        );
    }
}

#[test]
fn resign_adds_or_drops_the_signed_token() {
    let (mut parts, signed, hash, _) = phantom_signed("get-vanilla", false);
    resign(&mut parts, HOST, &hash, &signed, &real_keys(true)).unwrap();
    let added = parse(&parts).unwrap().unwrap();
    assert_eq!(
        added.signed_headers,
        ["host", "x-amz-date", "x-amz-security-token"]
    );
    let (mut parts, signed, hash, _) = phantom_signed("get-vanilla-with-session-token", false);
    resign(&mut parts, HOST, &hash, &signed, &real_keys(false)).unwrap();
    let dropped = parse(&parts).unwrap().unwrap();
    assert_eq!(dropped.signed_headers, ["host", "x-amz-date"]);
    assert!(!parts.headers.contains_key("x-amz-security-token"));
    // Left out of the signature before, left out after.
    let (mut parts, signed, hash, _) = phantom_signed("post-sts-header-after", false);
    resign(&mut parts, HOST, &hash, &signed, &real_keys(true)).unwrap();
    assert_eq!(
        parse(&parts).unwrap().unwrap().signed_headers,
        ["host", "x-amz-date"]
    );
}

#[test]
fn unusable_real_keys_are_keygates_fault() {
    let (parts, signed, hash, _) = phantom_signed("get-vanilla", false);
    let bad_id = AwsKeys {
        access_key_id: "AKIA/1".into(),
        ..real_keys(false)
    };
    let err = resign(&mut parts.clone(), HOST, &hash, &signed, &bad_id).unwrap_err();
    assert_eq!(
        (err.status(), err.clone()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            SigV4Error::BadRealKeys("access key id")
        )
    );
    let bad_token = AwsKeys {
        session_token: Some(Zeroizing::new("line\nbreak".into())),
        ..real_keys(false)
    };
    let err = resign(&mut parts.clone(), HOST, &hash, &signed, &bad_token).unwrap_err();
    assert_eq!(err, SigV4Error::BadRealKeys("session token"));
    assert!(!format!("{err} {err:?}").contains("line"));
}

#[test]
fn signed_chunks_are_refused_unsigned_ones_pass() {
    let (mut parts, signed, _, phantom) = phantom_signed("get-vanilla", false);
    for marker in [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ] {
        assert_eq!(
            verify(&parts, HOST, marker, &signed, &phantom),
            Err(SigV4Error::SignedChunks)
        );
        let err = resign(&mut parts, HOST, marker, &signed, &phantom).unwrap_err();
        assert_eq!(err, SigV4Error::SignedChunks);
        assert!(err.to_string().contains("UNSIGNED-PAYLOAD"));
    }
    // An unsigned marker is just the payload hash: a mismatch here, not a refusal.
    let err = verify(&parts, HOST, UNSIGNED_PAYLOAD, &signed, &phantom).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureMismatch { .. }));
}

fn parsed(target: &str, headers: &[(&str, &str)]) -> Result<Option<Signed>, SigV4Error> {
    parse(&super::tests::parts("GET", target, headers))
}

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
const DATED: (&str, &str) = ("x-amz-date", "20150830T123600Z");

#[test]
fn parse_reads_what_is_signed_and_ignores_what_is_not() {
    assert_eq!(parsed("/", &[]), Ok(None));
    assert_eq!(
        parsed("/?a=1", &[("authorization", "Bearer sk-x")]),
        Ok(None)
    );
    let signed = parsed("/", &[DATED, ("authorization", AUTH)])
        .unwrap()
        .unwrap();
    assert_eq!(signed.access_key_id, "AKIDEXAMPLE");
    assert_eq!(
        (signed.date.as_str(), signed.region.as_str()),
        ("20150830", "us-east-1")
    );
    assert_eq!(
        (signed.service.as_str(), signed.presigned),
        ("service", false)
    );
    assert_eq!(signed.signed_headers, ["host", "x-amz-date"]);
    // Fields separated by `,` alone, as some SDKs write them.
    let tight = AUTH.replace(", ", ",");
    assert_eq!(
        parsed("/", &[DATED, ("authorization", &tight)])
            .unwrap()
            .unwrap(),
        signed
    );
}

#[test]
fn parse_refuses_what_it_cannot_verify_with_a_reason() {
    let header = |auth: &str| parsed("/", &[DATED, ("authorization", auth)]).unwrap_err();
    let unsupported = |e: SigV4Error| assert!(matches!(e, SigV4Error::Unsupported(_)), "{e}");
    unsupported(header("AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="));
    unsupported(header(
        "AWS4-ECDSA-P256-SHA256 Credential=AKID/20150830/service/aws4_request, SignedHeaders=host, Signature=00",
    ));
    unsupported(parsed("/?AWSAccessKeyId=AKID&Signature=abc%3D&Expires=1", &[]).unwrap_err());
    unsupported(
        parsed(
            "/?X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Signature=00",
            &[],
        )
        .unwrap_err(),
    );
    let malformed = [
        AUTH.replace(", Signature=", ", Sig="),
        AUTH.replace("/aws4_request", "/aws5_request"),
        AUTH.replace("Credential=AKIDEXAMPLE/", "Credential="),
        AUTH.replace("20150830/", "20150831/"),
        AUTH.replace("host;x-amz-date", "Host;X-Amz-Date"),
        AUTH.replace("5fa00fa3", "5FA00FA3"),
        AUTH.replace("us-east-1", "us east\t1"),
        format!("{AUTH}, Signature=00"),
    ];
    for auth in &malformed {
        let err = header(auth);
        assert!(
            matches!(err, SigV4Error::MalformedHeader(_)),
            "{auth}: {err}"
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        parsed("/", &[("authorization", AUTH)]),
        Err(SigV4Error::NoDate)
    );
    let twice = parsed(
        "/",
        &[DATED, ("authorization", AUTH), ("authorization", AUTH)],
    );
    assert!(matches!(twice, Err(SigV4Error::MalformedHeader(_))));
    let both = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00";
    assert_eq!(
        parsed(both, &[DATED, ("authorization", AUTH)]),
        Err(SigV4Error::SignedTwice)
    );
    let (presigned, ..) = phantom_signed("get-vanilla", true);
    let query = presigned.uri.query().unwrap();
    for broken in [
        query.replace("&X-Amz-Signature=", "&X-Amz-Sig="),
        query.replace("X-Amz-Date=20150830T123600Z", "X-Amz-Date=2015-08-30"),
        format!("{query}&X-Amz-Credential=x"),
    ] {
        let err = parsed(&format!("/?{broken}"), &[]).unwrap_err();
        assert!(
            matches!(err, SigV4Error::MalformedQuery(_)),
            "{broken}: {err}"
        );
    }
}

#[test]
fn declared_payload_hash_is_the_header_or_unsigned_for_presigned_s3() {
    let (parts, signed, _, _) = phantom_signed("post-x-www-form-urlencoded", false);
    let declared = declared_payload_hash(&parts, &signed).unwrap();
    assert_eq!(declared, sha256_hex(b"Param1=value1"));
    let (parts, mut signed, _, _) = phantom_signed("get-vanilla", true);
    assert_eq!(
        declared_payload_hash(&parts, &signed),
        None,
        "non-S3: hash the body"
    );
    signed.service = "s3".into();
    assert_eq!(
        declared_payload_hash(&parts, &signed).as_deref(),
        Some(UNSIGNED_PAYLOAD)
    );
}

#[test]
fn keys_debug_is_redacted() {
    let keys = suite_keys(Some("token-value-123"));
    let shown = format!("{keys:?}");
    assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
    assert!(
        !shown.contains("wJalr") && !shown.contains("token-value"),
        "{shown}"
    );
}
