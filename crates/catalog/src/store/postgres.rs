//! The shared state: one PostgreSQL database for every `serve` replica, CI job and
//! engineer of a team.
//!
//! - Writers take turns: every transaction first takes a transaction-scoped advisory lock,
//!   as SQLite's `BEGIN IMMEDIATE` does, so the chain's next sequence number is read and
//!   written by one writer at a time.
//! - The run lock and `serve`'s leadership are session advisory locks on a connection of
//!   their own ([`Session`]): PostgreSQL releases them the moment that connection ends, so
//!   a holder killed with `kill -9` never leaves one stuck.
//! - A connection that broke (the server restarted) is made again on the next call; the
//!   call that met the break fails, and its transaction rolled back with it.
//! - Credentials never leave [`Target`]: errors and logs name `user@host:port/db` only.

use std::collections::HashMap;
use std::time::Duration;

use ::postgres::types::{IsNull, ToSql, Type};
use ::postgres::{Client, NoTls, Statement};

use super::{DbError, Param, Row, Sql, Store, Tx, Value};

/// Advisory lock keys: `(AMICTL, what)`.
const AMICTL: i32 = 0x616d_6963;
/// Held by each write transaction.
const WRITE: i32 = 1;
/// Held while migrating.
const MIGRATE: i32 = 2;
/// The run lock (one acting `apply` at a time).
pub const RUN: i32 = 3;
/// `serve`'s leadership (one replica runs the schedule).
pub const LEADER: i32 = 4;

/// Where a PostgreSQL state is, with its credentials.
#[derive(Clone)]
pub struct Target {
    config: ::postgres::Config,
    label: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.label)
    }
}

impl Target {
    /// Parses a `postgres://` URL (or a `key=value` string); `password`, when given,
    /// replaces any in the URL. Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str, password: Option<&str>) -> Result<Target, String> {
        let mut config: ::postgres::Config = url
            .parse()
            .map_err(|e: ::postgres::Error| format!("not a PostgreSQL URL ({})", e.to_string().replace(url, "…")))?;
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_ssl_mode() == ::postgres::config::SslMode::Require {
            return Err("sslmode=require: this amictl connects without TLS (use a loopback, a Unix socket, or a TLS proxy such as pgbouncer or stunnel)".into());
        }
        if config.get_dbname().is_none() {
            return Err("the URL names no database (postgres://user@host:5432/DATABASE)".into());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("amictl");
        config.keepalives_idle(Duration::from_secs(30));
        let label = label(&config);
        Ok(Target { config, label })
    }

