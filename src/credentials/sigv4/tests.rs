//! AWS's published SigV4 suite (the aws-c-auth / smithy-rs `v4` cases, credentials
//! AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service `service`) in both forms, and
//! the refusals: wrong keys, tampering, malformed and unsupported authorizations.

use http::request::Parts;
use zeroize::Zeroizing;

use super::canonical::{self, PathMode};
use super::*;

const HOST: &str = "example.amazonaws.com";
const DATE: &str = "20150830T123600Z";
const SCOPE: &str = "20150830/us-east-1/service/aws4_request";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The session token of `get-vanilla-with-session-token`.
const SUITE_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";

pub(super) fn suite_keys(token: Option<&str>) -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        session_token: token.map(|t| Zeroizing::new(t.to_owned())),
    }
}

pub(super) fn real_keys(token: bool) -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIAREALREALREAL0001".into(),
        secret_access_key: Zeroizing::new("real/Secret+Key0000000000000000000000000".into()),
        session_token: token.then(|| Zeroizing::new("real//token+x=".into())),
    }
}

pub(super) fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// One case of the suite: the unsigned request and its two published signatures.
pub(super) struct Vector {
    pub(super) name: &'static str,
    pub(super) method: &'static str,
    pub(super) target: &'static str,
    pub(super) headers: &'static [(&'static str, &'static str)],
    pub(super) body: &'static [u8],
    pub(super) token: Option<&'static str>,
    /// SignedHeaders and Signature of `header-signed-request.txt`.
    pub(super) header: (&'static str, &'static str),
    /// X-Amz-SignedHeaders and X-Amz-Signature of `query-signed-request.txt`.
    pub(super) query: Option<(&'static str, &'static str)>,
}

const TRIM: &[(&str, &str)] = &[("my-header1", " value1"), ("my-header2", "\"a   b   c\"")];
const DUPLICATE: &[(&str, &str)] = &[
    ("my-header1", "value2"),
    ("my-header1", "value2"),
    ("my-header1", "value1"),
];
const FORM: &[(&str, &str)] = &[
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-length", "13"),
];

