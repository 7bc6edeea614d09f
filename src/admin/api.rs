//! The admin API's routes. Every answer is JSON (but `/metrics`, the Prometheus text
//! format, and the live feed, server-sent events); an error is
//! `{"error": CODE, "reason": "…"}` with its status.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Admin;
use super::answer::{AdminBody, error, full, json_status, with_type};
use super::dashboard;
use super::metrics::{self, Gauges};
use super::rules::{self, List, WriteError};
use crate::proxy::approvals::Answer;
use crate::secrets::kind::Kind;

/// Flows `/api/flows` returns without `?limit=`.
const DEFAULT_LIMIT: usize = 100;
/// Largest body `/api/rules` reads.
const MAX_RULE_BODY: usize = 4096;
/// A comment line the live feed sends when nothing happened for this long, so proxies
/// and browsers keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Answers one admin request.
pub async fn handle(admin: Arc<Admin>, req: Request<hyper::body::Incoming>) -> Response<AdminBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => json_ok(&json!({"status": "ok"})),
        (Method::GET, "/readyz") => readyz(&admin),
        (Method::GET, "/metrics") => metrics(&admin),
        (Method::GET, "/api/flows") => flows(&admin, &query),
        (Method::GET, "/api/flows/stream") => stream(&admin),
        (Method::GET, "/api/policy") => policy(&admin),
        (Method::GET, "/api/secrets") => secrets(&admin),
        (Method::POST, "/api/reload") => reload(&admin).await,
        (Method::POST, "/api/rules") => add_rule(&admin, req).await,
        (Method::GET, "/api/approvals") => approvals(&admin),
        (Method::POST, p) if p.starts_with("/api/approvals/") => answer(&admin, req).await,
        (Method::GET, "/") => dashboard::page(),
        (Method::GET, asset) if asset.starts_with("/assets/") => {
            dashboard::asset(&asset["/assets/".len()..])
        }
        (
            _,
            "/" | "/healthz" | "/readyz" | "/metrics" | "/api/flows" | "/api/flows/stream"
            | "/api/policy" | "/api/secrets" | "/api/reload" | "/api/rules" | "/api/approvals",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "no route {path}; the routes: GET / (the dashboard), /healthz, /readyz, /metrics, /api/flows?limit=N, /api/flows/stream, /api/policy, /api/secrets, /api/approvals; POST /api/reload, /api/rules, /api/approvals/ID"
            ),
        ),
    }
}

fn json_ok(value: &Value) -> Response<AdminBody> {
    json_status(StatusCode::OK, value)
}

