//! Issue 15: credentials that are minted tokens or signatures, through the in-process
//! proxy against scripted upstreams on 127.0.0.1 (the token endpoints check what
//! keygate sends them: Basic client credentials, refresh tokens, RS256 JWTs verified
//! with the real public key, SigV4 verified with the real AWS keys).
//!
//! * `oauth2`: client credentials minted once and shared (single flight), refreshed
//!   when it expires, a refresh token rotated and written back to the keyring, a token
//!   endpoint's refusal answered 502 naming the secret and the endpoint.
//! * `github-app`: an installation token minted with the App's JWT.
//! * `google`: keygate answers the agent's token exchange (a JWT signed with the phantom
//!   key) with the phantom bearer, and sends a token minted from the real account.
//! * `aws`: a request signed with the phantom keys is verified and re-signed; a forged
//!   one is refused; an S3 request with `x-amz-content-sha256`; a body past
//!   `limits.max_signed_body` is 413; real keys from a credential command.
//!
//! Real values, minted tokens and phantom secrets never reach the client (leak checks).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use keygate::credentials::jwt;
use keygate::credentials::key::SigningKey;
use keygate::credentials::sigv4::{self, AwsKeys};
use keygate::secrets::kind::{
    AwsBlock, GithubAppBlock, GoogleBlock, GrantName, KindName, Oauth2Block,
};
use keygate::secrets::{MemoryStore, SecretStore, SecretValue};
use serde_json::json;
use tempfile::TempDir;

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::body;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, TestProxy, reason};
use crate::support::scripted::{self, Received, Scripted};
use crate::support::secret::{TestSecret, unique};

/// A proxy resolving each `(host, upstream)` to it, trusting the test root.
async fn proxy(
    pki: &TestPki,
    dir: &TempDir,
    upstreams: &[(&str, std::net::SocketAddr)],
    configure: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> TestProxy {
    let root = pki.write_root(dir.path());
    let mut builder = ProxyBuilder::new().upstream_ca(&root);
    for (host, addr) in upstreams {
        builder = builder.resolve(&format!("{host}:443"), *addr);
    }
    configure(builder).start().await
}

async fn get(
    proxy: &TestProxy,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    saw: &mut ClientSaw,
) -> (StatusCode, String) {
    let mut conn = Conn::open(proxy, host, Version::HTTP_2).await;
    let (head, text) = saw
        .read(conn.send(conn.get(host, path, headers)).await)
        .await;
    (head.status, text)
}

// ---------------------------------------------------------------------------------------
// oauth2

const API: &str = "api.oauth.test";
const AUTH: &str = "auth.oauth.test";

/// A client-credentials token endpoint: checks the Basic credentials, counts mints,
/// answers `at-<n>-<tag>` living `expires_in` seconds.
fn client_credentials_endpoint(
    client_id: &'static str,
    secret: String,
    tag: String,
    expires_in: u64,
    mints: Arc<AtomicUsize>,
) -> impl Fn(&Received) -> http::Response<body::TestBody> + Send + Sync + 'static {
    move |r: &Received| {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
        );
        if r.header("authorization").as_deref() != Some(expected.as_str())
            || r.field("grant_type").as_deref() != Some("client_credentials")
        {
            return scripted::json(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_client", "error_description": format!("client {client_id} with secret {secret} is unknown")}),
            );
        }
        // A slow endpoint, so that concurrent requests meet in one mint.
        std::thread::sleep(Duration::from_millis(150));
        let n = mints.fetch_add(1, Ordering::SeqCst) + 1;
        scripted::json(
            StatusCode::OK,
            &json!({"access_token": format!("at-{n}-{tag}"), "token_type": "Bearer", "expires_in": expires_in}),
        )
    }
}

