//! The HTTP API: JSON under `/api`, `/health`, `/ready`, `/metrics`, `/openapi.json`, and
//! the dashboard's pages (see [`super::dashboard`]). Every route is in [`ROUTES`], which
//! the OpenAPI document is checked against.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::advisories::{self, Mode, Subject};
use engine::{Decision, EngineError, views};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Server;
use super::auth::Caller;
use super::dashboard;

/// The OpenAPI 3.1 document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every JSON route (method, path as OpenAPI writes it); the test below holds the router,
/// this list and the document together.
#[cfg(test)]
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/api/status"),
    ("get", "/api/plan"),
    ("get", "/api/images"),
    ("get", "/api/images/{image}/versions"),
    ("get", "/api/fleet"),
    ("get", "/api/consumers"),
    ("get", "/api/advisories"),
    ("get", "/api/approvals"),
    ("post", "/api/approvals/{id}/approve"),
    ("post", "/api/approvals/{id}/deny"),
    ("post", "/api/cycles"),
    ("get", "/api/audit"),
];

type S = State<Arc<Server>>;

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/api/status", get(status))
        .route("/api/plan", get(plan))
        .route("/api/images", get(images))
        .route("/api/images/{image}/versions", get(versions))
        .route("/api/fleet", get(fleet))
        .route("/api/consumers", get(consumers))
        .route("/api/advisories", get(advisories_view))
        .route("/api/approvals", get(approvals))
        .route("/api/approvals/{id}/approve", post(approve))
        .route("/api/approvals/{id}/deny", post(deny))
        .route("/api/cycles", post(cycles))
        .route("/api/audit", get(audit))
        .merge(dashboard::routes())
        .with_state(server)
}

/// A JSON error with its status.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// Runs `f` on a blocking thread (state reads), answering its value as JSON, when the
/// caller may read.
pub(super) async fn read_json(
    server: Arc<Server>,
    headers: &HeaderMap,
    f: impl FnOnce(&Server) -> Result<Value> + Send + 'static,
) -> Response {
    server.counters.requests.fetch_add(1, Ordering::Relaxed);
    let caller = server.auth.caller(headers);
    if !server.auth.may_read_from(&caller, headers) {
        return error(StatusCode::UNAUTHORIZED, "this server needs the bearer token for reads");
    }
    match tokio::task::spawn_blocking(move || f(&server)).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the request failed: {e}")),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(s): S) -> Response {
    let server = s.clone();
    let check = tokio::task::spawn_blocking(move || server.read(|c| Ok(c.event_count()?))).await;
    let status = s.status();
    match check {
        Ok(Ok(events)) => axum::Json(json!({
            "ready": true, "events": events, "next_cycle": status.next_cycle, "next_watch": status.next_watch,
            "running": status.running.is_some(),
        }))
        .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "error": format!("{e:#}")})))
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "error": e.to_string()})))
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(s): S, headers: HeaderMap) -> Response {
    s.counters.requests.fetch_add(1, Ordering::Relaxed);
    if !s.auth.may_read_from(&s.auth.caller(&headers), &headers) {
        return error(StatusCode::UNAUTHORIZED, "this server needs the bearer token for reads");
    }
    let server = s.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<String> {
        let now = server.now();
        let report = server.read(|c| Ok(views::report(&server.cfg, c, now)?))?;
        let (sent, waiting) = server.read(|c| Ok(c.outbox_counts()?))?;
        let pending = server.read(|c| Ok(c.approvals(Some(catalog::ApprovalStatus::Pending))?.len()))?;
        let mut out = crate::render::prometheus::prometheus(&report);
        let c = &server.counters;
        let status = server.status();
        let last = status.last_cycle.as_ref().and_then(|c| c.finished.parse::<jiff::Timestamp>().ok());
        for (name, help, kind, value) in [
            (
                "amictl_serve_cycles_total",
                "Cycles run by this server.",
                "counter",
                c.cycles.load(Ordering::Relaxed) as i64,
            ),
            (
                "amictl_serve_cycle_failures_total",
                "Cycles that failed.",
                "counter",
                c.cycles_failed.load(Ordering::Relaxed) as i64,
            ),
            (
                "amictl_serve_watches_total",
                "Advisory watches run.",
                "counter",
                c.watches.load(Ordering::Relaxed) as i64,
            ),
            (
                "amictl_serve_watch_matches_total",
                "Watches that found new fixes.",
                "counter",
                c.watch_matches.load(Ordering::Relaxed) as i64,
            ),
            (
                "amictl_serve_delivery_failures_total",
                "Notice deliveries that failed (retried).",
                "counter",
                c.deliveries_failed.load(Ordering::Relaxed) as i64,
            ),
            (
                "amictl_serve_requests_total",
                "API requests answered.",
                "counter",
                c.requests.load(Ordering::Relaxed) as i64,
            ),
            ("amictl_serve_approvals_pending", "Actions waiting for approval.", "gauge", pending as i64),
            ("amictl_serve_notices_waiting", "Notice deliveries not yet sent.", "gauge", waiting),
            ("amictl_serve_notices_sent", "Notice deliveries sent.", "gauge", sent),
            ("amictl_serve_cycle_running", "1 while a cycle runs.", "gauge", i64::from(status.running.is_some())),
            (
                "amictl_serve_last_cycle_timestamp_seconds",
                "When the last cycle ended.",
                "gauge",
                last.map_or(0, |t| t.as_second()),
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        }
        Ok(out)
    })
    .await;
    match text {
        Ok(Ok(t)) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, |s| {
        let st = s.status();
        Ok(json!({
            "started": s.started.to_string(),
            "now": s.now().to_string(),
            "schedule": s.cfg.serve.schedule,
            "timezone": s.cfg.serve.timezone,
            "watch_interval_seconds": s.schedule.watch_interval(),
            "running": st.running.as_ref().map(|(t, at)| json!({"trigger": t, "since": at})),
            "last_cycle": st.last_cycle.as_ref().map(|c| json!({
                "trigger": c.trigger, "started": c.started, "finished": c.finished, "ok": c.ok, "exit": c.exit, "error": c.error,
            })),
            "next_cycle": st.next_cycle,
            "next_watch": st.next_watch,
            "leading": st.leading,
            "last_watch": st.last_watch,
        }))
    })
    .await
}

