//! The embedded state: one SQLite file (WAL), migrations counted by `user_version`.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::{DbError, Param, Row, Sql, Store, Tx, Value};

/// A SQLite database.
pub struct Sqlite {
    /// The connection.
    pub conn: Connection,
}

struct Bound(Value);

impl rusqlite::ToSql for Bound {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match &self.0 {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn bind(args: &[&dyn Param]) -> Vec<Bound> {
    args.iter().map(|a| Bound(a.value())).collect()
}

fn read(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Real(f) => Value::Text(f.to_string()),
            ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
        });
    }
    Ok(Row(out))
}

fn execute(conn: &Connection, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError> {
    let bound = bind(args);
    let mut stmt = conn.prepare_cached(sql)?;
    Ok(stmt.execute(rusqlite::params_from_iter(bound.iter()))? as u64)
}

fn query(conn: &Connection, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
    let bound = bind(args);
    let mut stmt = conn.prepare_cached(sql)?;
    let n = stmt.column_count();
    let rows = stmt.query_map(rusqlite::params_from_iter(bound.iter()), |r| read(r, n))?;
    Ok(rows.collect::<rusqlite::Result<Vec<Row>>>()?)
}

impl Sql for Sqlite {
    fn execute(&mut self, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError> {
        execute(&self.conn, sql, args)
    }
    fn query(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
        query(&self.conn, sql, args)
    }
}

struct SqliteTx<'a>(rusqlite::Transaction<'a>);

impl Sql for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError> {
        execute(&self.0, sql, args)
    }
    fn query(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
        query(&self.0, sql, args)
    }
}

impl Tx for SqliteTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), DbError> {
        Ok(self.0.commit()?)
    }
}

impl Store for Sqlite {
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, DbError> {
        Ok(Box::new(SqliteTx(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)))
    }

    fn schema_version(&mut self) -> Result<i64, DbError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<Result<(), i64>, DbError> {
        let known = MIGRATIONS.len() as i64;
        // Each migration in an IMMEDIATE transaction that re-reads the version under the
        // write lock, so concurrent openers never apply one twice.
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if current > known {
                return Ok(Err(current));
            }
            if current == known {
                tx.commit()?;
                return Ok(Ok(()));
            }
            tx.execute_batch(MIGRATIONS[current as usize])?;
            tx.pragma_update(None, "user_version", current + 1)?;
            tx.commit()?;
        }
    }

    fn as_sqlite(&mut self) -> Option<&mut Connection> {
        Some(&mut self.conn)
    }

    fn safeguards(&mut self) -> Result<Vec<String>, DbError> {
        let rows = query(
            &self.conn,
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events' ORDER BY name",
            &[],
        )?;
        let normal = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ").trim_end_matches(';').to_string();
        // A trigger counts only when it is exactly the one amictl made (not one with the
        // same name and a `WHEN` that disables it).
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0).ok()?;
                let sql: String = r.get(1).ok()?;
                SAFEGUARD_SQL.iter().any(|(n, s)| *n == name && normal(s) == normal(&sql)).then_some(name)
            })
            .collect())
    }
}

/// The append-only triggers, as the first migration creates them.
pub(crate) const SAFEGUARD_SQL: [(&str, &str); 2] = [
    (
        "audit_no_update",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ),
    (
        "audit_no_delete",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ),
];

pub(crate) use crate::schema::MIGRATIONS;