    /// `postgres://user@host:port/db`, without the password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Client, DbError> {
        let mut last = None;
        let mut connected = None;
        for config in self.resolved() {
            match config.connect(NoTls) {
                Ok(c) => {
                    connected = Some(c);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut client = match (connected, last) {
            (Some(c), _) => c,
            (None, Some(e)) => return Err(e.into()),
            (None, None) => unreachable!("at least one address is tried"),
        };
        // A writer that stopped answering must not hold the others forever.
        client.batch_execute("SET lock_timeout = '60s'; SET idle_in_transaction_session_timeout = '300s'")?;
        Ok(client)
    }
}

impl Target {
    /// The config once per address of its host, resolved here on the calling thread: the
    /// driver would resolve the name on a thread of its own, and a process that forks (the
    /// local sandbox) must not have one.
    fn resolved(&self) -> Vec<::postgres::Config> {
        use ::postgres::config::Host;
        use std::net::ToSocketAddrs;
        if let [Host::Tcp(host)] = self.config.get_hosts()
            && self.config.get_hostaddrs().is_empty()
            && host.parse::<std::net::IpAddr>().is_err()
        {
            let port = self.config.get_ports().first().copied().unwrap_or(5432);
            let addrs: Vec<_> = (host.as_str(), port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
            if !addrs.is_empty() {
                return addrs
                    .into_iter()
                    .map(|a: std::net::SocketAddr| {
                        let mut c = self.config.clone();
                        c.hostaddr(a.ip());
                        c
                    })
                    .collect();
            }
        }
        vec![self.config.clone()]
    }
}

fn label(c: &::postgres::Config) -> String {
    use ::postgres::config::Host;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{}", c.get_dbname().unwrap_or_default())
}

/// PostgreSQL's own words for an error: severity, code and message (and detail).
pub(crate) fn describe(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{} {}: {}{detail}", db.severity(), db.code().code(), db.message())
        }
        None if e.is_closed() => "the connection to PostgreSQL was closed (is the server running?)".into(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// `?N` → `$N`, outside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
struct Bound(Value);

impl ToSql for Bound {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().to_sql(&Type::TEXT, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::BOOL => matches!(s.as_str(), "1" | "true").to_sql(ty, out),
                _ => s.as_str().to_sql(&Type::TEXT, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    ::postgres::types::to_sql_checked!();
}

fn read(row: &::postgres::Row) -> Result<Row, DbError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            ref other => {
                return Err(DbError::Decode(format!(
                    "column {} has type {other}, which amictl does not read",
                    col.name()
                )));
            }
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

fn bind(args: &[&dyn Param]) -> Vec<Bound> {
    args.iter().map(|a| Bound(a.value())).collect()
}

fn refs(bound: &[Bound]) -> Vec<&(dyn ToSql + Sync)> {
    bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

/// Statements prepared once per connection.
#[derive(Default)]
struct Prepared(HashMap<String, Statement>);

impl Prepared {
    fn get(&mut self, client: &mut impl ::postgres::GenericClient, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(&numbered(sql))?;
        self.0.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A PostgreSQL database.
pub struct Postgres {
    target: Target,
    client: Option<Client>,
    prepared: Prepared,
}

impl Postgres {
    /// Connects.
    pub fn connect(target: &Target) -> Result<Postgres, DbError> {
        let client = target.connect()?;
        Ok(Postgres { target: target.clone(), client: Some(client), prepared: Prepared::default() })
    }

    /// The connection, made again when the last one broke.
    fn client(&mut self) -> Result<&mut Client, DbError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.prepared = Prepared::default();
            self.client = Some(self.target.connect()?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

/// Runs `f` where the synchronous client may block: off any async runtime's thread
/// (the client drives its own runtime, which tokio refuses to start inside another).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio_context() {
        std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    } else {
        f()
    }
}

fn tokio_context() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs a statement on a connection or a transaction (prepared once per connection).
fn execute_on(
    client: &mut (impl ::postgres::GenericClient + Send),
    prepared: &mut Prepared,
    sql: &str,
    args: &[&dyn Param],
) -> Result<u64, DbError> {
    let bound = bind(args);
    off_runtime(|| {
        let stmt = prepared.get(client, sql)?;
        Ok(client.execute(&stmt, &refs(&bound))?)
    })
}

/// Runs a query on a connection or a transaction.
fn query_on(
    client: &mut (impl ::postgres::GenericClient + Send),
    prepared: &mut Prepared,
    sql: &str,
    args: &[&dyn Param],
) -> Result<Vec<Row>, DbError> {
    let bound = bind(args);
    off_runtime(|| {
        let stmt = prepared.get(client, sql)?;
        client.query(&stmt, &refs(&bound))?.iter().map(read).collect()
    })
}

impl Sql for Postgres {
    fn execute(&mut self, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError> {
        self.client()?;
        execute_on(self.client.as_mut().expect("connected"), &mut self.prepared, sql, args)
    }

    fn query(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
        self.client()?;
        query_on(self.client.as_mut().expect("connected"), &mut self.prepared, sql, args)
    }
}

struct PgTx<'a> {
    tx: ::postgres::Transaction<'a>,
    prepared: &'a mut Prepared,
}

impl Sql for PgTx<'_> {
    fn execute(&mut self, sql: &str, args: &[&dyn Param]) -> Result<u64, DbError> {
        execute_on(&mut self.tx, self.prepared, sql, args)
    }

    fn query(&mut self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
        query_on(&mut self.tx, self.prepared, sql, args)
    }
}

impl Tx for PgTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), DbError> {
        let tx = self.tx;
        off_runtime(move || Ok(tx.commit()?))
    }
}

impl Store for Postgres {
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, DbError> {
        self.client()?;
        let client = self.client.as_mut().expect("connected");
        let prepared = &mut self.prepared;
        let tx = off_runtime(|| -> Result<_, DbError> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&AMICTL, &WRITE])?;
            Ok(tx)
        })?;
        Ok(Box::new(PgTx { tx, prepared }))
    }

    fn schema_version(&mut self) -> Result<i64, DbError> {
        let client = self.client()?;
        off_runtime(|| {
            let exists: bool = client.query_one("SELECT to_regclass('amictl_schema') IS NOT NULL", &[])?.try_get(0)?;
            if !exists {
                return Ok(0);
            }
            Ok(client.query_opt("SELECT version FROM amictl_schema", &[])?.map(|r| r.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn migrate(&mut self) -> Result<Result<(), i64>, DbError> {
        let known = super::sqlite::MIGRATIONS.len() as i64;
        let client = self.client()?;
        off_runtime(|| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&AMICTL, &MIGRATE])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS amictl_schema (version BIGINT NOT NULL)")?;
            let current: i64 = tx.query_opt("SELECT version FROM amictl_schema", &[])?.map(|r| r.get(0)).unwrap_or(0);
            if current > known {
                return Ok(Err(current));
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                tx.batch_execute(sql)?;
                tx.execute("DELETE FROM amictl_schema", &[])?;
                tx.execute("INSERT INTO amictl_schema (version) VALUES ($1)", &[version])?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    fn safeguards(&mut self) -> Result<Vec<String>, DbError> {
        // Enabled, unconditional row triggers on the audit table calling amictl's function,
        // which still raises.
        self.query(
            "SELECT t.tgname::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE t.tgrelid = 'audit_events'::regclass AND NOT t.tgisinternal AND t.tgenabled <> 'D'
               AND t.tgqual IS NULL AND p.proname = 'amictl_audit_append_only'
               AND p.prosrc LIKE '%RAISE EXCEPTION%' ORDER BY 1",
            &[],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect()
    }
}

/// A connection that holds a session advisory lock for as long as it lives (the run lock,
/// `serve`'s leadership). PostgreSQL lets go when the connection ends, however it ends.
pub struct Session {
    client: Client,
}

impl Session {
    /// Takes lock `what` if it is free: `None` when another session holds it.
    pub fn try_lock(target: &Target, what: i32, note: &str) -> Result<Option<Session>, DbError> {
        off_runtime(|| {
            let mut client = target.connect()?;
            // What the holder is, for whoever is refused (`pg_stat_activity`).
            let note: String = note.chars().filter(|c| !c.is_control()).take(60).collect();
            client.execute("SELECT set_config('application_name', $1, false)", &[&note])?;
            let got: bool = client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&AMICTL, &what])?.get(0);
            Ok(got.then_some(Session { client }))
        })
    }

    /// Whether the session (and so its lock) is still alive, asked of the server.
    pub fn alive(&mut self) -> bool {
        let client = &mut self.client;
        off_runtime(|| !client.is_closed() && client.simple_query("SELECT 1").is_ok())
    }

    /// Who holds lock `what` now: the server process and what the holder says it is.
    pub fn holder(target: &Target, what: i32) -> Result<Option<(u32, String)>, DbError> {
        off_runtime(|| {
            let mut client = target.connect()?;
            let row = client.query_opt(
                "SELECT a.pid, COALESCE(a.application_name, ''), COALESCE(a.client_addr::text, 'local'), a.backend_start::text
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objid = $2::int::oid AND l.objsubid = 2 AND l.granted",
                &[&AMICTL, &what],
            )?;
            Ok(row.map(|r| {
                let pid: i32 = r.get(0);
                let (app, addr, since): (String, String, String) = (r.get(1), r.get(2), r.get(3));
                (pid as u32, format!("{app} (PostgreSQL backend {pid} from {addr}, since {since})"))
            }))
        })
    }
}

/// The schema, by the SQLite schema version each step reaches: a new database gets the
/// whole of today's schema at once, and a later change appends a step to both lists.
const MIGRATIONS: &[(i64, &str)] = &[(
    7,
    "CREATE TABLE builds (
        build_id TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        recipe_hash TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        parent_name TEXT NOT NULL,
        parent_created TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        failure TEXT,
        log_dir TEXT NOT NULL,
        runner TEXT,
        execution TEXT NOT NULL DEFAULT '',
        cleanup TEXT,
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        UNIQUE (image, version)
     );
     CREATE TABLE build_components (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, rowid BIGINT GENERATED ALWAYS AS IDENTITY);
     CREATE TABLE packages (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, arch TEXT NOT NULL, source_name TEXT NOT NULL, source_version TEXT NOT NULL, rowid BIGINT GENERATED ALWAYS AS IDENTITY);
     CREATE INDEX packages_build ON packages (build_id);
     CREATE TABLE artifacts (build_id TEXT NOT NULL REFERENCES builds, kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL, rowid BIGINT GENERATED ALWAYS AS IDENTITY);
     CREATE TABLE test_results (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, passed BOOLEAN NOT NULL, detail TEXT NOT NULL, rowid BIGINT GENERATED ALWAYS AS IDENTITY);
     CREATE TABLE audit_events (
        seq BIGINT PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE FUNCTION amictl_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events FOR EACH ROW EXECUTE FUNCTION amictl_audit_append_only();
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION amictl_audit_append_only();
     CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION amictl_audit_append_only();
     CREATE TABLE distributions (
        build_id TEXT NOT NULL REFERENCES builds,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        image_id TEXT NOT NULL,
        how TEXT NOT NULL,
        parameters TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (build_id, account, region)
     );
     CREATE TABLE scans (scan_id BIGINT PRIMARY KEY, at TEXT NOT NULL, consumer TEXT NOT NULL, unknown TEXT);
     CREATE TABLE scan_hosts (
        scan_id BIGINT NOT NULL REFERENCES scans,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        image_id TEXT NOT NULL,
        image TEXT,
        version TEXT,
        standing TEXT NOT NULL,
        detail TEXT NOT NULL,
        rowid BIGINT GENERATED ALWAYS AS IDENTITY
     );
     CREATE INDEX scan_hosts_scan ON scan_hosts (scan_id);
     CREATE TABLE deprecations (
        build_id TEXT NOT NULL REFERENCES builds,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        image_id TEXT NOT NULL,
        at TEXT NOT NULL,
        error TEXT,
        gone BOOLEAN NOT NULL DEFAULT false,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (build_id, account, region, image_id)
     );
     CREATE TABLE notices (
        consumer TEXT NOT NULL,
        image TEXT NOT NULL,
        version TEXT NOT NULL,
        topic TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at TEXT NOT NULL,
        rowid BIGINT GENERATED ALWAYS AS IDENTITY
     );
     CREATE INDEX notices_consumer ON notices (consumer, image, version);
     CREATE TABLE open_intents (seq BIGINT PRIMARY KEY REFERENCES audit_events);
     CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        action_key TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        reasons TEXT NOT NULL,
        detail TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT
     );
     CREATE INDEX approvals_key ON approvals (action_key);
     CREATE TABLE outbox (
        key TEXT NOT NULL,
        sink TEXT NOT NULL,
        event TEXT NOT NULL,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        PRIMARY KEY (key, sink)
     );
     CREATE TABLE schedule (job TEXT PRIMARY KEY, last_run TEXT NOT NULL, data TEXT NOT NULL);",
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_literals_only() {
        assert_eq!(
            numbered("SELECT * FROM t WHERE a = ?1 AND b LIKE ?2 || '@%?3' AND c = ?10"),
            "SELECT * FROM t WHERE a = $1 AND b LIKE $2 || '@%?3' AND c = $10"
        );
    }

    #[test]
    fn a_target_never_shows_its_password() {
        let t = Target::parse("postgres://amictl:s3cr3t-canary@db.internal:6432/state", None).unwrap();
        assert_eq!(t.label(), "postgres://amictl@db.internal:6432/state");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let err = Target::parse("postgres://amictl:s3cr3t-canary@db:notaport/state", None).unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(Target::parse("postgres://amictl@db/state?sslmode=require", None).unwrap_err().contains("TLS"));
        assert!(Target::parse("postgres://amictl@db", None).unwrap_err().contains("no database"));
    }
}