async fn plan(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, |s| {
        let st = s.status();
        Ok(match st.last_cycle {
            None => json!({"cycle": null, "plan": null, "actions": [], "held": []}),
            Some(c) => json!({
                "cycle": {"trigger": c.trigger, "started": c.started, "finished": c.finished, "ok": c.ok},
                "plan": c.report.get("plan").cloned().unwrap_or(Value::Null),
                "actions": c.report.get("actions").cloned().unwrap_or(json!([])),
                "held": c.report.get("held").cloned().unwrap_or(json!([])),
            }),
        })
    })
    .await
}

async fn images(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, |s| {
        let now = s.now();
        Ok(serde_json::to_value(s.read(|c| Ok(views::lines(&s.cfg, c, now)?))?)?)
    })
    .await
}

/// One line's versions, as `images --json` gives them.
pub(super) fn versions_of(s: &Server, image: &str) -> Result<Value> {
    s.read(|c| Ok(Value::Array(crate::commands::images::records(c, Some(image))?)))
}

async fn versions(State(s): S, headers: HeaderMap, Path(image): Path<String>) -> Response {
    if !s.cfg.images.contains_key(&image) {
        return error(StatusCode::NOT_FOUND, format!("no image line `{image}`"));
    }
    read_json(s, &headers, move |s| versions_of(s, &image)).await
}

pub(super) fn fleet_of(s: &Server) -> Result<Value> {
    let now = s.now();
    let consumers = s.read(|c| Ok(views::consumers(&s.cfg, c, now)?))?;
    let compliant = consumers.iter().all(|c| c.summary.compliant());
    Ok(json!({"now": now.to_string(), "compliant": compliant, "consumers": consumers}))
}

async fn fleet(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, fleet_of).await
}

async fn consumers(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, |s| {
        let now = s.now();
        let views = s.read(|c| Ok(views::consumers(&s.cfg, c, now)?))?;
        let out: Vec<Value> = s
            .cfg
            .consumers
            .values()
            .map(|c| {
                let summary = views.iter().find(|v| v.consumer == c.name).map(|v| json!(v.summary));
                json!({
                    "consumer": c.name, "account": c.account, "image": c.image, "owner": c.owner,
                    "rollout": c.rollout.name(), "summary": summary,
                })
            })
            .collect();
        Ok(Value::Array(out))
    })
    .await
}

