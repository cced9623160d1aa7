//! The audit chain: append-only events, each hashing its predecessor, and the index of
//! intents still waiting for their outcome.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{DbError, Row, Sql, args};
use crate::{Catalog, Result, rows};

/// One recorded event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// RFC 3339.
    pub time: String,
    /// Who ran amictl, where, which version.
    pub actor: String,
    /// What it records (`build.intent` …).
    pub kind: String,
    /// What it is about (`image@version`, `consumer:name`).
    pub subject: String,
    /// Why, for people.
    pub reason: String,
    /// Everything else, as JSON.
    pub data: serde_json::Value,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// RFC 3339.
    pub time: &'a str,
    /// Who.
    pub actor: &'a str,
    /// What it records.
    pub kind: &'a str,
    /// What it is about.
    pub subject: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Everything else; must not hold secrets.
    pub data: &'a serde_json::Value,
    /// An intent: it stays open until an outcome closes it.
    pub opens: bool,
    /// The outcome of the intent with this `seq` (which `data` should name too).
    pub closes: Option<i64>,
}

/// The first event whose stored hash does not match its content or its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at event {seq}: {problem}")]
pub struct ChainBreak {
    /// The event.
    pub seq: i64,
    /// What does not match.
    pub problem: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const COLUMNS: &str = "seq, time, actor, kind, subject, reason, data, prev_hash, hash";

fn event(r: &Row) -> std::result::Result<AuditEvent, DbError> {
    Ok(AuditEvent {
        seq: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        reason: r.get(5)?,
        data: serde_json::from_str(&r.get::<String>(6)?).unwrap_or(serde_json::Value::Null),
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

impl Catalog {
    /// Appends an event to the chain, and opens or closes an intent in the same
    /// transaction, so a crash never leaves the index and the chain disagreeing.
    pub fn append_event(&mut self, ev: &NewEvent<'_>) -> Result<AuditEvent> {
        self.write(|tx| append_in(tx, ev))
    }

    /// At most `limit` events after `after`, in order, filtered as [`Catalog::events`]: one
    /// page of the chain without reading the rest.
    pub fn events_page(&self, subject_prefix: Option<&str>, after: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM audit_events WHERE seq > ?2 AND (CAST(?1 AS TEXT) IS NULL OR subject = ?1 OR subject LIKE ?1 || '@%') ORDER BY seq LIMIT ?3"),
            args![subject_prefix, after, limit],
        )?;
        rows(self, found, event)
    }

    /// Events in order; `subject_prefix` filters (an image name matches its versions).
    pub fn events(&self, subject_prefix: Option<&str>) -> Result<Vec<AuditEvent>> {
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM audit_events WHERE (CAST(?1 AS TEXT) IS NULL OR subject = ?1 OR subject LIKE ?1 || '@%') ORDER BY seq"),
            args![subject_prefix],
        )?;
        rows(self, found, event)
    }

    /// Intents no outcome has closed: what a run that died was doing.
    pub fn open_intents(&self) -> Result<Vec<AuditEvent>> {
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM audit_events WHERE seq IN (SELECT seq FROM open_intents) ORDER BY seq"),
            args![],
        )?;
        rows(self, found, event)
    }

    /// How many events the chain holds.
    pub fn event_count(&self) -> Result<i64> {
        let row = self.one("SELECT COUNT(*) FROM audit_events", args![])?;
        row.map_or(Ok(0), |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// The last event's place and hash: what an anchor records. `None` for an empty chain.
    pub fn head(&self) -> Result<Option<(i64, String)>> {
        let row = self.one("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", args![])?;
        row.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose().map_err(|e| self.err(e))
    }

    /// The hash of event `seq`, if the chain holds it.
    pub fn hash_at(&self, seq: i64) -> Result<Option<String>> {
        let row = self.one("SELECT hash FROM audit_events WHERE seq = ?1", args![seq])?;
        row.map(|r| r.get(0)).transpose().map_err(|e| self.err(e))
    }

    /// Re-hashes the whole chain from the stored bytes. `Ok(n)` = n events verified.
    pub fn verify_chain(&self) -> Result<std::result::Result<usize, ChainBreak>> {
        // In pages, so a long chain is never all in memory.
        const PAGE: i64 = 5000;
        let mut expected_prev = GENESIS.to_string();
        let mut expected_seq = 1;
        let mut n = 0;
        let mut after = 0;
        loop {
            let page = self.all(
                &format!("SELECT {COLUMNS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                args![after, PAGE],
            )?;
            let Some(last) = page.last() else { break };
            after = last.get(0).map_err(|e| self.err(e))?;
            let full = page.len() as i64 == PAGE;
            for r in &page {
                match check_row(r, expected_seq, &expected_prev).map_err(|e| self.err(e))? {
                    Ok(hash) => expected_prev = hash,
                    Err(broken) => return Ok(Err(broken)),
                }
                expected_seq += 1;
                n += 1;
            }
            if !full {
                break;
            }
        }
        Ok(Ok(n))
    }
}

/// Checks one stored row against the chain so far: its hash, or where it breaks.
fn check_row(
    r: &Row,
    expected_seq: i64,
    expected_prev: &str,
) -> std::result::Result<std::result::Result<String, ChainBreak>, DbError> {
    {
        {
            let seq: i64 = r.get(0)?;
            let fields: Vec<String> = (1..9).map(|i| r.get::<String>(i)).collect::<std::result::Result<_, _>>()?;
            let [time, actor, kind, subject, reason, data, prev, hash] =
                <[String; 8]>::try_from(fields).expect("eight columns");
            if seq != expected_seq {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: format!("expected event {expected_seq} here (an event was removed or inserted)"),
                }));
            }
            if prev != expected_prev {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: "its prev_hash does not match the previous event's hash".into(),
                }));
            }
            if event_hash(seq, &time, &actor, &kind, &subject, &reason, &data, &prev) != hash {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: "its content does not match its hash (the row was changed)".into(),
                }));
            }
            Ok(Ok(hash))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn event_hash(
    seq: i64,
    time: &str,
    actor: &str,
    kind: &str,
    subject: &str,
    reason: &str,
    data: &str,
    prev: &str,
) -> String {
    // Length-prefix every field so no two different events serialise to the same bytes.
    let mut h = Sha256::new();
    for field in [&seq.to_string() as &str, time, actor, kind, subject, reason, data, prev] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends `ev` inside an open transaction, so a caller can record a change and the event
/// that explains it atomically.
pub(crate) fn append_in(tx: &mut dyn Sql, ev: &NewEvent<'_>) -> std::result::Result<AuditEvent, DbError> {
    let last: Option<(i64, String)> = tx
        .query_opt("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", args![])?
        .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?)))
        .transpose()?;
    let (seq, prev_hash) = last.map(|(s, h)| (s + 1, h)).unwrap_or((1, GENESIS.to_string()));
    let data_text = ev.data.to_string();
    let hash = event_hash(seq, ev.time, ev.actor, ev.kind, ev.subject, ev.reason, &data_text, &prev_hash);
    tx.execute(
        "INSERT INTO audit_events (seq, time, actor, kind, subject, reason, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![seq, ev.time, ev.actor, ev.kind, ev.subject, ev.reason, data_text, prev_hash, hash],
    )?;
    if ev.opens {
        tx.execute("INSERT INTO open_intents (seq) VALUES (?1)", args![seq])?;
    }
    if let Some(intent) = ev.closes {
        tx.execute("DELETE FROM open_intents WHERE seq = ?1", args![intent])?;
    }
    Ok(AuditEvent {
        seq,
        time: ev.time.into(),
        actor: ev.actor.into(),
        kind: ev.kind.into(),
        subject: ev.subject.into(),
        reason: ev.reason.into(),
        data: ev.data.clone(),
        prev_hash,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::testing::catalog;

    fn note<'a>(kind: &'a str, reason: &'a str, data: &'a serde_json::Value) -> NewEvent<'a> {
        NewEvent {
            time: "2026-11-27T10:00:00Z",
            actor: "amictl",
            kind,
            subject: "host",
            reason,
            data,
            opens: false,
            closes: None,
        }
    }

    #[test]
    fn the_audit_chain_verifies_and_names_a_changed_row() {
        let (d, mut c) = catalog();
        for i in 0..5 {
            let data = serde_json::json!({"i": i});
            c.append_event(&note("decision", &format!("reason {i}"), &data)).unwrap();
        }
        assert_eq!(c.verify_chain().unwrap(), Ok(5));
        assert!(c.exec("UPDATE audit_events SET reason = 'x' WHERE seq = 3", args![]).is_err(), "updates are refused");
        drop(c);
        // Tamper below SQL's guard: drop the trigger the way an attacker with the file could.
        let conn = Connection::open(d.path().join("state.db")).unwrap();
        conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit_events SET data = '{\"i\":99}' WHERE seq = 3;")
            .unwrap();
        drop(conn);
        let c = crate::Catalog::open(&d.path().join("state.db")).unwrap();
        let broken = c.verify_chain().unwrap().unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("changed"));
    }

    #[test]
    fn an_intent_stays_open_until_its_outcome_closes_it() {
        let (_d, mut c) = catalog();
        let data = serde_json::json!({});
        let first = c.append_event(&NewEvent { opens: true, ..note("build.intent", "", &data) }).unwrap();
        let second = c.append_event(&NewEvent { opens: true, ..note("publish.intent", "", &data) }).unwrap();
        let closing = serde_json::json!({"intent": first.seq});
        c.append_event(&NewEvent { closes: Some(first.seq), ..note("build.outcome", "", &closing) }).unwrap();
        let open: Vec<i64> = c.open_intents().unwrap().into_iter().map(|e| e.seq).collect();
        assert_eq!(open, [second.seq]);
        assert_eq!(c.event_count().unwrap(), 3);
        let page: Vec<i64> = c.events_page(None, 1, 1).unwrap().into_iter().map(|e| e.seq).collect();
        assert_eq!(page, [2]);
    }
}
