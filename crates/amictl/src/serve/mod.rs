//! `amictl serve`: the loop, unattended.
//!
//! One process, three parts:
//!
//! - **the scheduler** ([`Server::tick`], on its own thread): cycles on `[serve] schedule`
//!   and on demand (the advisory watch, an approval, `POST /api/cycles`), the watch every
//!   `watch_interval`, delivery of queued notices. When each job last ran is kept in the
//!   state, so a restarted server catches up once rather than repeating or forgetting;
//! - **cycles in a child process**: each is `amictl apply --json --wait`, the same command a
//!   person runs. A cycle that dies (kill -9, OOM, a panic) is what a killed `apply` is —
//!   the next one closes its intents and recovers its builds — and it cannot take the API
//!   down with it. The local sandbox forks, which only a single-threaded process may do:
//!   this one is not. The child dies with the scheduler thread (`PR_SET_PDEATHSIG`), and a
//!   server asked to stop passes one SIGTERM on to it, so it cleans up as `apply` does;
//! - **the HTTP server** ([`api`], [`dashboard`]): JSON API, `/metrics`, `/openapi.json`,
//!   pages for people. Reads come from a small pool of state connections (SQLite WAL lets
//!   them read while a cycle writes); changes need the bearer token or a dashboard session.
//!
//! With `--from/--until` the same scheduler runs on a **modelled clock**: time jumps to the
//! next due job, cycles run with `apply --clock-from <that time>` so their records carry
//! modelled times, and the process exits at `--until`.

mod api;
mod auth;
mod dashboard;
mod deliver;
mod schedule;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use catalog::Catalog;
use config::Config;
use engine::{Engine, Providers};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{Common, ServeArgs};
use crate::commands::{actor, catalog, load_config};
use crate::wiring::{self, Needs};
use crate::{UsageError, clock, exit};

pub use schedule::Schedule;

/// The clock every job reads: the machine's, or a modelled one the scheduler moves.
pub struct ServeClock {
    modelled: Option<AtomicI64>,
}

impl ServeClock {
    fn set(&self, t: Timestamp) {
        if let Some(m) = &self.modelled {
            m.store(t.as_second(), Ordering::SeqCst);
        }
    }
}

