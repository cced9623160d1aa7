//! The dashboard: the report as pages, served by `amictl serve`. Server-rendered HTML (no
//! build step, nothing fetched from elsewhere), one small script that refreshes the cycle
//! status. Compliance per consumer with deadlines, image ages, advisories, pending
//! approvals with approve and deny, and the audit trail of one version.
//!
//! Approving is a form POST with the dashboard session (sign in with the server's token);
//! the decision is the engine's, recorded with the name given at sign-in.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use engine::{Decision, views};
use serde::Deserialize;
use serde_json::Value;

use super::Server;
use super::api::{advisories_of, decide_as, decider, fleet_of};
use super::auth::{self, COOKIE, Caller};
use crate::render::html::esc;

type S = State<Arc<Server>>;

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/", get(overview))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}/{verb}", post(decide))
        .route("/trail", get(trail))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:.5rem 0 1.5rem}\
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}th{background:#f3f3f3}.bad{color:#b00}.ok{color:#070}\
nav a{margin-right:1rem}form.inline{display:inline}code{font-size:90%}";

fn page(title: &str, caller: &Caller, body: &str) -> Html<String> {
    let who = match caller {
        Caller::Session(name) => format!(
            "signed in as {} <form class=inline method=post action=/logout><button id=logout>sign out</button></form>",
            esc(name)
        ),
        _ => "<a id=signin href=/login>sign in</a>".into(),
    };
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} — amictl</title><style>{STYLE}</style></head>\
         <body><nav><a href=/>overview</a><a href=/approvals>approvals</a><a href=/trail>audit</a><span>{who}</span></nav>\
         <h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

/// Reads on a blocking thread; a page when the caller may read.
async fn render(
    s: Arc<Server>,
    headers: &HeaderMap,
    title: &'static str,
    f: impl FnOnce(&Server, &Caller) -> anyhow::Result<String> + Send + 'static,
) -> Response {
    let caller = s.auth.caller(headers);
    if !s.auth.may_read_from(&caller, headers) {
        return Redirect::to("/login").into_response();
    }
    let c = caller.clone();
    match tokio::task::spawn_blocking(move || f(&s, &c)).await {
        Ok(Ok(body)) => page(title, &caller, &body).into_response(),
        Ok(Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, page("error", &caller, &esc(&format!("{e:#}")))).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn approvals_table(s: &Server, caller: &Caller, only_pending: bool) -> anyhow::Result<String> {
    let status = if only_pending { Some(catalog::ApprovalStatus::Pending) } else { None };
    let list = s.read(|c| Ok(c.approvals(status)?))?;
    if list.is_empty() {
        return Ok("<p id=no-approvals>Nothing waits for approval.</p>".into());
    }
    let may = s.auth.may_change(caller);
    let mut out = String::from(
        "<table id=approvals><tr><th>id</th><th>action</th><th>subject</th><th>why</th><th>status</th><th>expires</th><th></th></tr>",
    );
    for a in list {
        let buttons = if a.status == catalog::ApprovalStatus::Pending && may {
            format!(
                "<form class=inline method=post action=/approvals/{id}/approve><button id=approve-{id}>approve</button></form> \
                 <form class=inline method=post action=/approvals/{id}/deny><button id=deny-{id}>deny</button></form>",
                id = esc(&a.id)
            )
        } else if a.status == catalog::ApprovalStatus::Pending {
            "<a href=/login>sign in to decide</a>".into()
        } else {
            esc(&a.decided_by.clone().unwrap_or_default())
        };
        out.push_str(&format!(
            "<tr class=approval data-id={id}><td><code>{id}</code></td><td>{}</td><td><a href=\"/trail?subject={q}\">{s}</a></td><td>{}</td><td class=status>{}</td><td>{}</td><td>{buttons}</td></tr>",
            esc(&a.action),
            esc(&a.reasons),
            esc(a.status.as_str()),
            esc(&a.expires_at),
            id = esc(&a.id),
            s = esc(&a.subject),
            q = query(&a.subject),
        ));
    }
    out.push_str("</table>");
    Ok(out)
}

async fn overview(State(s): S, headers: HeaderMap) -> Response {
    render(s, &headers, "Base images", |s, caller| {
        let now = s.now();
        let st = s.status();
        let mut out = String::new();
        let running = match &st.running {
            Some((trigger, since)) => format!("a {} cycle is running since {}", esc(trigger), esc(since)),
            None => "idle".into(),
        };
        let last = st
            .last_cycle
            .as_ref()
            .map(|c| format!("{} cycle at {}: {}", esc(&c.trigger), esc(&c.finished), if c.ok { "<span class=ok>ok</span>" } else { "<span class=bad>failed</span>" }))
            .unwrap_or_else(|| "none yet".into());
        out.push_str(&format!(
            "<p>Cycle: <span id=cycle>{running}</span>. Last: <span id=last-cycle>{last}</span>. Next: {}. Watch: next {}.</p>",
            esc(st.next_cycle.as_deref().unwrap_or("on demand")),
            esc(st.next_watch.as_deref().unwrap_or("-"))
        ));
        out.push_str("<h2>Waiting for approval</h2>");
        out.push_str(&approvals_table(s, caller, true)?);
        out.push_str("<h2>Consumers</h2><table id=consumers><tr><th>consumer</th><th>image</th><th>hosts</th><th>current</th><th>behind (within SLA)</th><th>overdue</th><th>next deadline</th><th>state</th></tr>");
        let fleet = fleet_of(s)?;
        for c in fleet["consumers"].as_array().into_iter().flatten() {
            let sm = &c["summary"];
            let state = if let Some(why) = sm["unknown"].as_str() {
                format!("<span class=bad>unknown: {}</span>", esc(why))
            } else if sm["overdue"].as_u64().unwrap_or(0) > 0 {
                "<span class=bad>overdue</span>".into()
            } else {
                "<span class=ok>compliant</span>".into()
            };
            out.push_str(&format!(
                "<tr class=consumer><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
                esc(c["consumer"].as_str().unwrap_or("")),
                esc(c["image"].as_str().unwrap_or("")),
                sm["total"],
                sm["current"],
                sm["within_sla"],
                sm["overdue"],
                esc(sm["next_deadline"].as_str().unwrap_or("-")),
            ));
        }
        out.push_str("</table><h2>Image lines</h2><table id=images><tr><th>line</th><th>newest</th><th>age</th><th>due in</th><th>available</th></tr>");
        for l in s.read(|c| Ok(views::lines(&s.cfg, c, now)?))? {
            let newest = match &l.newest {
                Some(v) => format!("<a href=\"/trail?subject={}\">{}</a>", query(&format!("{}@{v}", l.image)), esc(v)),
                None => "never built".into(),
            };
            out.push_str(&format!(
                "<tr class=line><td>{}</td><td>{newest}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.image),
                l.age_days.map(|d| format!("{d}d")).unwrap_or_else(|| "-".into()),
                l.due_in_days.map(|d| format!("{d}d")).unwrap_or_else(|| "-".into()),
                l.available
            ));
        }
        out.push_str("</table><h2>Advisories</h2>");
        let advisories = advisories_of(s)?;
        let rows: Vec<&Value> = advisories.as_array().into_iter().flatten().collect();
        if rows.is_empty() {
            out.push_str("<p>No line has an advisory feed, or none was read yet.</p>");
        } else {
            out.push_str("<table id=advisories><tr><th>line</th><th>version</th><th>missing fixes</th><th>feed</th></tr>");
            for a in rows {
                let n = a["findings"].as_array().map_or(0, Vec::len);
                let stale = a["stale"].as_str().map(|w| format!(" <span class=bad>stale: {}</span>", esc(w))).unwrap_or_default();
                out.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{n}</td><td>{}{stale}</td></tr>",
                    esc(a["image"].as_str().unwrap_or("")),
                    esc(a["version"].as_str().unwrap_or("")),
                    esc(a["feed"].as_str().unwrap_or(""))
                ));
            }
            out.push_str("</table>");
        }
        // Live: the cycle line follows the scheduler without reloading the page.
        out.push_str(
            "<script>setInterval(async()=>{try{const s=await (await fetch('/api/status')).json();\
             document.getElementById('cycle').textContent=s.running?('a '+s.running.trigger+' cycle is running since '+s.running.since):'idle';\
             if(s.last_cycle)document.getElementById('last-cycle').textContent=s.last_cycle.trigger+' cycle at '+s.last_cycle.finished+': '+(s.last_cycle.ok?'ok':'failed');}catch(e){}},3000)</script>",
        );
        Ok(out)
    })
    .await
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    error: Option<String>,
}

async fn approvals(State(s): S, headers: HeaderMap, Query(q): Query<Done>) -> Response {
    render(s, &headers, "Approvals", move |s, caller| {
        let mut out = String::new();
        if let Some(d) = &q.done {
            out.push_str(&format!("<p id=done class=ok>{}</p>", esc(d)));
        }
        if let Some(e) = &q.error {
            out.push_str(&format!("<p id=error class=bad>{}</p>", esc(e)));
        }
        out.push_str(&approvals_table(s, caller, false)?);
        Ok(out)
    })
    .await
}

async fn decide(State(s): S, headers: HeaderMap, Path((id, verb)): Path<(String, String)>) -> Response {
    let caller = s.auth.caller(&headers);
    if !s.auth.may_change_from(&caller, &headers) {
        return Redirect::to("/login").into_response();
    }
    let decision = match verb.as_str() {
        "approve" => Decision::Approve,
        "deny" => Decision::Deny,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let by = decider(&caller, None);
    let to = match decide_as(s, id.clone(), decision, by).await {
        Ok(_) => format!("/approvals?done={}", urlencode(&format!("{id} {verb}d"))),
        Err((_, why)) => format!("/approvals?error={}", urlencode(&why)),
    };
    Redirect::to(&to).into_response()
}

#[derive(Deserialize)]
struct TrailQuery {
    subject: Option<String>,
}

async fn trail(State(s): S, headers: HeaderMap, Query(q): Query<TrailQuery>) -> Response {
    render(s, &headers, "Audit trail", move |s, _| {
        let subject = q.subject.filter(|x| !x.is_empty());
        let mut out = format!(
            "<form method=get action=/trail><input name=subject placeholder=\"image@version or consumer:name\" value=\"{}\"> <button>show</button></form>",
            esc(subject.as_deref().unwrap_or(""))
        );
        // Newest last; the last 500 when no subject narrows it (read as one page).
        let after = if subject.is_none() { s.read(|c| Ok(c.event_count()?))?.saturating_sub(500) } else { 0 };
        let events = s.read(|c| Ok(c.events_page(subject.as_deref(), after, 100_000)?))?;
        out.push_str("<table id=trail><tr><th>#</th><th>time</th><th>kind</th><th>subject</th><th>why</th><th>who</th></tr>");
        for e in &events {
            out.push_str(&format!(
                "<tr class=event><td>{}</td><td>{}</td><td class=kind>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.seq,
                esc(&e.time),
                esc(&e.kind),
                esc(&e.subject),
                esc(&e.reason),
                esc(&e.actor)
            ));
        }
        out.push_str("</table>");
        Ok(out)
    })
    .await
}

async fn login_page(State(s): S, headers: HeaderMap) -> Response {
    let caller = s.auth.caller(&headers);
    let body = if s.auth.has_token() {
        "<form method=post action=/login><p><label>Your name <input id=name name=name required maxlength=64></label></p>\
         <p><label>Token <input id=token name=token type=password required></label></p><p><button id=login>sign in</button></p></form>"
    } else {
        "<p>This server has no <code>[serve] token</code>: nothing can be changed through it.</p>"
    };
    page("Sign in", &caller, body).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    token: String,
}

async fn login(State(s): S, Form(f): Form<LoginForm>) -> Response {
    let name = f.name.trim();
    if !crate::commands::approvals::valid_name(name) {
        return (StatusCode::BAD_REQUEST, "a name of 1 to 64 printable characters").into_response();
    }
    match s.auth.sign_in(&f.token, name) {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                        auth::SESSION_TTL.as_secs()
                    ),
                ),
                (header::LOCATION, "/".to_string()),
            ],
        )
            .into_response(),
        Err(true) => (
            StatusCode::TOO_MANY_REQUESTS,
            page(
                "Sign in",
                &Caller::Anonymous,
                "<p id=error class=bad>Too many wrong tokens: try again in a minute.</p>",
            ),
        )
            .into_response(),
        Err(false) => {
            (StatusCode::UNAUTHORIZED, page("Sign in", &Caller::Anonymous, "<p id=error class=bad>Wrong token.</p>"))
                .into_response()
        }
    }
}

async fn logout(State(s): S, headers: HeaderMap) -> Response {
    s.auth.sign_out(&headers);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `s` as a query value: every byte but the unreserved ones (and `@`, which subjects
/// carry) percent-encoded, so a name with `&`, `#` or a space still links to itself.
fn query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_subject_links_to_itself_whatever_it_holds() {
        assert_eq!(super::query("host@2026.12.02.1"), "host@2026.12.02.1");
        assert_eq!(super::query("a&b #c/é"), "a%26b%20%23c%2F%C3%A9");
    }
}
