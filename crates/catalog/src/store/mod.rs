//! The one interface the catalog's queries are written against, and its two
//! implementations: [`sqlite`] (the embedded default) and [`postgres`] (one state for a
//! team). Every query, the chain's hashing and every rule of the state live once, in the
//! catalog's modules; a backend only runs statements, numbers placeholders its way, keeps
//! its own schema migrations and takes its own locks.
//!
//! Statements use `?N` placeholders and the SQL both databases share (`ON CONFLICT`,
//! `RETURNING`, `COALESCE`, subqueries). Values are integers, text or NULL: what the
//! schema stores, so a history moves between backends without conversion.

pub mod postgres;
pub mod sqlite;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (booleans are 0 and 1).
    Int(i64),
    /// Text.
    Text(String),
}

/// Something that can be bound to a statement.
pub trait Param {
    /// As a value.
    fn value(&self) -> Value;
}

impl Param for Value {
    fn value(&self) -> Value {
        self.clone()
    }
}
impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}
impl Param for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

/// A statement's arguments: `args![a, b]`.
macro_rules! args {
    () => { &[] as &[&dyn $crate::store::Param] };
    ($($x:expr),+ $(,)?) => { &[$(&$x as &dyn $crate::store::Param),+] as &[&dyn $crate::store::Param] };
}
pub(crate) use args;

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column or another type is an error naming it.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).ok_or_else(|| DbError::Decode(format!("no column {i}")))?;
        T::from_value(v).map_err(|want| DbError::Decode(format!("column {i}: expected {want}, found {v:?}")))
    }
}

/// A type a column can be read as.
pub trait FromValue: Sized {
    /// The value as `Self`, or what was expected.
    fn from_value(v: &Value) -> Result<Self, &'static str>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(i) => Ok(*i),
            _ => Err("an integer"),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(i) => Ok(*i != 0),
            _ => Err("a boolean"),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err("text"),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        Ok(v.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// What a backend reported.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite's error.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's error (or the connection's).
    #[error("{}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    /// A row did not hold what the schema says.
    #[error("{0}")]
    Decode(String),
}

/// Runs statements: a connection, or a transaction on one.
pub trait Sql {
    /// Runs a statement; how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError>;
    /// Runs a query; all its rows.
    fn query(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError>;
    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

/// A transaction; dropped without [`Tx::commit`], it rolls back.
pub trait Tx: Sql {
    /// Makes its changes durable.
    fn commit(self: Box<Self>) -> Result<(), DbError>;
}

/// A state database.
pub trait Store: Sql + Send {
    /// Starts a transaction that holds the state's write lock from its first statement,
    /// so a read-then-write inside it (the chain's next sequence number) never races
    /// another writer.
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, DbError>;
    /// The schema version this database holds (0 when new).
    fn schema_version(&mut self) -> Result<i64, DbError>;
    /// Applies migrations up to `known`, each once even when several openers race;
    /// refuses (`Err(found)`) a database newer than `known`.
    fn migrate(&mut self) -> Result<Result<(), i64>, DbError>;
    /// The SQLite connection underneath, for what only SQLite has (its checks, backups).
    fn as_sqlite(&mut self) -> Option<&mut rusqlite::Connection> {
        None
    }
    /// Which triggers keep the audit log append-only, as they stand now.
    fn safeguards(&mut self) -> Result<Vec<String>, DbError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_as_the_schema_says_and_a_wrong_type_names_its_column() {
        let r = Row(vec![Value::Int(3), Value::Text("x".into()), Value::Null]);
        assert_eq!(r.get::<i64>(0).unwrap(), 3);
        assert!(r.get::<bool>(0).unwrap());
        assert_eq!(r.get::<String>(1).unwrap(), "x");
        assert_eq!(r.get::<Option<String>>(2).unwrap(), None);
        let err = r.get::<i64>(1).unwrap_err().to_string();
        assert!(err.contains("column 1") && err.contains("integer"), "{err}");
        assert!(r.get::<i64>(9).is_err());
        let a: &[&dyn Param] = args![1_i64, "t", None::<String>, true];
        let values: Vec<Value> = a.iter().map(|p| p.value()).collect();
        assert_eq!(values, [Value::Int(1), Value::Text("t".into()), Value::Null, Value::Int(1)]);
    }
}