fn readyz(admin: &Admin) -> Response<AdminBody> {
    let generation = admin.proxy.current();
    json_ok(&json!({
        "ready": true,
        "listen": admin.listen.to_string(),
        "secrets": generation.secrets.iter().count(),
        "reloads": *admin.proxy.reloads.borrow(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

fn metrics(admin: &Admin) -> Response<AdminBody> {
    if !admin.proxy.stats.on() {
        return error(
            StatusCode::NOT_FOUND,
            "metrics-off",
            "keygate counts nothing for /metrics: admin.metrics is false in keygate.yaml; remove it (or set it to true) and restart".into(),
        );
    }
    let generation = admin.proxy.current();
    let max = generation.config.limits.max_connections;
    let gauges = Gauges {
        secrets: generation.secrets.iter().count(),
        reloads: *admin.proxy.reloads.borrow(),
        open_connections: max.saturating_sub(admin.proxy.connections.available_permits()),
        started: Some(admin.observed.started),
        leaf_cache: admin
            .proxy
            .server_configs
            .as_ref()
            .map_or((0, 0), |c| c.cache_stats()),
        added: Some((
            admin.proxy.stats.request_head.snapshot(),
            admin.proxy.stats.response_head.snapshot(),
        )),
        counts: admin.proxy.stats.counts(),
    };
    let text = metrics::render(&admin.observed.counters(), &gauges);
    with_type(
        Response::new(full(text)),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn flows(admin: &Admin, query: &str) -> Response<AdminBody> {
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n.min(super::observe::RING),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-limit",
                    format!(
                        "limit must be a whole number from 1 to {}, not {text:?}",
                        super::observe::RING
                    ),
                );
            }
        },
    };
    let flows: Vec<Value> = admin
        .observed
        .recent(limit)
        .iter()
        .filter_map(|f| serde_json::to_value(&**f).ok())
        .collect();
    json_ok(&json!({ "flows": flows }))
}

/// The live feed: each flow as an SSE `data:` line (JSON), with its id.
fn stream(admin: &Admin) -> Response<AdminBody> {
    let mut live = admin.observed.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let shutdown = admin.proxy.shutdown.clone();
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b": keygate flows\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = shutdown.cancelled() => return,
            };
            let chunk = match next {
                Ok(flow) => match serde_json::to_string(&*flow) {
                    Ok(text) => format!("id: {}\ndata: {text}\n\n", flow.id),
                    Err(_) => continue,
                },
                Err(RecvError::Lagged(missed)) => format!(": missed {missed} flows\n\n"),
                Err(RecvError::Closed) => return,
            };
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    with_type(Response::new(ChannelBody(rx).boxed()), "text/event-stream")
}

/// A body fed by a channel (the live feed).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn policy(admin: &Admin) -> Response<AdminBody> {
    let generation = admin.proxy.current();
    let policy = &generation.policy;
    let list = |patterns: &[crate::policy::HostPattern]| -> Vec<String> {
        patterns.iter().map(ToString::to_string).collect()
    };
    json_ok(&json!({
        "mode": policy.mode.as_str(),
        "allow": list(&policy.allow),
        "deny": list(&policy.deny),
        "secret_hosts": list(&policy.secret_hosts),
        "mode_patterns": list(policy.mode_patterns()),
        "intercept": format!("{:?}", generation.config.intercept).to_lowercase(),
        "private_addresses": format!("{:?}", policy.private_addresses).to_lowercase(),
        "config_file": admin.config_file.display().to_string(),
    }))
}

fn secrets(admin: &Admin) -> Response<AdminBody> {
    let generation = admin.proxy.current();
    let uses = admin.observed.secret_uses();
    let expiries = admin
        .tokens_file
        .as_deref()
        .map(crate::credentials::expiry::read)
        .unwrap_or_default();
    let list: Vec<Value> = generation
        .secrets
        .iter()
        .map(|b| {
            let used = uses.get(&b.name).cloned().unwrap_or_default();
            let mut entry = json!({
                "name": b.name,
                "kind": b.kind.name().as_str(),
                "hosts": b.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "stored": b.real.is_some(),
                "uses": used.uses,
                "last_use": used.last_use,
                "tripwires": used.tripwires,
            });
            if matches!(
                b.kind,
                Kind::Oauth2(_) | Kind::GithubApp(_) | Kind::Google(_)
            ) {
                entry["token_expires_at"] = json!(expiries.get(&b.name).map(|e| &e.expires_at));
            }
            entry
        })
        .collect();
    json_ok(&json!({ "secrets": list }))
}

async fn reload(admin: &Admin) -> Response<AdminBody> {
    match (admin.reload)().await {
        Ok(message) => json_ok(&json!({"reloaded": true, "message": message})),
        Err(reason) => error(StatusCode::INTERNAL_SERVER_ERROR, "reload-failed", reason),
    }
}

async fn add_rule(admin: &Admin, req: Request<hyper::body::Incoming>) -> Response<AdminBody> {
    let bad = |reason: String| error(StatusCode::BAD_REQUEST, "bad-rule", reason);
    let body = match Limited::new(req.into_body(), MAX_RULE_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return bad(format!(
                "the body is unreadable or over {MAX_RULE_BODY} bytes"
            ));
        }
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
        return bad(r#"send JSON: {"allow": "PATTERN"} or {"deny": "PATTERN"}"#.into());
    };
    let (list, pattern) = match (map.get("allow"), map.get("deny"), map.len()) {
        (Some(Value::String(p)), None, 1) => (List::Allow, p.clone()),
        (None, Some(Value::String(p)), 1) => (List::Deny, p.clone()),
        _ => {
            return bad(
                r#"send exactly one of {"allow": "PATTERN"} or {"deny": "PATTERN"}"#.into(),
            );
        }
    };
    match apply_rule(admin, list, &pattern).await {
        Ok(None) => json_ok(&json!({"changed": false, "list": list.key(), "pattern": pattern})),
        Ok(Some(message)) => json_ok(&json!({
            "changed": true,
            "list": list.key(),
            "pattern": pattern,
            "reloaded": message,
        })),
        Err(answer) => answer,
    }
}

/// Adds `pattern` to `list` in keygate.yaml and reloads: `Ok(None)` when it was already
/// there, `Ok(Some(reload message))` when added; the file goes back as it was if the
/// reload fails.
async fn apply_rule(
    admin: &Admin,
    list: List,
    pattern: &str,
) -> Result<Option<String>, Response<AdminBody>> {
    let _edit = admin.rules_lock.lock().await;
    let path = admin.config_file.clone();
    let before = match rules::write(&path, list, pattern) {
        Ok(Some(before)) => before,
        Ok(None) => return Ok(None),
        Err(WriteError::Bad(reason)) => {
            return Err(error(StatusCode::BAD_REQUEST, "bad-rule", reason));
        }
        Err(WriteError::Unreadable(reason)) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config-unreadable",
                reason,
            ));
        }
        Err(WriteError::Unwritable(reason)) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config-unwritable",
                reason,
            ));
        }
    };
    match (admin.reload)().await {
        Ok(message) => {
            tracing::info!(
                "admin: added {pattern} to network.{} in {}",
                list.key(),
                path.display()
            );
            Ok(Some(message))
        }
        Err(reason) => {
            // The file goes back as it was: a rule that cannot load is not kept.
            let _ = crate::home::write_atomic(&path, before.as_bytes(), crate::home::FILE_MODE);
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reload-failed",
                format!("{reason}; keygate.yaml was left as it was"),
            ))
        }
    }
}

