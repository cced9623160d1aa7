//! Moving a whole history between states (SQLite ↔ PostgreSQL) without loss.
//!
//! Rows are copied as stored — the audit chain's text byte for byte, so every hash is the
//! same on the target — table by table in the order foreign keys need, each in the order
//! it was written, all in one transaction on the target: a copy that fails leaves the
//! target as empty as it was. The copy is then proven by re-hashing the target's chain and
//! comparing its head and every table's row count with the source.

use serde::Serialize;

use crate::store::{Param, args};
use crate::{Catalog, CatalogError, Result};

/// Each table, its columns, and the order rows were written in.
const TABLES: &[(&str, &str, &str)] = &[
    (
        "builds",
        "build_id, image, version, state, reason, recipe_hash, parent_id, parent_name, parent_created, started_at, finished_at, failure, log_dir, runner, execution, cleanup",
        "rowid",
    ),
    ("build_components", "build_id, name, version, sha256", "rowid"),
    ("packages", "build_id, name, version, arch, source_name, source_version", "rowid"),
    ("artifacts", "build_id, kind, path, sha256, size", "rowid"),
    ("test_results", "build_id, name, passed, detail", "rowid"),
    ("audit_events", "seq, time, actor, kind, subject, reason, data, prev_hash, hash", "seq"),
    ("distributions", "build_id, account, region, image_id, how, parameters, at", "build_id, account, region"),
    ("scans", "scan_id, at, consumer, unknown", "scan_id"),
    ("scan_hosts", "scan_id, account, region, instance_id, image_id, image, version, standing, detail", "rowid"),
    (
        "deprecations",
        "build_id, account, region, image_id, at, error, gone, recorded_at",
        "build_id, account, region, image_id",
    ),
    ("notices", "consumer, image, version, topic, message_id, at", "rowid"),
    ("open_intents", "seq", "seq"),
    (
        "approvals",
        "id, action_key, action, subject, reasons, detail, status, requested_at, expires_at, decided_by, decided_at",
        "id",
    ),
    (
        "outbox",
        "key, sink, event, subject, text, data, created_at, attempts, next_attempt_at, sent_at, last_error",
        "key, sink",
    ),
    ("schedule", "job, last_run, data", "job"),
];

const PAGE: i64 = 2000;

/// What a copy moved and how it was proven.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table, as found on both sides.
    pub tables: Vec<(String, i64)>,
    /// Events the target's chain re-hashed to.
    pub events: usize,
    /// The chain head on both sides.
    pub head: Option<(i64, String)>,
}

impl Catalog {
    /// Rows in each table.
    fn counts(&self) -> Result<Vec<(String, i64)>> {
        TABLES
            .iter()
            .map(|(t, _, _)| {
                let n = self.one(&format!("SELECT COUNT(*) FROM {t}"), args![])?;
                Ok((t.to_string(), n.map_or(Ok(0), |r| r.get(0)).map_err(|e| self.err(e))?))
            })
            .collect()
    }

    /// Copies this whole history into `to`, which must hold none, and proves it arrived.
    pub fn copy_to(&self, to: &Catalog) -> Result<Copied> {
        let refuse = |message: String| CatalogError::Io { path: to.path.clone(), message };
        if self.path == to.path {
            return Err(refuse("is the state being copied; choose another destination".into()));
        }
        if let Some((table, n)) = to.counts()?.into_iter().find(|(_, n)| *n > 0) {
            return Err(refuse(format!(
                "already holds a history ({n} row(s) in {table}); a copy goes only into an empty state, so nothing was changed"
            )));
        }
        if let Ok(Err(broken)) = self.verify_chain() {
            return Err(CatalogError::Io {
                path: self.path.clone(),
                message: format!("will not copy a broken chain ({broken}); run `amictl audit verify`"),
            });
        }
        to.write(|tx| {
            for (table, columns, order) in TABLES {
                let n = columns.split(',').count();
                let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
                let insert = format!("INSERT INTO {table} ({columns}) VALUES ({})", marks.join(", "));
                let mut offset = 0;
                loop {
                    let page = self
                        .all(
                            &format!("SELECT {columns} FROM {table} ORDER BY {order} LIMIT ?1 OFFSET ?2"),
                            args![PAGE, offset],
                        )
                        .map_err(|e| crate::store::DbError::Decode(e.to_string()))?;
                    for row in &page {
                        let values: Vec<&dyn Param> = row.0.iter().map(|v| v as &dyn Param).collect();
                        tx.execute(&insert, &values)?;
                    }
                    if (page.len() as i64) < PAGE {
                        break;
                    }
                    offset += PAGE;
                }
            }
            Ok(())
        })?;
        let events = match to.verify_chain()? {
            Ok(n) => n,
            Err(broken) => return Err(refuse(format!("the copied chain does not verify: {broken}"))),
        };
        let (head, counts) = (self.head()?, self.counts()?);
        if to.head()? != head || to.counts()? != counts {
            return Err(refuse("the copy differs from the source (chain head or row counts)".into()));
        }
        Ok(Copied { tables: counts, events, head })
    }
}

#[cfg(test)]
mod tests {
    use crate::NewEvent;
    use crate::testing::catalog;

    #[test]
    fn a_copy_keeps_every_hash_and_refuses_a_target_with_a_history() {
        let (_d, mut from) = catalog();
        for i in 0..3 {
            let data = serde_json::json!({"i": i, "text": "é \"quoted\" \u{1F600}"});
            let ev = NewEvent {
                time: "2026-12-01T00:00:00Z",
                actor: "t",
                kind: "decision",
                subject: "host",
                reason: "r",
                data: &data,
                opens: i == 2,
                closes: None,
            };
            from.append_event(&ev).unwrap();
        }
        let reason = serde_json::json!({});
        from.insert_build(&crate::versions::tests_support::build("b1", "v1", &reason)).unwrap();
        from.record_scan("t1", "goobi", Err("denied")).unwrap();
        let (_e, to) = catalog();
        let copied = from.copy_to(&to).unwrap();
        assert_eq!(copied.events, 3);
        assert_eq!(to.events(None).unwrap(), from.events(None).unwrap());
        assert_eq!(to.open_intents().unwrap().len(), 1);
        assert_eq!(to.versions(None).unwrap()[0].build_id, "b1");
        let err = from.copy_to(&to).unwrap_err().to_string();
        assert!(err.contains("already holds a history"), "{err}");
    }
}
