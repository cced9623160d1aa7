//! Delivering queued notices to webhooks: a Slack-compatible JSON body (`text`, and the
//! same as one `blocks` section; anything Slack does not know it ignores) with amictl's
//! structured fields beside it. Each try is bounded (10 s); a failed one is tried again
//! with a doubling delay (30 s … 1 h) and its error kept on the row. A webhook URL is
//! often a secret (Slack's are), so no error message ever contains it.

use config::Config;
use engine::Engine;
use jiff::Timestamp;
use serde_json::json;
use std::time::Duration;

/// Tries after which a notice is given up (the delays add up to about 18 hours): it stays
/// in the outbox with its last error, and `/metrics` counts it unsent.
pub const MAX_ATTEMPTS: i64 = 24;

/// When a given-up notice is "due": never.
const NEVER: &str = "9999-12-31T23:59:59Z";

/// Tries every delivery that is due; returns how many failed.
pub fn run(engine: &Engine, cfg: &Config, now: Timestamp) -> usize {
    let unsent = engine.catalog().unsent();
    let due = match unsent {
        Ok(d) => d,
        Err(e) => {
            eprintln!("amictl serve: outbox: {e}");
            return 0;
        }
    };
    let mut failed = 0;
    for d in due.into_iter().filter(|d| d.next_attempt_at.parse::<Timestamp>().is_ok_and(|t| t <= now)) {
        let mut give_up = d.attempts + 1 >= MAX_ATTEMPTS;
        let result = match cfg.serve.webhooks.get(&d.sink) {
            None => {
                give_up = true;
                Err(format!("webhook `{}` is no longer in the config", d.sink))
            }
            Some(hook) => match hook.url.resolve() {
                Err(e) => Err(format!("webhook `{}`: {e}", d.sink)),
                Ok(url) => post(&url, &body(&d)).map_err(|e| format!("webhook `{}`: {e}", d.sink)),
            },
        };
        let recorded = match &result {
            // `now`, not the wall clock: in a modelled run, records carry modelled times.
            Ok(()) => engine.catalog().delivery_tried(&d.key, &d.sink, Ok(&now.to_string())),
            Err(why) if give_up => {
                failed += 1;
                let why = format!("given up after {} tries: {why}", d.attempts + 1);
                eprintln!("amictl serve: notice {} not delivered: {why}", d.key);
                engine.catalog().delivery_tried(&d.key, &d.sink, Err((&why, NEVER)))
            }
            Err(why) => {
                failed += 1;
                let delay = 30i64.saturating_mul(1 << d.attempts.clamp(0, 7)).min(3600);
                let retry = now.saturating_add(jiff::SignedDuration::from_secs(delay)).unwrap_or(now).to_string();
                eprintln!("amictl serve: notice {} not delivered ({why}); next try at {retry}", d.key);
                engine.catalog().delivery_tried(&d.key, &d.sink, Err((why, &retry)))
            }
        };
        if let Err(e) = recorded {
            eprintln!("amictl serve: outbox: {e}");
        }
    }
    failed
}

/// The body Slack's incoming webhooks take, with amictl's fields for other receivers.
pub fn body(d: &catalog::Delivery) -> serde_json::Value {
    json!({
        "text": format!("amictl: {}", d.text),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}* — {}", d.event, d.text)}}],
        "event": d.event,
        "subject": d.subject,
        "key": d.key,
        "data": d.data,
        "queued_at": d.created_at,
    })
}

fn post(url: &str, body: &serde_json::Value) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(true)
        .build()
        .into();
    match agent.post(url).header("content-type", "application/json").send(body.to_string()) {
        Ok(_) => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}

/// What went wrong, without the URL.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(c) => format!("HTTP {c}"),
        ureq::Error::Timeout(_) => "timed out after 10 s".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("I/O error ({})", io.kind()),
        ureq::Error::Tls(_) | ureq::Error::TlsRequired => "TLS error".into(),
        _ => "the request failed".into(),
    }
}