fn approvals(admin: &Admin) -> Response<AdminBody> {
    let generation = admin.proxy.current();
    json_ok(&json!({
        "ask": generation.config.ask,
        "ask_timeout_secs": generation.config.ask_timeout.as_secs(),
        "pending": admin.proxy.approvals.pending(),
    }))
}

/// `POST /api/approvals/ID` with `{"decision": "once" | "always" | "deny"}`.
async fn answer(admin: &Admin, req: Request<hyper::body::Incoming>) -> Response<AdminBody> {
    let bad = |reason: String| error(StatusCode::BAD_REQUEST, "bad-decision", reason);
    let Some(id) = req
        .uri()
        .path()
        .strip_prefix("/api/approvals/")
        .and_then(|id| id.parse::<u64>().ok())
    else {
        return bad("the path is /api/approvals/ID, ID a number from GET /api/approvals".into());
    };
    let body = match Limited::new(req.into_body(), MAX_RULE_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return bad(format!(
                "the body is unreadable or over {MAX_RULE_BODY} bytes"
            ));
        }
    };
    let decision = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("decision")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let answer = match decision.as_deref() {
        Some("once") => Answer::Once,
        Some("always") => Answer::Always,
        Some("deny") => Answer::Deny,
        _ => return bad(r#"send {"decision": "once" | "always" | "deny"}"#.into()),
    };
    let gone = || {
        error(
            StatusCode::NOT_FOUND,
            "not-held",
            format!("no request {id} is waiting (answered, timed out, or its client left)"),
        )
    };
    if answer == Answer::Always {
        let Some(pattern) = admin.proxy.approvals.allow_pattern(id) else {
            return gone();
        };
        if let Err(answer) = apply_rule(admin, List::Allow, &pattern).await {
            return answer;
        }
    }
    match admin.proxy.approvals.answer(id, answer, "the admin API") {
        true => json_ok(&json!({"answered": true, "id": id})),
        false => gone(),
    }
}