impl engine::Clock for ServeClock {
    fn now(&self) -> Timestamp {
        match &self.modelled {
            None => Timestamp::now(),
            Some(m) => Timestamp::from_second(m.load(Ordering::SeqCst)).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

/// How the last cycle went, for `/api/status`, `/api/plan` and the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct CycleSummary {
    /// `schedule`, `start-up`, `advisory`, `approval`, `api`.
    pub trigger: String,
    pub started: String,
    pub finished: String,
    pub ok: bool,
    /// Exit code of `amictl apply`.
    pub exit: Option<i32>,
    /// Its `--json` report (plan, actions, held), or why there is none.
    pub report: Value,
    pub error: Option<String>,
}

/// What the scheduler is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The running cycle's trigger and start.
    pub running: Option<(String, String)>,
    pub last_cycle: Option<CycleSummary>,
    pub next_cycle: Option<String>,
    pub next_watch: Option<String>,
    pub last_watch: Option<Value>,
    /// Whether this replica runs the schedule (one replica of a state does; the others
    /// serve the API and take over when it stops).
    pub leading: bool,
}

#[derive(Default)]
struct Counters {
    cycles: AtomicU64,
    cycles_failed: AtomicU64,
    watches: AtomicU64,
    watch_matches: AtomicU64,
    deliveries_failed: AtomicU64,
    requests: AtomicU64,
}

/// One server.
pub struct Server {
    config_path: std::path::PathBuf,
    cfg: Config,
    engine: Engine,
    readers: Vec<Mutex<Catalog>>,
    next_reader: AtomicU64,
    schedule: Schedule,
    clock: Arc<ServeClock>,
    auth: auth::Auth,
    status: Mutex<Status>,
    requested: Mutex<Option<String>>,
    wake: Condvar,
    stop: AtomicBool,
    /// The running cycle's process (0: none), told to stop when the server is.
    cycle_pid: std::sync::atomic::AtomicU32,
    /// This replica holds the leadership: it runs cycles, the watch and deliveries.
    leading: AtomicBool,
    /// "Following" was said (once per change).
    said_following: AtomicBool,
    counters: Counters,
    started: Timestamp,
}

const CYCLE_JOB: &str = "cycle";
const WATCH_JOB: &str = "watch";
/// Set while a cycle runs (its trigger), so a server killed mid-cycle resumes it at start.
const RUNNING_JOB: &str = "cycle.running";
/// How often queued notices are tried (real clock).
const DELIVERY_EVERY: Duration = Duration::from_secs(10);
/// How often a replica that does not lead asks for the leadership: the longest a state
/// goes without a scheduler after its leader dies (PostgreSQL frees the lock at once).
const LEADER_POLL: Duration = Duration::from_secs(2);

pub fn run(common: &Common, args: &ServeArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let listen: SocketAddr = args
        .listen
        .as_deref()
        .unwrap_or(&cfg.serve.listen)
        .parse()
        .map_err(|_| UsageError("--listen: expected an IP address and a port, e.g. 127.0.0.1:8421".into()))?;
    let token = match &cfg.serve.token {
        None => None,
        Some(t) => Some(t.resolve().map_err(|e| UsageError(format!("[serve] token: {e}")))?),
    };
    if token.as_deref().is_some_and(|t| t.len() < 16) {
        return Err(UsageError("[serve] token: use at least 16 characters (e.g. `openssl rand -hex 32`)".into()).into());
    }
    let loopback = listen.ip().is_loopback();
    if !loopback && token.is_none() {
        return Err(UsageError(format!(
            "listening on {listen} (beyond loopback) needs `[serve] token`: anyone who reaches the port could approve actions"
        ))
        .into());
    }
    let modelled = match (&args.from, &args.until) {
        (Some(from), Some(until)) => Some((clock::resolve(Some(from))?, clock::resolve(Some(until))?)),
        _ => None,
    };
    let clock = Arc::new(ServeClock { modelled: modelled.map(|(from, _)| AtomicI64::new(from.as_second())) });
    let schedule = Schedule::new(&cfg.serve)?;
    let inspector = cfg.images.values().any(|i| matches!(i.advisories, Some(config::AdvisoryFeed::Inspector)));
    let providers = if inspector { wiring::providers(&cfg, Needs { cloud: true })? } else { Providers::default() };
    let engine = Engine::new(cfg.clone(), catalog(&cfg)?, providers)
        .with_clock(clock.clone())
        .with_actor(format!("{} serve", actor()));
    let readers = (0..2).map(|_| catalog(&cfg).map(Mutex::new)).collect::<Result<Vec<_>>>()?;
    let server = Arc::new(Server {
        config_path: common.config.clone(),
        auth: auth::Auth::new(token, cfg.serve.open_reads && loopback),
        cfg,
        engine,
        readers,
        next_reader: AtomicU64::new(0),
        schedule,
        clock: clock.clone(),
        status: Mutex::new(Status::default()),
        requested: Mutex::new(None),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        cycle_pid: std::sync::atomic::AtomicU32::new(0),
        leading: AtomicBool::new(false),
        said_following: AtomicBool::new(false),
        counters: Counters::default(),
        started: Timestamp::now(),
    });
    if let Some((from, until)) = modelled {
        return server.run_modelled(from, until);
    }
    let stop = crate::signals::graceful(provider::Cancel::new());
    let scheduler = {
        let server = server.clone();
        std::thread::Builder::new().name("scheduler".into()).spawn(move || server.run_real())?
    };
    // Deliveries on their own thread: a slow or dead webhook never delays a cycle.
    let delivery = {
        let server = server.clone();
        std::thread::Builder::new().name("deliver".into()).spawn(move || {
            while !server.stop.load(Ordering::SeqCst) {
                if server.leading.load(Ordering::SeqCst) {
                    server.deliver();
                }
                let mut waited = Duration::ZERO;
                while waited < DELIVERY_EVERY && !server.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    waited += Duration::from_millis(200);
                }
            }
        })?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("amictl serve: listening on http://{}", listener.local_addr()?);
        let app = api::router(server.clone());
        let shutdown = {
            let stop = stop.clone();
            let server = server.clone();
            async move {
                while stop.exit_code().is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                server.stop_cycles();
            }
        };
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("the HTTP server stopped")
    });
    server.stop_cycles();
    let _ = scheduler.join();
    let _ = delivery.join();
    result?;
    Ok(stop.exit_code().unwrap_or(exit::OK))
}