pub(super) fn advisories_of(s: &Server) -> Result<Value> {
    let now = s.now();
    let mut out = Vec::new();
    for image in s.cfg.images.values().filter(|i| i.advisories.is_some()) {
        let Some(subject) = s.read(|c| Ok(Subject::newest(&s.cfg, c, image)?))? else { continue };
        // From the feeds' cached copies: a page view never downloads a feed.
        let Some(checked) = advisories::check(&s.cfg, &subject, None, Mode::Cached, now) else { continue };
        out.push(json!({
            "image": image.name, "version": checked.version.version, "feed": checked.source,
            "stale": checked.stale, "findings": checked.findings,
        }));
    }
    Ok(Value::Array(out))
}

async fn advisories_view(State(s): S, headers: HeaderMap) -> Response {
    read_json(s, &headers, advisories_of).await
}

#[derive(Deserialize)]
struct ApprovalsQuery {
    status: Option<String>,
}

async fn approvals(State(s): S, headers: HeaderMap, Query(q): Query<ApprovalsQuery>) -> Response {
    let status = match q.status.as_deref() {
        None | Some("pending") => Some(catalog::ApprovalStatus::Pending),
        Some("all") => None,
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("status must be pending or all, not {other:?}")),
    };
    read_json(s, &headers, move |s| Ok(serde_json::to_value(s.read(|c| Ok(c.approvals(status)?))?)?)).await
}

#[derive(Deserialize, Default)]
struct DecideBody {
    by: Option<String>,
}

/// Who a decision is recorded as: the session's name, or the name a token holder gives.
pub(super) fn decider(caller: &Caller, given: Option<&str>) -> String {
    let given = given.map(str::trim).filter(|g| crate::commands::approvals::valid_name(g));
    match caller {
        Caller::Session(name) => format!("{name} (dashboard)"),
        _ => format!("{} (API token)", given.unwrap_or("unnamed")),
    }
}

/// Approves or denies through the engine, then starts a cycle for an approval.
pub(super) async fn decide_as(
    s: Arc<Server>,
    id: String,
    decision: Decision,
    by: String,
) -> Result<Value, (StatusCode, String)> {
    let server = s.clone();
    let result = tokio::task::spawn_blocking(move || server.engine.decide(&id, decision, &by))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match result {
        Ok(a) => {
            if decision == Decision::Approve {
                s.request_cycle("approval");
            }
            Ok(json!(a))
        }
        Err(EngineError::Refused(why)) => {
            let code = if why.starts_with("no approval") { StatusCode::NOT_FOUND } else { StatusCode::CONFLICT };
            Err((code, why))
        }
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.text())),
    }
}

async fn decide_api(
    s: Arc<Server>,
    headers: HeaderMap,
    id: String,
    body: Option<axum::Json<DecideBody>>,
    d: Decision,
) -> Response {
    let caller = s.auth.caller(&headers);
    if !s.auth.may_change_from(&caller, &headers) {
        return error(StatusCode::UNAUTHORIZED, "approving needs `Authorization: Bearer <token>` ([serve] token)");
    }
    let by = decider(&caller, body.as_ref().and_then(|b| b.by.as_deref()));
    match decide_as(s, id, d, by).await {
        Ok(v) => axum::Json(v).into_response(),
        Err((code, why)) => error(code, why),
    }
}

async fn approve(
    State(s): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<axum::Json<DecideBody>>,
) -> Response {
    decide_api(s, headers, id, body, Decision::Approve).await
}

async fn deny(
    State(s): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<axum::Json<DecideBody>>,
) -> Response {
    decide_api(s, headers, id, body, Decision::Deny).await
}

async fn cycles(State(s): S, headers: HeaderMap) -> Response {
    if !s.auth.may_change_from(&s.auth.caller(&headers), &headers) {
        return error(StatusCode::UNAUTHORIZED, "starting a cycle needs `Authorization: Bearer <token>`");
    }
    s.request_cycle("api");
    (StatusCode::ACCEPTED, axum::Json(json!({"requested": true, "running": s.status().running.is_some()})))
        .into_response()
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<usize>,
    subject: Option<String>,
}

/// The most events one page holds.
const AUDIT_PAGE_MAX: usize = 1000;

async fn audit(State(s): S, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, AUDIT_PAGE_MAX);
    let after = q.after.unwrap_or(0);
    read_json(s, &headers, move |s| {
        let page = s.read(|c| Ok(c.events_page(q.subject.as_deref(), after, limit + 1)?))?;
        let more = page.len() > limit;
        let page: Vec<_> = page.into_iter().take(limit).collect();
        let next = if more { page.last().map(|e| e.seq) } else { None };
        Ok(json!({"events": page, "next_after": next}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else_is() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
