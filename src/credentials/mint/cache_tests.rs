use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::credentials::mint::fake::{FakeClock, FakeTransport, at, ok, token_json};
use crate::credentials::mint::{ClientCredentials, RefreshToken};

const ENDPOINT: &str = "https://login.example.com/oauth2/token";

fn secret(text: &str) -> SecretValue {
    SecretValue::new(text.into()).unwrap()
}

fn grant() -> Grant {
    ClientCredentials::new(
        ENDPOINT.parse().unwrap(),
        "client".into(),
        secret("cs-123456789"),
    )
    .into()
}

/// Answers `at-N` (N = call number) living `expires_in` seconds.
fn numbered(expires_in: u64) -> FakeTransport {
    FakeTransport::new(move |_, call| ok(token_json(&format!("at-{call}"), expires_in)))
}

fn cache(clock: &Arc<FakeClock>) -> TokenCache {
    TokenCache::new(grant()).with_clock(Arc::clone(clock) as Arc<dyn Clock>)
}

#[tokio::test]
async fn a_second_get_within_the_lifetime_does_not_mint() {
    let clock = Arc::new(FakeClock::new());
    let cache = cache(&clock);
    let transport = numbered(3600);
    assert_eq!(cache.expires_at(), None);
    let first = cache.get(&transport).await.unwrap();
    clock.advance(Duration::from_secs(3000));
    let second = cache.get(&transport).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(transport.calls(), 1);
    assert_eq!(cache.expires_at(), Some(at(3600)));
    let shown = format!("{cache:?}");
    assert!(
        !shown.contains("at-0") && shown.contains(ENDPOINT),
        "{shown}"
    );
}

#[tokio::test]
async fn a_long_lived_token_is_refreshed_five_minutes_before_expiry() {
    let clock = Arc::new(FakeClock::new());
    let cache = cache(&clock);
    let transport = numbered(3600);
    cache.get(&transport).await.unwrap();
    clock.advance(Duration::from_secs(3299));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-0");
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-1");
    assert_eq!(cache.expires_at(), Some(at(3300 + 3600)));
    assert_eq!(transport.calls(), 2);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_half_way() {
    let clock = Arc::new(FakeClock::new());
    let cache = cache(&clock);
    let transport = numbered(60);
    cache.get(&transport).await.unwrap();
    clock.advance(Duration::from_secs(29));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-0");
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-1");
    assert_eq!(transport.calls(), 2);
    assert_eq!(refresh_time(at(0), at(60), DEFAULT_REFRESH_MARGIN), at(30));
    assert_eq!(refresh_time(at(10), at(5), DEFAULT_REFRESH_MARGIN), at(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_gets_share_one_mint() {
    let cache = Arc::new(TokenCache::new(grant()));
    let transport = Arc::new(numbered(3600).slow(Duration::from_millis(200)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (cache, transport) = (Arc::clone(&cache), Arc::clone(&transport));
        tasks.spawn(async move { cache.get(&*transport).await });
    }
    let tokens: Vec<Arc<Token>> = tasks
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(transport.calls(), 1);
    assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waiters_share_a_failure_and_the_next_call_retries() {
    let cache = Arc::new(TokenCache::new(grant()));
    let transport = Arc::new(
        FakeTransport::new(|_, call| match call {
            0 => Ok((
                http::StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client"}"#.into(),
            )),
            _ => ok(token_json("at-ok", 3600)),
        })
        .slow(Duration::from_millis(200)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (cache, transport) = (Arc::clone(&cache), Arc::clone(&transport));
        tasks.spawn(async move { cache.get(&*transport).await });
    }
    let outcomes = tasks.join_all().await;
    assert_eq!(transport.calls(), 1);
    for outcome in &outcomes {
        let error = outcome.as_ref().unwrap_err();
        assert!(
            matches!(error, MintError::Refused { status: 401, .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        cache.get(&*transport).await.unwrap().value.as_str(),
        "at-ok"
    );
    assert_eq!(transport.calls(), 2);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_surfaced_once_and_used_next_time() {
    let clock = Arc::new(FakeClock::new());
    let grant = RefreshToken::new(
        ENDPOINT.parse().unwrap(),
        "client".into(),
        None,
        secret("rt-1-original"),
    );
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&stored);
    let cache = TokenCache::new(grant.into())
        .with_clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .on_rotation(Box::new(move |new| {
            sink.lock().unwrap().push(new.expose().to_owned())
        }));
    let transport = FakeTransport::new(|_, call| {
        let body = match call {
            0 => {
                json!({"access_token": "at-0", "expires_in": 600, "refresh_token": "rt-2-rotated"})
            }
            _ => json!({"access_token": "at-1", "expires_in": 600}),
        };
        ok(body.to_string())
    });
    cache.get(&transport).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), ["rt-2-rotated"]);
    clock.advance(Duration::from_secs(600));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-1");
    let sent: Vec<String> = transport
        .requests()
        .iter()
        .map(|r| r.form()["refresh_token"].clone())
        .collect();
    assert_eq!(sent, ["rt-1-original", "rt-2-rotated"]);
    assert_eq!(
        stored.lock().unwrap().len(),
        1,
        "no rotation, no second call"
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_the_unexpired_token() {
    let clock = Arc::new(FakeClock::new());
    let cache = cache(&clock);
    let transport = FakeTransport::new(|_, call| match call {
        0 => ok(token_json("at-0", 3600)),
        _ => Err("connection refused".into()),
    });
    cache.get(&transport).await.unwrap();
    clock.advance(Duration::from_secs(3400));
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-0");
    assert_eq!(
        transport.calls(),
        2,
        "each call inside the margin tries to refresh"
    );
    clock.advance(Duration::from_secs(200));
    let error = cache.get(&transport).await.unwrap_err();
    assert!(matches!(error, MintError::Transport { .. }), "{error:?}");
}

#[tokio::test]
async fn invalidate_forces_a_mint() {
    let clock = Arc::new(FakeClock::new());
    let cache = cache(&clock);
    let transport = numbered(3600);
    cache.get(&transport).await.unwrap();
    cache.invalidate();
    assert_eq!(cache.expires_at(), None);
    assert_eq!(cache.get(&transport).await.unwrap().value.as_str(), "at-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_get_keeps_a_rotation_when_its_caller_gives_up() {
    let grant = RefreshToken::new(
        ENDPOINT.parse().unwrap(),
        "client".into(),
        None,
        secret("rt-1-original"),
    );
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&stored);
    let cache = Arc::new(
        TokenCache::new(grant.into()).on_rotation(Box::new(move |new| {
            sink.lock().unwrap().push(new.expose().to_owned())
        })),
    );
    let body = json!({"access_token": "at-0", "refresh_token": "rt-2-rotated"}).to_string();
    let transport = Arc::new(FakeTransport::replying(200, &body).slow(Duration::from_millis(200)));
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        cache.get_detached(Arc::clone(&transport) as Arc<dyn Transport>),
    )
    .await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(*stored.lock().unwrap(), ["rt-2-rotated"]);
    let token = cache
        .get_detached(Arc::clone(&transport) as Arc<dyn Transport>)
        .await
        .unwrap();
    assert_eq!(token.value.as_str(), "at-0");
    assert_eq!(transport.calls(), 1);
}

#[test]
fn get_is_send_for_the_proxys_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = TokenCache::new(grant());
    let transport = numbered(60);
    assert_send(&cache.get(&transport));
}