fn parse_time(v: Option<&(String, Value)>) -> Option<Timestamp> {
    v.and_then(|(t, _)| t.parse().ok())
}

impl Server {
    /// No new cycle starts; a running one is told once to stop, as `apply` is on SIGTERM:
    /// it cleans up what it made and records an interrupted outcome.
    fn stop_cycles(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.wake.notify_all();
        let pid = self.cycle_pid.load(Ordering::SeqCst);
        if pid != 0 {
            eprintln!("amictl serve: stopping the running cycle (pid {pid})");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
    }

    fn now(&self) -> Timestamp {
        engine::Clock::now(&*self.clock)
    }

    /// A state connection for one read.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) as usize % self.readers.len();
        let cat = self.readers[i].lock().unwrap_or_else(|e| e.into_inner());
        f(&cat)
    }

    /// Asks for a cycle as soon as the scheduler is free.
    pub(crate) fn request_cycle(&self, trigger: &str) {
        let mut r = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(trigger.to_string());
        }
        self.wake.notify_all();
    }

    pub(crate) fn status(&self) -> Status {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.leading = self.leading.load(Ordering::SeqCst);
        s
    }

    /// Holds or asks for the leadership; whether this replica leads now.
    fn lead(&self, held: &mut Option<catalog::Leadership>) -> bool {
        if held.as_mut().is_some_and(|l| !l.alive()) {
            eprintln!("amictl serve: lost the leadership (the state's connection ended); asking again");
            *held = None;
        }
        if held.is_none() {
            match catalog::Leadership::try_take(self.engine.location(), "amictl serve") {
                Ok(Some(l)) => {
                    eprintln!("amictl serve: leading: this replica runs the schedule");
                    *held = Some(l);
                }
                Ok(None) => {
                    if self.leading.swap(false, Ordering::SeqCst) || !self.said_following.swap(true, Ordering::SeqCst) {
                        let who = catalog::Leadership::holder(self.engine.location())
                            .unwrap_or_else(|| "another replica".into());
                        eprintln!("amictl serve: following: {who} runs the schedule; serving the API");
                    }
                }
                Err(e) => eprintln!("amictl serve: cannot ask for the leadership: {e}"),
            }
        }
        let leading = held.is_some();
        self.leading.store(leading, Ordering::SeqCst);
        leading
    }

    fn run_real(&self) {
        let mut leadership = None;
        while !self.stop.load(Ordering::SeqCst) {
            if !self.lead(&mut leadership) {
                let requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
                let _ = self.wake.wait_timeout(requested, LEADER_POLL);
                continue;
            }
            let next = match self.tick() {
                Ok(next) => next,
                Err(e) => {
                    eprintln!("amictl serve: scheduler: {e:#}");
                    None
                }
            };
            let now = Timestamp::now();
            let until_next = next
                .map(|t| Duration::from_secs(t.as_second().saturating_sub(now.as_second()).max(0) as u64))
                .unwrap_or(DELIVERY_EVERY)
                .min(DELIVERY_EVERY);
            let requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
            if requested.is_none() && !self.stop.load(Ordering::SeqCst) {
                let _ = self.wake.wait_timeout(requested, until_next.max(Duration::from_millis(50)));
            }
        }
    }

    fn run_modelled(&self, from: Timestamp, until: Timestamp) -> Result<u8> {
        let mut now = from;
        let failed_before = self.counters.cycles_failed.load(Ordering::Relaxed);
        let mut stuck = 0;
        loop {
            self.clock.set(now);
            let next = self.tick()?;
            self.deliver();
            let Some(next) = next else { break };
            if next > until {
                break;
            }
            if next <= now {
                stuck += 1;
                anyhow::ensure!(stuck < 3, "the schedule does not move past {now} (is the state writable?)");
            } else {
                stuck = 0;
            }
            now = next.max(now);
        }
        let status = self.status();
        println!("{}", serde_json::to_string_pretty(&json!({"until": until.to_string(), "status": status}))?);
        let failed = self.counters.cycles_failed.load(Ordering::Relaxed) - failed_before;
        Ok(if failed == 0 { exit::OK } else { exit::FAILED })
    }

    /// Runs what is due at the clock's now; returns when the next job falls due.
    fn tick(&self) -> Result<Option<Timestamp>> {
        let now = self.now();
        let (last_cycle, last_watch) = self.read(|c| Ok((c.job(CYCLE_JOB)?, c.job(WATCH_JOB)?)))?;
        let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner()).take();
        // An approval given since the last cycle (from a terminal: `amictl approve` writes
        // the state, not to this process) is carried out now.
        let since = parse_time(last_cycle.as_ref());
        let fresh_approval =
            self.read(|c| Ok(c.approvals(Some(catalog::ApprovalStatus::Approved))?))?.iter().any(|a| {
                a.decided_at
                    .as_deref()
                    .and_then(|d| d.parse::<Timestamp>().ok())
                    .is_some_and(|d| since.is_none_or(|s| d > s))
            });
        if fresh_approval && requested.is_none() {
            requested = Some("approval".into());
        }
        // A cycle this server (or an earlier one) started and did not see end: carry on.
        if self.read(|c| Ok(c.job(RUNNING_JOB)?))?.is_some_and(|(_, d)| !d.is_null()) {
            requested = Some("resume".into());
        }
        let cycle_due = self.schedule.cycle_due(parse_time(last_cycle.as_ref()), now);
        let watch_due = self.schedule.watch_due(parse_time(last_watch.as_ref()), now);
        let mut ran = false;
        if watch_due <= now {
            let seen: BTreeSet<String> = last_watch
                .as_ref()
                .and_then(|(_, d)| d["due"].as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            self.counters.watches.fetch_add(1, Ordering::Relaxed);
            match self.engine.watch(now, &seen) {
                Ok(w) => {
                    let summary = json!({"at": now.to_string(), "checked": w.checked, "stale": w.stale, "matched": w.matched, "due": w.due});
                    self.engine.catalog().set_job(WATCH_JOB, &now.to_string(), &summary)?;
                    self.status.lock().unwrap_or_else(|e| e.into_inner()).last_watch = Some(summary);
                    if !w.matched.is_empty() {
                        self.counters.watch_matches.fetch_add(1, Ordering::Relaxed);
                        self.cycle("advisory", now);
                        // That was the cycle a request or the schedule would have run now.
                        requested = None;
                        ran = true;
                    }
                }
                Err(e) => {
                    let text = e.text();
                    eprintln!("amictl serve: advisory watch: {text}");
                    let _ = self.engine.cycle_failed("watch", &text);
                    self.engine.catalog().set_job(WATCH_JOB, &now.to_string(), &json!({"error": text}))?;
                }
            }
        }
        if watch_due <= now
            && let Err(e) = self.engine.queue_deadline_notices(now)
        {
            eprintln!("amictl serve: deadline notices: {}", e.text());
        }
        if let Some(trigger) = requested {
            self.cycle(&trigger, now);
        } else if !ran && cycle_due.is_some_and(|d| d <= now) {
            self.cycle(if last_cycle.is_none() { "start-up" } else { "schedule" }, now);
        }
        if let Err(e) = self.engine.expire_approvals(now) {
            eprintln!("amictl serve: approvals: {}", e.text());
        }
        let (last_cycle, last_watch) = self.read(|c| Ok((c.job(CYCLE_JOB)?, c.job(WATCH_JOB)?)))?;
        let next_cycle = self.schedule.cycle_due(parse_time(last_cycle.as_ref()), now);
        let next_watch = self.schedule.watch_due(parse_time(last_watch.as_ref()), now);
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.next_cycle = next_cycle.map(|t| t.to_string());
            s.next_watch = Some(next_watch.to_string());
        }
        let pending = self.requested.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let next = [next_cycle, Some(next_watch)].into_iter().flatten().min();
        Ok(if pending { Some(now) } else { next })
    }

    /// One cycle: `amictl apply` in a child, recorded as the job's last run whatever it did
    /// (a failed cycle is in the chain as such; the next one is the schedule's next).
    fn cycle(&self, trigger: &str, now: Timestamp) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        self.status.lock().unwrap_or_else(|e| e.into_inner()).running = Some((trigger.to_string(), now.to_string()));
        self.counters.cycles.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.engine.catalog().set_job(RUNNING_JOB, &now.to_string(), &json!({"trigger": trigger})) {
            eprintln!("amictl serve: cannot record the cycle's start: {e}");
        }
        let summary = self.apply_child(trigger, now);
        if !summary.ok {
            self.counters.cycles_failed.fetch_add(1, Ordering::Relaxed);
        }
        if summary.report.is_null() {
            // No report: the run did not get to record its own end (AWS, a feed, the state).
            let why = summary.error.clone().unwrap_or_else(|| "no report".into());
            if let Err(e) = self.engine.cycle_failed(trigger, &why) {
                eprintln!("amictl serve: cannot record the failed cycle: {}", e.text());
            }
        }
        if self.stop.load(Ordering::SeqCst) {
            // Stopped with the server: the marker stays, so the next start carries it on.
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.running = None;
            s.last_cycle = Some(summary);
            return;
        }
        let done = json!({"trigger": trigger, "ok": summary.ok, "exit": summary.exit});
        if let Err(e) = self.engine.catalog().set_job(CYCLE_JOB, &now.to_string(), &done) {
            eprintln!("amictl serve: cannot record the cycle: {e}");
        }
        if let Err(e) = self.engine.catalog().set_job(RUNNING_JOB, &now.to_string(), &Value::Null) {
            eprintln!("amictl serve: cannot record the cycle's end: {e}");
        }
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.running = None;
        s.last_cycle = Some(summary);
    }

    fn apply_child(&self, trigger: &str, now: Timestamp) -> CycleSummary {
        let exe = std::env::current_exe().unwrap_or_else(|_| "amictl".into());
        let mut cmd = Command::new(exe);
        cmd.arg("--config").arg(&self.config_path).args(["--json", "apply", "--wait"]);
        if self.clock.modelled.is_some() {
            cmd.arg("--clock-from").arg(now.to_string());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // The server's own secrets (token, webhook URLs) are not the cycle's business.
        let own = self.cfg.serve.token.iter().chain(self.cfg.serve.webhooks.values().map(|w| &w.url));
        for value in own {
            if let config::ParamValue::Env { var, .. } = value {
                cmd.env_remove(var);
            }
        }
        // Its own process group: a Ctrl-C at the terminal reaches the server only, which
        // passes one SIGTERM on (two would make `apply` exit without cleaning up).
        cmd.process_group(0);
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            });
        }
        let started = self.now().to_string();
        eprintln!("amictl serve: {trigger} cycle at {now}");
        let out = cmd.spawn().and_then(|child| {
            self.cycle_pid.store(child.id(), Ordering::SeqCst);
            // A stop that came while it was starting: it gets its SIGTERM now.
            if self.stop.load(Ordering::SeqCst) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let out = child.wait_with_output();
            self.cycle_pid.store(0, Ordering::SeqCst);
            out
        });
        let finished = self.now().to_string();
        match out {
            Err(e) => CycleSummary {
                trigger: trigger.into(),
                started,
                finished,
                ok: false,
                exit: None,
                report: Value::Null,
                error: Some(format!("cannot run amictl apply: {e}")),
            },
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                for line in stderr.lines() {
                    eprintln!("  {line}");
                }
                let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                let error = if out.status.success() {
                    None
                } else {
                    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                    Some(match out.status.code() {
                        Some(c) => format!("amictl apply exited {c}: {last}"),
                        None => format!("amictl apply was killed ({})", out.status),
                    })
                };
                CycleSummary {
                    trigger: trigger.into(),
                    started,
                    finished,
                    ok: out.status.success(),
                    exit: out.status.code(),
                    report,
                    error,
                }
            }
        }
    }

    fn deliver(&self) {
        let failed = deliver::run(&self.engine, &self.cfg, self.now());
        self.counters.deliveries_failed.fetch_add(failed as u64, Ordering::Relaxed);
    }
}
