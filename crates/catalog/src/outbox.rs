//! Notifications waiting to be delivered: one row per notice and sink. A notice's key says
//! what it is about once (`released:host@1.2.0`, `deadline-3d:goobi:host@1.2.0`), so a
//! cycle can queue the same notice every time it sees the condition and it is still sent
//! once; queueing records an audit event in the same transaction, delivery does not (it
//! is retried, and its attempts are kept on the row).

use serde::Serialize;

use crate::audit::append_in;
use crate::store::{DbError, Row, args};
use crate::{AuditEvent, Catalog, NewEvent, Result, rows};

/// A notice to queue for each of `sinks`.
#[derive(Debug, Clone)]
pub struct NewNotice<'a> {
    /// What it is about, once.
    pub key: &'a str,
    /// `build.failed`, `version.released`, `deadline.soon`, `deadline.passed`, `approval.waiting`.
    pub event: &'a str,
    /// Its audit subject.
    pub subject: &'a str,
    /// One line for people.
    pub text: &'a str,
    /// Everything else (never secrets).
    pub data: &'a serde_json::Value,
    /// RFC 3339.
    pub at: &'a str,
}

/// One notice for one sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The notice's key.
    pub key: String,
    /// The sink's name (a webhook's).
    pub sink: String,
    /// Its event.
    pub event: String,
    /// Its subject.
    pub subject: String,
    /// Its text.
    pub text: String,
    /// Its data.
    pub data: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// Tries so far.
    pub attempts: i64,
    /// RFC 3339: not tried again before this.
    pub next_attempt_at: String,
    /// RFC 3339, once delivered.
    pub sent_at: Option<String>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "key, sink, event, subject, text, data, created_at, attempts, next_attempt_at, sent_at, last_error";

fn delivery(r: &Row) -> std::result::Result<Delivery, DbError> {
    Ok(Delivery {
        key: r.get(0)?,
        sink: r.get(1)?,
        event: r.get(2)?,
        subject: r.get(3)?,
        text: r.get(4)?,
        data: serde_json::from_str(&r.get::<String>(5)?).unwrap_or(serde_json::Value::Null),
        created_at: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        sent_at: r.get(9)?,
        last_error: r.get(10)?,
    })
}

impl Catalog {
    /// Queues `n` for each sink that does not have it yet, and appends `ev` when any row
    /// was new. Returns the event, or `None` when every sink had it already.
    pub fn queue_notice(&mut self, n: &NewNotice<'_>, sinks: &[&str], ev: &NewEvent<'_>) -> Result<Option<AuditEvent>> {
        self.write(|tx| {
            let mut added = 0;
            for sink in sinks {
                added += tx.execute(
                    "INSERT INTO outbox (key, sink, event, subject, text, data, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (key, sink) DO NOTHING",
                    args![n.key, sink, n.event, n.subject, n.text, n.data.to_string(), n.at],
                )?;
            }
            if added == 0 {
                return Ok(None);
            }
            append_in(tx, ev).map(Some)
        })
    }

    /// Deliveries not yet sent, oldest first (the caller skips those not yet due).
    pub fn unsent(&self) -> Result<Vec<Delivery>> {
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY created_at, key, sink"),
            args![],
        )?;
        rows(self, found, delivery)
    }

    /// Every delivery of a notice.
    pub fn deliveries(&self, key: &str) -> Result<Vec<Delivery>> {
        let found = self.all(&format!("SELECT {COLUMNS} FROM outbox WHERE key = ?1 ORDER BY sink"), args![key])?;
        rows(self, found, delivery)
    }

    /// Records one try: sent at `sent_at`, or failed with `error` and due again at `retry_at`.
    pub fn delivery_tried(
        &mut self,
        key: &str,
        sink: &str,
        result: std::result::Result<&str, (&str, &str)>,
    ) -> Result<()> {
        match result {
            Ok(sent_at) => self.exec(
                "UPDATE outbox SET attempts = attempts + 1, sent_at = ?3, last_error = NULL WHERE key = ?1 AND sink = ?2",
                args![key, sink, sent_at],
            ),
            Err((error, retry_at)) => self.exec(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4 WHERE key = ?1 AND sink = ?2",
                args![key, sink, error, retry_at],
            ),
        }?;
        Ok(())
    }

    /// Counts of deliveries sent and waiting (for `/metrics`).
    pub fn outbox_counts(&self) -> Result<(i64, i64)> {
        let row = self.one("SELECT COUNT(sent_at), COUNT(*) - COUNT(sent_at) FROM outbox", args![])?;
        row.map_or(Ok((0, 0)), |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::catalog;

    #[test]
    fn a_notice_is_queued_once_per_sink_and_its_tries_are_kept() {
        let (_d, mut c) = catalog();
        let data = serde_json::json!({"version": "1.2.0"});
        let n = NewNotice {
            key: "released:host@1.2.0",
            event: "version.released",
            subject: "host@1.2.0",
            text: "host 1.2.0 released",
            data: &data,
            at: "2027-01-01T00:00:00Z",
        };
        let ev = NewEvent {
            time: n.at,
            actor: "test",
            kind: "notice.queued",
            subject: n.subject,
            reason: n.text,
            data: &data,
            opens: false,
            closes: None,
        };
        assert!(c.queue_notice(&n, &["ops", "team"], &ev).unwrap().is_some());
        // The next cycle sees the same release: nothing new, no second event.
        assert!(c.queue_notice(&n, &["ops", "team"], &ev).unwrap().is_none());
        assert_eq!(c.event_count().unwrap(), 1);
        c.delivery_tried(n.key, "ops", Err(("HTTP 500", "2027-01-01T00:01:00Z"))).unwrap();
        c.delivery_tried(n.key, "team", Ok("2027-01-01T00:00:01Z")).unwrap();
        let unsent = c.unsent().unwrap();
        assert_eq!(unsent.len(), 1);
        assert_eq!(
            (unsent[0].sink.as_str(), unsent[0].attempts, unsent[0].last_error.as_deref()),
            ("ops", 1, Some("HTTP 500"))
        );
        assert_eq!(unsent[0].next_attempt_at, "2027-01-01T00:01:00Z");
        assert_eq!(c.outbox_counts().unwrap(), (1, 1));
    }
}
