//! Cross-check with botocore (tests/fixtures/sigv4_botocore.json, made by
//! tests/support/sigv4_vectors.py): every request botocore signed with the phantom keys
//! verifies, and re-signing it with the real keys gives exactly the request botocore
//! signs with the real keys (every header, the whole request target).

use http::request::Parts;
use serde_json::Value;
use zeroize::Zeroizing;

use super::*;

const FIXTURE: &str = include_str!("../../../tests/fixtures/sigv4_botocore.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

fn keys(v: &Value, with_token: bool) -> AwsKeys {
    AwsKeys {
        access_key_id: v["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: Zeroizing::new(v["secret_access_key"].as_str().unwrap().to_owned()),
        session_token: with_token
            .then(|| Zeroizing::new(v["session_token"].as_str().unwrap().to_owned())),
    }
}

/// The request as hyper would hand it to keygate, and its body.
fn request(side: &Value) -> (Parts, Vec<u8>) {
    let mut builder = http::Request::builder()
        .method(side["method"].as_str().unwrap())
        .uri(side["target"].as_str().unwrap());
    for pair in side["headers"].as_array().unwrap() {
        builder = builder.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    let body = side["body"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| c as u8)
        .collect();
    (builder.body(()).unwrap().into_parts().0, body)
}

/// Headers as sorted (lower-case name, value) pairs: what must match, whatever the order.
fn header_set(parts: &Parts) -> Vec<(String, String)> {
    let mut set: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    set.sort();
    set
}

fn payload_hash(parts: &Parts, signed: &Signed, body: &[u8]) -> String {
    declared_payload_hash(parts, signed).unwrap_or_else(|| sha256_hex(body))
}

#[test]
fn botocore_phantom_signatures_verify_and_resign_to_botocore_real_ones() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "the fixture lost cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (phantom_side, real_side) = (&case["phantom"], &case["real"]);
        let phantom = keys(
            &fixture["phantom"],
            phantom_side["session_token"].as_bool().unwrap(),
        );
        let real = keys(
            &fixture["real"],
            real_side["session_token"].as_bool().unwrap(),
        );
        let authority = phantom_side["authority"].as_str().unwrap();

        let (mut parts, body) = request(phantom_side);
        let signed = parse(&parts)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: not SigV4"));
        assert_eq!(
            signed.presigned,
            case["presigned"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            signed.amz_date,
            fixture["amz_date"].as_str().unwrap(),
            "{name}"
        );
        let hash = payload_hash(&parts, &signed, &body);
        if declared_payload_hash(&parts, &signed).is_none() {
            assert_eq!(
                hash,
                phantom_side["body_sha256"].as_str().unwrap(),
                "{name}"
            );
        }
        verify(&parts, authority, &hash, &signed, &phantom)
            .unwrap_or_else(|e| panic!("{name}: botocore's phantom signature refused: {e}"));
        // The real keys do not verify the phantom's signature.
        assert!(
            verify(&parts, authority, &hash, &signed, &real).is_err(),
            "{name}"
        );

        resign(&mut parts, authority, &hash, &signed, &real).unwrap();
        let (expected, _) = request(real_side);
        assert_eq!(parts.method, expected.method, "{name}");
        assert_eq!(parts.uri, expected.uri, "{name}: request target");
        assert_eq!(header_set(&parts), header_set(&expected), "{name}: headers");

        // What leaves verifies with the real keys, and names no phantom.
        let again = parse(&parts).unwrap().unwrap();
        verify(&parts, authority, &hash, &again, &real).unwrap();
        super::refusal_tests::assert_no_phantom(&parts, &phantom, name);
    }
}

#[test]
fn botocore_cases_cover_what_they_claim() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    let find = |n: &str| cases.iter().find(|c| c["name"] == n).unwrap();
    let target = |n: &str| find(n)["phantom"]["target"].as_str().unwrap().to_owned();
    // A path botocore encoded (`:` and `/` of the model ARN), signed encoded twice.
    assert!(target("bedrock_invoke_profile_arn_tokens").contains("%3A0/invoke"));
    assert!(target("bedrock_invoke_profile_arn_tokens").contains("%2F"));
    // An S3 key with a space and a plus, signed as sent.
    assert!(target("s3_put_signed_payload_port").contains("a%20b%2Bc"));
    assert_eq!(
        find("s3_put_signed_payload_port")["phantom"]["authority"],
        "127.0.0.1:8443"
    );
    let header = |n: &str, h: &str| {
        find(n)["phantom"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(h))
            .map(|p| p[1].as_str().unwrap().to_owned())
    };
    let sha = header("s3_put_signed_payload_port", "x-amz-content-sha256").unwrap();
    assert_eq!(sha.len(), 64, "a whole-body hash, not a marker");
    let marker = header("s3_put_default", "x-amz-content-sha256").unwrap();
    assert_eq!(marker, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    assert!(target("s3_presigned_get_tokens").contains("X-Amz-Security-Token="));
    assert!(!target("s3_presigned_get_token_added").contains("X-Amz-Security-Token="));
    assert!(
        find("s3_presigned_get_token_added")["real"]["target"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Security-Token=")
    );
}