pub(super) const VECTORS: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        target: "/",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        query: Some((
            "host",
            "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
        )),
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        target: "/?Param2=value2&Param1=value1",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        query: Some((
            "host",
            "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
        )),
    },
    Vector {
        name: "get-vanilla-query-order-encoded",
        method: "GET",
        target: "/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
        ),
        query: Some((
            "host",
            "c5f1848ceec943ac2ca68ee720460c23aaae30a2300586597ada94c4a65e4787",
        )),
    },
    Vector {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        target: "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        ),
        query: Some((
            "host",
            "8e76a88a7433637b12778d5592799b29ad21ecd6cf6325051c21d86f0acda2bf",
        )),
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        target: "/",
        headers: TRIM,
        body: b"",
        token: None,
        header: (
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        ),
        query: Some((
            "host;my-header1;my-header2",
            "e7bb0fd515e125e1aec2ecc4c0c17484fb06f6846b927c35e46005dd3df3acd4",
        )),
    },
    Vector {
        name: "get-header-key-duplicate",
        method: "GET",
        target: "/",
        headers: DUPLICATE,
        body: b"",
        token: None,
        header: (
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        ),
        query: Some((
            "host;my-header1",
            "3349ee0b81b4b589da0ff28a395c3591e04de515651dd74f298fa992d1507a97",
        )),
    },
    Vector {
        name: "get-relative-relative-normalized",
        method: "GET",
        target: "/example1/example2/../..",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        query: Some((
            "host",
            "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
        )),
    },
    Vector {
        name: "get-slash-dot-slash-normalized",
        method: "GET",
        target: "/./",
        headers: &[],
        body: b"",
        token: None,
        header: (
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        query: Some((
            "host",
            "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
        )),
    },
    Vector {
        name: "get-vanilla-with-session-token",
        method: "GET",
        target: "/",
        headers: &[],
        body: b"",
        token: Some(SUITE_TOKEN),
        header: (
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
        query: Some((
            "host",
            "7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c",
        )),
    },
    Vector {
        // The header form also signs x-amz-content-sha256; the query form hashes the body.
        name: "post-x-www-form-urlencoded",
        method: "POST",
        target: "/",
        headers: FORM,
        body: b"Param1=value1",
        token: None,
        header: (
            "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        ),
        query: Some((
            "content-length;content-type;host",
            "89a40deed0f26f9461242825a082d2222717248abc7ab41f552ad84a94ad46e9",
        )),
    },
    Vector {
        // A session token sent but left out of the signature (added after signing).
        name: "post-sts-header-after",
        method: "POST",
        target: "/",
        headers: &[],
        body: b"",
        token: Some(
            "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
        ),
        header: (
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        // Its query form signs without the token it then appends: not supported.
        query: None,
    },
];

impl Vector {
    pub(super) fn authorization(&self) -> String {
        let (signed_headers, signature) = self.header;
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{SCOPE}, SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    /// `header-signed-request.txt` as hyper hands it over.
    pub(super) fn header_signed(&self) -> Parts {
        let mut headers = self.headers.to_vec();
        headers.push(("x-amz-date", DATE));
        let body_hash = sha256_hex(self.body);
        if self.header.0.contains("x-amz-content-sha256") {
            headers.push(("x-amz-content-sha256", &body_hash));
        }
        if let Some(token) = self.token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = self.authorization();
        headers.push(("authorization", &authorization));
        parts(self.method, self.target, &headers)
    }

    /// `query-signed-request.txt` as hyper hands it over.
    pub(super) fn query_signed(&self, (signed_headers, signature): (&str, &str)) -> Parts {
        let mut target = String::from(self.target);
        target.push(if target.contains('?') { '&' } else { '?' });
        target += "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request";
        target += &format!("&X-Amz-Date={DATE}&X-Amz-SignedHeaders=");
        target += &signed_headers.replace(';', "%3B");
        target += "&X-Amz-Expires=3600";
        if let Some(token) = self.token {
            target += &format!("&X-Amz-Security-Token={}", super::encoded(token));
        }
        target += &format!("&X-Amz-Signature={signature}");
        parts(self.method, &target, self.headers)
    }

    pub(super) fn payload_hash(&self, parts: &Parts, signed: &Signed) -> String {
        declared_payload_hash(parts, signed).unwrap_or_else(|| sha256_hex(self.body))
    }
}

#[test]
fn suite_header_signatures_verify_and_resign_to_themselves() {
    for v in VECTORS {
        let mut parts = v.header_signed();
        let signed = parse(&parts).unwrap().unwrap();
        assert!(!signed.presigned, "{}", v.name);
        let hash = v.payload_hash(&parts, &signed);
        let keys = suite_keys(v.token);
        verify(&parts, HOST, &hash, &signed, &keys).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        resign(&mut parts, HOST, &hash, &signed, &keys).unwrap();
        assert_eq!(
            parts.headers["authorization"],
            v.authorization().as_str(),
            "{}",
            v.name
        );
    }
}

#[test]
fn suite_presigned_signatures_verify_and_resign_to_themselves() {
    for v in VECTORS {
        let Some(query) = v.query else { continue };
        let mut parts = v.query_signed(query);
        let published = parts.uri.clone();
        let signed = parse(&parts).unwrap().unwrap();
        assert!(signed.presigned, "{}", v.name);
        let hash = v.payload_hash(&parts, &signed);
        let keys = suite_keys(v.token);
        verify(&parts, HOST, &hash, &signed, &keys).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        resign(&mut parts, HOST, &hash, &signed, &keys).unwrap();
        assert_eq!(parts.uri, published, "{}", v.name);
    }
}

#[test]
fn suite_canonical_request_and_string_to_sign() {
    let parts = VECTORS[0].header_signed();
    let signed_headers = ["host".to_owned(), "x-amz-date".to_owned()];
    let request = canonical::request(&canonical::Parts {
        method: "GET",
        path: parts.uri.path(),
        query: parts.uri.query(),
        presigned: false,
        headers: &parts.headers,
        host: HOST,
        signed_headers: &signed_headers,
        payload_hash: EMPTY_SHA256,
        mode: PathMode::Double,
    })
    .unwrap();
    let expected =
        format!("GET\n/\n\nhost:{HOST}\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}");
    assert_eq!(String::from_utf8(request.clone()).unwrap(), expected);
    // get-vanilla/header-string-to-sign.txt's last line.
    assert_eq!(
        sha256_hex(&request),
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
}

#[test]
fn suite_paths() {
    // double-encode-path: botocore's (and API Gateway's) second encoding.
    assert_eq!(
        canonical::uri("/test/@connections/JBDvjfGEIAMCERw%3D", PathMode::Double),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    // get-slashes-normalized / -unnormalized.
    assert_eq!(canonical::uri("//example//", PathMode::Double), "/example/");
    assert_eq!(
        canonical::uri("//example//", PathMode::Single),
        "//example//"
    );
    // get-relative-relative-unnormalized: S3 keeps dot segments (they are key bytes).
    let dots = "/example1/example2/../..";
    assert_eq!(canonical::uri(dots, PathMode::Single), dots);
    assert_eq!(canonical::uri("", PathMode::Single), "/");
    assert_eq!(canonical::uri("/a/b/", PathMode::Double), "/a/b/");
    assert_eq!(canonical::uri("/a/./b/../c", PathMode::Double), "/a/c");
    assert_eq!(PathMode::for_service("s3"), PathMode::Single);
    assert_eq!(PathMode::for_service("s3express"), PathMode::Single);
    assert_eq!(PathMode::for_service("bedrock"), PathMode::Double);
}

#[test]
fn canonical_query_sorts_encoded_pairs_and_keeps_plus_literal() {
    assert_eq!(canonical::query("b=2&a=2&a=1&c", false), "a=1&a=2&b=2&c=");
    assert_eq!(
        canonical::query("k=a+b&sp=%20&x=%7e", false),
        "k=a%2Bb&sp=%20&x=~"
    );
    assert_eq!(canonical::query("a=1&X-Amz-Signature=ff", true), "a=1");
    assert_eq!(
        canonical::query("a=1&X-Amz-Signature=ff", false),
        "X-Amz-Signature=ff&a=1"
    );
}