fn oauth2_secret(name: &str, grant: GrantName) -> TestSecret {
    TestSecret::new(name, &[API]).with(|e| {
        e.header = "authorization".into();
        e.format = "Bearer {secret}".into();
        e.kind = KindName::Oauth2;
        e.oauth2 = Some(Oauth2Block {
            token_url: format!("https://{AUTH}/oauth/token"),
            client_id: "client-1".into(),
            scopes: vec!["read".into()],
            grant,
            ..Oauth2Block::default()
        });
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials_are_minted_once_shared_and_never_shown() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = oauth2_secret("oauth-cc", GrantName::ClientCredentials);
    let tag = unique();
    let mints = Arc::new(AtomicUsize::new(0));
    let auth = Scripted::start(
        &pki,
        &[AUTH],
        client_credentials_endpoint(
            "client-1",
            secret.real().into(),
            tag.clone(),
            3600,
            mints.clone(),
        ),
    )
    .await;
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let tokens_file = dir.path().join("tokens.json");
    let proxy = proxy(&pki, &dir, &[(AUTH, auth.addr), (API, api.addr)], |b| {
        b.secret(&secret).tokens_file(&tokens_file)
    })
    .await;
    let bearer = format!("Bearer {}", secret.dummy());
    // Eight agents at once: one mint.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (addr, der, bearer) = (proxy.addr, proxy.ca().der.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open_via(addr, &der, API, Version::HTTP_2).await;
            let mut saw = ClientSaw::default();
            let req = conn.get(
                API,
                &format!("/v1/items/{i}"),
                &[("authorization", &bearer)],
            );
            let (head, text) = saw.read(conn.send(req).await).await;
            (head.status, text, saw)
        }));
    }
    let mut saws = Vec::new();
    for task in tasks {
        let (status, text, saw) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        saws.push(saw);
    }
    assert_eq!(
        mints.load(Ordering::SeqCst),
        1,
        "one mint for eight concurrent requests"
    );
    let token = format!("at-1-{tag}");
    let seen = api.seen();
    assert_eq!(seen.len(), 8);
    for s in &seen {
        assert_eq!(
            s.header("authorization"),
            [format!("Bearer {token}").as_str()]
        );
    }
    // The echo of the token came back as the phantom; nothing real anywhere.
    for saw in &saws {
        assert!(saw.texts().iter().any(|t| t.contains(secret.dummy())));
        assert_no_leak(&token, &proxy, saw);
        assert_no_leak(secret.real(), &proxy, saw);
    }
    let token_requests = auth.to_path("/oauth/token");
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].field("scope").as_deref(), Some("read"));
    let event = proxy.event("request", |e| e["path"] == "/v1/items/0").await;
    assert_eq!(event["secret"], "oauth-cc");
    // `keygate secret list` learns the token's expiry from tokens.json: a time, no token.
    let mut noted = keygate::credentials::expiry::read(&tokens_file);
    for _ in 0..100 {
        if noted.contains_key("oauth-cc") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        noted = keygate::credentials::expiry::read(&tokens_file);
    }
    assert!(noted["oauth-cc"].expires_at.ends_with('Z'), "{noted:?}");
    let text = std::fs::read_to_string(&tokens_file).unwrap();
    assert!(!text.contains(&token) && !text.contains(secret.real()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_minted_again_before_it_expires() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = oauth2_secret("oauth-exp", GrantName::ClientCredentials);
    let tag = unique();
    let mints = Arc::new(AtomicUsize::new(0));
    // Two seconds of life: refreshed after half of it.
    let auth = Scripted::start(
        &pki,
        &[AUTH],
        client_credentials_endpoint(
            "client-1",
            secret.real().into(),
            tag.clone(),
            2,
            mints.clone(),
        ),
    )
    .await;
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let proxy = proxy(&pki, &dir, &[(AUTH, auth.addr), (API, api.addr)], |b| {
        b.secret(&secret)
    })
    .await;
    let bearer = format!("Bearer {}", secret.dummy());
    let mut saw = ClientSaw::default();
    let (status, text) = get(&proxy, API, "/one", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _) = get(&proxy, API, "/two", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mints.load(Ordering::SeqCst),
        1,
        "the token is reused while fresh"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, _) = get(
        &proxy,
        API,
        "/three",
        &[("authorization", &bearer)],
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mints.load(Ordering::SeqCst),
        2,
        "minted again past half its life"
    );
    let seen = api.seen();
    assert_eq!(
        seen[2].header("authorization"),
        [format!("Bearer at-2-{tag}").as_str()]
    );
    assert_no_leak(&format!("at-2-{tag}"), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_used_next_and_written_to_the_keyring() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let tag = unique();
    let first = format!("rt-0-{tag}");
    let secret = oauth2_secret("oauth-rt", GrantName::RefreshToken).real_exact(&first);
    let current = Arc::new(Mutex::new(first.clone()));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let (cur, count, t) = (current.clone(), refreshes.clone(), tag.clone());
    let auth = Scripted::start(&pki, &[AUTH], move |r: &Received| {
        let mut cur = cur.lock().unwrap();
        if r.field("grant_type").as_deref() != Some("refresh_token")
            || r.field("refresh_token").as_deref() != Some(cur.as_str())
            || r.field("client_id").as_deref() != Some("client-1")
        {
            return scripted::json(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"}));
        }
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        *cur = format!("rt-{n}-{t}");
        scripted::json(
            StatusCode::OK,
            &json!({"access_token": format!("at-{n}-{t}"), "refresh_token": *cur, "expires_in": 2}),
        )
    })
    .await;
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let store = Arc::new(MemoryStore::new());
    store
        .set("oauth-rt", &SecretValue::new(first.clone()).unwrap())
        .unwrap();
    let proxy = proxy(&pki, &dir, &[(AUTH, auth.addr), (API, api.addr)], |b| {
        b.secret(&secret).store(store.clone())
    })
    .await;
    let bearer = format!("Bearer {}", secret.dummy());
    let mut saw = ClientSaw::default();
    let (status, text) = get(&proxy, API, "/a", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, text) = get(&proxy, API, "/b", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rotated refresh token worked: {text}"
    );
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
    let seen = api.seen();
    assert_eq!(
        seen[1].header("authorization"),
        [format!("Bearer at-2-{tag}").as_str()]
    );
    // The keyring holds the latest refresh token (written off the request path).
    let latest = format!("rt-2-{tag}");
    let mut stored = String::new();
    for _ in 0..100 {
        stored = store.get("oauth-rt").unwrap().unwrap().expose().to_string();
        if stored == latest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stored == latest,
        "the keyring holds the rotated refresh token"
    );
    for value in [
        &first,
        &latest,
        &format!("at-1-{tag}"),
        &format!("at-2-{tag}"),
    ] {
        assert_no_leak(value, &proxy, &saw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_refusal_is_a_502_naming_secret_and_endpoint_without_the_secret() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = oauth2_secret("oauth-bad", GrantName::ClientCredentials);
    let mints = Arc::new(AtomicUsize::new(0));
    // The endpoint expects another secret, and quotes the one it got in its error.
    let auth = Scripted::start(
        &pki,
        &[AUTH],
        client_credentials_endpoint("client-1", "another-secret".into(), unique(), 3600, mints),
    )
    .await;
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let proxy = proxy(&pki, &dir, &[(AUTH, auth.addr), (API, api.addr)], |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let bearer = format!("Bearer {}", secret.dummy());
    let (status, text) = get(&proxy, API, "/x", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(text.contains("mint-failed"), "{text}");
    assert!(text.contains("`oauth-bad`"), "{text}");
    assert!(
        text.contains(&format!("https://{AUTH}/oauth/token")),
        "{text}"
    );
    assert!(text.contains("invalid_client"), "{text}");
    assert!(api.seen().is_empty(), "nothing went to the API");
    assert_no_leak(secret.real(), &proxy, &saw);
    let event = proxy.event("request", |e| e["path"] == "/x").await;
    assert!(reason(&event).contains("oauth-bad"), "{event}");
}

// ---------------------------------------------------------------------------------------
// github-app

const GH: &str = "api.gh.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_installation_token_replaces_the_phantom() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate_rsa2048().unwrap();
    let public = key.verifying_key().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let stored = json!({ "private_key": pem.as_str() }).to_string();
    let secret = TestSecret::new("gh-app", &[GH])
        .dummy_value("ghs_keygatePhantom{unique}")
        .real_exact(&stored)
        .with(|e| {
            e.header = "authorization".into();
            e.format = "token {secret}".into();
            e.kind = KindName::GithubApp;
            e.github_app = Some(GithubAppBlock {
                app_id: "4242".into(),
                installation_id: 77,
                api_url: Some(format!("https://{GH}")),
            });
        });
    let real_token = format!("ghs_real{}", unique());
    let issued = real_token.clone();
    let gh = Scripted::start(&pki, &[GH], move |r: &Received| {
        let path = r.parts.uri.path();
        if path == "/app/installations/77/access_tokens" {
            let jwt_ok = r
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
                .and_then(|t| jwt::verify(&t, &public, SystemTime::now(), jwt::DEFAULT_LEEWAY).ok())
                .is_some_and(|claims| claims["iss"] == 4242);
            if !jwt_ok || r.parts.method != http::Method::POST {
                return scripted::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": "A JSON web token could not be decoded"}),
                );
            }
            let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
            let expires = expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            return scripted::json(
                StatusCode::CREATED,
                &json!({"token": issued, "expires_at": expires}),
            );
        }
        let authorized = r.header("authorization") == Some(format!("token {issued}"));
        let status = if authorized {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        scripted::json(
            status,
            &json!({"full_name": "o/r", "seen_authorization": r.header("authorization")}),
        )
    })
    .await;
    let proxy = proxy(&pki, &dir, &[(GH, gh.addr)], |b| b.secret(&secret)).await;
    let mut saw = ClientSaw::default();
    let phantom = format!("token {}", secret.dummy());
    let (status, text) = get(
        &proxy,
        GH,
        "/repos/o/r",
        &[("authorization", &phantom)],
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // The API echoed the real token; the client saw the phantom.
    assert!(text.contains(secret.dummy()), "{text}");
    assert_no_leak(&real_token, &proxy, &saw);
    assert_no_leak(&stored, &proxy, &saw);
    assert_eq!(gh.to_path("/app/installations/77/access_tokens").len(), 1);
}

// ---------------------------------------------------------------------------------------
// google

const GTOKEN: &str = "oauth2.googleapis.com";
const VERTEX: &str = "aiplatform.googleapis.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_the_agent_gets_a_phantom_token_and_the_api_a_minted_one() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real_key = SigningKey::generate_rsa2048().unwrap();
    let real_public = real_key.verifying_key().unwrap();
    let real_json = json!({
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "real-key-1",
        "private_key": real_key.to_pkcs8_pem().unwrap().as_str(),
        "client_email": "agent@proj.iam.gserviceaccount.com",
        "token_uri": format!("https://{GTOKEN}/token"),
    })
    .to_string();
    let phantom_key = SigningKey::generate_rsa2048().unwrap();
    let phantom_json =
        keygate::credentials::mint::google::phantom_json(&real_json, &phantom_key, "phantom-1")
            .unwrap();
    let phantoms = dir.path().join("phantoms");
    std::fs::create_dir(&phantoms).unwrap();
    std::fs::write(phantoms.join("vertex.json"), phantom_json.as_bytes()).unwrap();
    let secret = TestSecret::new("vertex", &[GTOKEN, VERTEX])
        .dummy_value("ya29.keygate-phantom-{unique}")
        .real_exact(&real_json)
        .with(|e| {
            e.header = "authorization".into();
            e.format = "Bearer {secret}".into();
            e.kind = KindName::Google;
            e.google = Some(GoogleBlock::default());
        });
    let real_token = format!("ya29.real-{}", unique());
    let issued = real_token.clone();
    let token_server = Scripted::start(&pki, &[GTOKEN], move |r: &Received| {
        let claims = r.field("assertion").and_then(|a| {
            jwt::verify(&a, &real_public, SystemTime::now(), jwt::DEFAULT_LEEWAY).ok()
        });
        match claims {
            Some(c) if c["iss"] == "agent@proj.iam.gserviceaccount.com" => scripted::json(
                StatusCode::OK,
                &json!({"access_token": issued, "expires_in": 3599, "token_type": "Bearer"}),
            ),
            _ => scripted::json(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"})),
        }
    })
    .await;
    let vertex = ApiUpstream::start(&pki, &[VERTEX], Alpn::H2AndHttp1).await;
    let proxy = proxy(
        &pki,
        &dir,
        &[(GTOKEN, token_server.addr), (VERTEX, vertex.addr)],
        |b| b.secret(&secret).phantoms(&phantoms),
    )
    .await;
    let mut saw = ClientSaw::default();
    // The agent's library signs a JWT with the phantom key and exchanges it.
    let now = jwt::unix_seconds(SystemTime::now());
    let exchange = |key: &SigningKey| {
        let claims = json!({
            "iss": "agent@proj.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "aud": format!("https://{GTOKEN}/token"),
            "iat": now, "exp": now + 3600,
        });
        let assertion = jwt::sign(key, Some("phantom-1"), &claims).unwrap();
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            assertion.as_str()
        )
    };
    let mut conn = Conn::open(&proxy, GTOKEN, Version::HTTP_11).await;
    let req = conn
        .request("POST", GTOKEN, "/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body::full(exchange(&phantom_key)))
        .unwrap();
    let (head, text) = saw.read(conn.send(req).await).await;
    assert_eq!(head.status, StatusCode::OK, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["access_token"],
        secret.dummy(),
        "the agent holds the phantom"
    );
    assert!(
        token_server.received().is_empty(),
        "the agent's exchange never left keygate"
    );
    // A JWT signed with any other key is refused.
    let stranger = SigningKey::generate_rsa2048().unwrap();
    let req = conn
        .request("POST", GTOKEN, "/token")
        .body(body::full(exchange(&stranger)))
        .unwrap();
    let (head, text) = saw.read(conn.send(req).await).await;
    assert_eq!(head.status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("phantom"), "{text}");
    // The API gets a token minted from the real account.
    let bearer = format!("Bearer {}", secret.dummy());
    let path = "/v1/projects/proj/locations/us-east5/publishers/google/models/m:generateContent";
    let (status, text) = get(
        &proxy,
        VERTEX,
        path,
        &[("authorization", &bearer)],
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        vertex.only().header("authorization"),
        [format!("Bearer {real_token}").as_str()]
    );
    assert_eq!(token_server.received().len(), 1, "keygate minted once");
    // A self-signed JWT (what Google's libraries send with always_use_jwt_access) signed
    // by the phantom key is replaced by the minted token too.
    let claims = json!({
        "iss": "agent@proj.iam.gserviceaccount.com",
        "sub": "agent@proj.iam.gserviceaccount.com",
        "aud": format!("https://{VERTEX}/"),
        "iat": now, "exp": now + 3600,
    });
    let self_signed = jwt::sign(&phantom_key, Some("phantom-1"), &claims).unwrap();
    let bearer = format!("Bearer {}", self_signed.as_str());
    let (status, text) = get(
        &proxy,
        VERTEX,
        path,
        &[("authorization", &bearer)],
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = vertex.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].header("authorization"),
        [format!("Bearer {real_token}").as_str()]
    );
    assert_no_leak(&real_token, &proxy, &saw);
    assert_no_leak("real-key-1", &proxy, &saw);
}

// ---------------------------------------------------------------------------------------
// aws

const BEDROCK: &str = "bedrock-runtime.us-east-1.amazonaws.com";
const BUCKET: &str = "bucket.s3.us-east-1.amazonaws.com";

fn keys(id: &str, secret: &str, token: Option<&str>) -> AwsKeys {
    AwsKeys {
        access_key_id: id.into(),
        secret_access_key: zeroize::Zeroizing::new(secret.into()),
        session_token: token.map(|t| zeroize::Zeroizing::new(t.to_string())),
    }
}

/// Signs `parts` with `keys` the way an SDK does (x-amz-date, host;x-amz-date and any
/// x-amz-* header signed), for `service`.
fn sign(
    parts: &mut http::request::Parts,
    authority: &str,
    payload_hash: &str,
    service: &str,
    keys: &AwsKeys,
) {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = now.format(&fmt).unwrap();
    parts
        .headers
        .insert("x-amz-date", amz_date.parse().unwrap());
    let mut signed: Vec<String> = parts
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-amz-") || k == "content-type")
        .collect();
    signed.push("host".into());
    signed.sort();
    signed.dedup();
    let placeholder = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/us-east-1/{service}/aws4_request, SignedHeaders={}, Signature={}",
        keys.access_key_id,
        &amz_date[..8],
        signed.join(";"),
        "0".repeat(64)
    );
    parts
        .headers
        .insert("authorization", placeholder.parse().unwrap());
    let template = sigv4::parse(parts).unwrap().unwrap();
    // Re-signing a placeholder with `keys` is signing.
    let with_id = keys.clone();
    sigv4::resign(parts, authority, payload_hash, &template, &with_id).unwrap();
}

/// An AWS endpoint that verifies SigV4 with the real keys; 403 with the reason else.
fn aws_endpoint(
    authority: &'static str,
    real: AwsKeys,
) -> impl Fn(&Received) -> http::Response<body::TestBody> + Send + Sync + 'static {
    move |r: &Received| {
        let signed = match sigv4::parse(&r.parts) {
            Ok(Some(s)) => s,
            _ => return scripted::json(StatusCode::FORBIDDEN, &json!({"message": "not signed"})),
        };
        let hash = match sigv4::declared_payload_hash(&r.parts, &signed) {
            Some(declared) if declared == sigv4::UNSIGNED_PAYLOAD => declared,
            Some(declared) => {
                if declared != sigv4::sha256_hex(&r.body) {
                    return scripted::json(
                        StatusCode::BAD_REQUEST,
                        &json!({"message": "XAmzContentSHA256Mismatch"}),
                    );
                }
                declared
            }
            None => sigv4::sha256_hex(&r.body),
        };
        match sigv4::verify(&r.parts, authority, &hash, &signed, &real) {
            Ok(()) => scripted::json(
                StatusCode::OK,
                &json!({"output": "verified", "bytes": r.body.len()}),
            ),
            Err(e) => scripted::json(StatusCode::FORBIDDEN, &json!({"message": e.to_string()})),
        }
    }
}

fn aws_secret(name: &str, hosts: &[&str], real: Option<&AwsKeys>) -> (TestSecret, AwsKeys) {
    let id = unique().to_uppercase();
    let id = format!("AKIA{:Q>16}", &id[id.len().saturating_sub(16)..]);
    let phantom = keys(&id, &format!("phantomSecret{}", unique()), None);
    let stored = real.map(|r| {
        json!({"access_key_id": r.access_key_id, "secret_access_key": r.secret_access_key.as_str(), "session_token": r.session_token.as_ref().map(|t| t.as_str())}).to_string()
    });
    let secret_key = phantom.secret_access_key.to_string();
    let mut secret = TestSecret::new(name, hosts).with(|e| {
        e.header = "authorization".into();
        e.kind = KindName::Aws;
        e.aws = Some(AwsBlock {
            secret_access_key: secret_key,
            session_token: None,
            source: None,
            command: None,
        });
    });
    secret.entry.dummy = phantom.access_key_id.clone();
    secret.real = stored;
    (secret, phantom)
}

fn real_aws() -> AwsKeys {
    keys(
        "AKIAREALREALREAL0001",
        &format!("realSecret/{}+x", unique()),
        Some(&format!("realSessionToken{}", unique())),
    )
}

/// One SigV4 request as an SDK sends it.
struct Call<'a> {
    host: &'static str,
    method: &'a str,
    path: &'a str,
    body: Vec<u8>,
    /// Send `x-amz-content-sha256` (as S3 clients do).
    declare_hash: bool,
    service: &'a str,
}

async fn send_signed(
    proxy: &TestProxy,
    call: Call<'_>,
    keys: &AwsKeys,
    saw: &mut ClientSaw,
) -> (StatusCode, String) {
    let Call {
        host,
        method,
        path,
        body: body_bytes,
        declare_hash,
        service,
    } = call;
    let mut conn = Conn::open(proxy, host, Version::HTTP_11).await;
    let mut req = conn
        .request(method, host, path)
        .header("content-type", "application/json");
    if declare_hash {
        req = req.header("x-amz-content-sha256", sigv4::sha256_hex(&body_bytes));
    }
    let req = req
        .body(body::full(Bytes::from(body_bytes.clone())))
        .unwrap();
    let (mut parts, b) = req.into_parts();
    sign(
        &mut parts,
        host,
        &sigv4::sha256_hex(&body_bytes),
        service,
        keys,
    );
    let (head, text) = saw
        .read(conn.send(Request::from_parts(parts, b)).await)
        .await;
    (head.status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_phantom_signed_request_is_verified_and_re_signed_with_the_real_keys() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real = real_aws();
    let (secret, phantom) = aws_secret("bedrock", &[BEDROCK, BUCKET], Some(&real));
    let bedrock = Scripted::start(&pki, &[BEDROCK], aws_endpoint(BEDROCK, real.clone())).await;
    let s3 = Scripted::start(&pki, &[BUCKET], aws_endpoint(BUCKET, real.clone())).await;
    let proxy = proxy(
        &pki,
        &dir,
        &[(BEDROCK, bedrock.addr), (BUCKET, s3.addr)],
        |b| b.secret(&secret),
    )
    .await;
    let mut saw = ClientSaw::default();
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#.to_vec();
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: BEDROCK,
            method: "POST",
            path: "/model/anthropic.claude-v2/converse",
            body: body.clone(),
            declare_hash: false,
            service: "bedrock",
        },
        &phantom,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let arrived = &bedrock.received()[0];
    let authorization = arrived.header("authorization").unwrap();
    assert!(
        authorization.contains("Credential=AKIAREALREALREAL0001/"),
        "{authorization}"
    );
    assert_eq!(
        arrived.header("x-amz-security-token").as_deref(),
        real.session_token.as_deref().map(|t| t.as_str())
    );
    assert_eq!(
        arrived.body.as_ref(),
        body.as_slice(),
        "the body went up as sent"
    );
    for (name, value) in arrived.parts.headers.iter() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains(&phantom.access_key_id),
            "{name} holds the phantom id"
        );
        assert!(
            !value.contains(phantom.secret_access_key.as_str()),
            "{name} holds the phantom secret"
        );
    }
    // S3, with a declared payload hash (nothing buffered).
    let object = vec![b'x'; 100_000];
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: BUCKET,
            method: "PUT",
            path: "/some/key.bin",
            body: object,
            declare_hash: true,
            service: "s3",
        },
        &phantom,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("100000"), "{text}");
    for value in [
        real.secret_access_key.as_str(),
        real.session_token.as_deref().unwrap(),
        &real.access_key_id,
    ] {
        assert_no_leak(value, &proxy, &saw);
    }
    let event = proxy
        .event("request", |e| e["path"] == "/some/key.bin")
        .await;
    assert_eq!(event["secret"], "bedrock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_request_not_signed_by_the_phantom_is_refused_and_never_sent() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real = real_aws();
    let (secret, phantom) = aws_secret("bedrock-forged", &[BEDROCK], Some(&real));
    let bedrock = Scripted::start(&pki, &[BEDROCK], aws_endpoint(BEDROCK, real.clone())).await;
    let proxy = proxy(&pki, &dir, &[(BEDROCK, bedrock.addr)], |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    // The phantom id, signed with a guessed secret.
    let forged = keys(&phantom.access_key_id, "guessed-secret", None);
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: BEDROCK,
            method: "POST",
            path: "/model/m/converse",
            body: b"{}".to_vec(),
            declare_hash: false,
            service: "bedrock",
        },
        &forged,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("signature mismatch"), "{text}");
    assert!(text.contains("`bedrock-forged`"), "{text}");
    assert!(bedrock.received().is_empty(), "nothing reached AWS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_body_past_max_signed_body_is_413_and_a_command_supplies_the_keys() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real = real_aws();
    let (secret, phantom) = aws_secret("bedrock-cmd", &[BEDROCK], None);
    // The real keys come from a credential_process-style command.
    let script = dir.path().join("creds.sh");
    let printed = json!({
        "Version": 1,
        "AccessKeyId": real.access_key_id,
        "SecretAccessKey": real.secret_access_key.as_str(),
        "SessionToken": real.session_token.as_deref().map(|t| t.as_str()),
        "Expiration": "2099-01-01T00:00:00Z",
    });
    std::fs::write(&script, format!("#!/bin/sh\ncat <<'EOF'\n{printed}\nEOF\n")).unwrap();
    std::process::Command::new("chmod")
        .arg("700")
        .arg(&script)
        .status()
        .unwrap();
    let secret = secret.with(|e| {
        e.aws.as_mut().unwrap().command = Some(vec![script.display().to_string()]);
    });
    let bedrock = Scripted::start(&pki, &[BEDROCK], aws_endpoint(BEDROCK, real.clone())).await;
    let proxy = proxy(&pki, &dir, &[(BEDROCK, bedrock.addr)], |b| {
        b.secret(&secret).yaml("limits:\n  max_signed_body: 1024\n")
    })
    .await;
    let mut saw = ClientSaw::default();
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: BEDROCK,
            method: "POST",
            path: "/model/m/converse",
            body: vec![b'a'; 1000],
            declare_hash: false,
            service: "bedrock",
        },
        &phantom,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: BEDROCK,
            method: "POST",
            path: "/model/m/converse",
            body: vec![b'a'; 5000],
            declare_hash: false,
            service: "bedrock",
        },
        &phantom,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("limits.max_signed_body"), "{text}");
    assert_eq!(bedrock.received().len(), 1);
    assert_no_leak(real.secret_access_key.as_str(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_phantom_keys_sent_to_a_host_they_are_not_bound_to_trip_the_wire() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real = real_aws();
    let (aws, phantom) = aws_secret("bedrock-trip", &[BEDROCK], Some(&real));
    // Another intercepted host (another secret's), where the phantom must not go.
    let other = TestSecret::new("other", &[API]);
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let proxy = proxy(&pki, &dir, &[(API, api.addr)], |b| {
        b.secret(&aws).secret(&other)
    })
    .await;
    let mut saw = ClientSaw::default();
    let (status, text) = send_signed(
        &proxy,
        Call {
            host: API,
            method: "POST",
            path: "/exfil",
            body: b"{}".to_vec(),
            declare_hash: false,
            service: "bedrock",
        },
        &phantom,
        &mut saw,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("tripwire"), "{text}");
    assert!(api.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_presigned_url_is_re_signed_in_the_query() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real = real_aws();
    let (secret, phantom) = aws_secret("s3-presigned", &[BUCKET], Some(&real));
    let s3 = Scripted::start(&pki, &[BUCKET], aws_endpoint(BUCKET, real.clone())).await;
    let proxy = proxy(&pki, &dir, &[(BUCKET, s3.addr)], |b| b.secret(&secret)).await;
    let mut saw = ClientSaw::default();
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = now.format(&fmt).unwrap();
    let placeholder = format!(
        "/report.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F{}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={amz_date}&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
        phantom.access_key_id,
        &amz_date[..8],
        "0".repeat(64)
    );
    let mut conn = Conn::open(&proxy, BUCKET, Version::HTTP_11).await;
    let req = conn.get(BUCKET, &placeholder, &[]);
    let (mut parts, b) = req.into_parts();
    let template = sigv4::parse(&parts).unwrap().unwrap();
    sigv4::resign(
        &mut parts,
        BUCKET,
        sigv4::UNSIGNED_PAYLOAD,
        &template,
        &phantom,
    )
    .unwrap();
    let (head, text) = saw
        .read(conn.send(Request::from_parts(parts, b)).await)
        .await;
    assert_eq!(head.status, StatusCode::OK, "{text}");
    let query = s3.received()[0].parts.uri.query().unwrap().to_string();
    assert!(query.contains("AKIAREALREALREAL0001"), "{query}");
    assert!(!query.contains(&phantom.access_key_id), "{query}");
    assert_no_leak(real.secret_access_key.as_str(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_upstream_rejects_with_401_is_minted_again_next_time() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let secret = oauth2_secret("oauth-revoked", GrantName::ClientCredentials);
    let tag = unique();
    let mints = Arc::new(AtomicUsize::new(0));
    let auth = Scripted::start(
        &pki,
        &[AUTH],
        client_credentials_endpoint(
            "client-1",
            secret.real().into(),
            tag.clone(),
            3600,
            mints.clone(),
        ),
    )
    .await;
    // The API has revoked the first token before its expiry.
    let revoked = format!("Bearer at-1-{tag}");
    let api = Scripted::start(&pki, &[API], move |r: &Received| {
        let status = match r.header("authorization") {
            Some(a) if a == revoked => StatusCode::UNAUTHORIZED,
            Some(_) => StatusCode::OK,
            None => StatusCode::BAD_REQUEST,
        };
        scripted::json(status, &json!({}))
    })
    .await;
    let proxy = proxy(&pki, &dir, &[(AUTH, auth.addr), (API, api.addr)], |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let bearer = format!("Bearer {}", secret.dummy());
    let (status, _) = get(&proxy, API, "/a", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the upstream's answer, passed on"
    );
    let (status, _) = get(&proxy, API, "/b", &[("authorization", &bearer)], &mut saw).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mints.load(Ordering::SeqCst), 2);
}
