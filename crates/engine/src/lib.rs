//! # engine — observe → decide → act → record
//!
//! The middle of amictl, over provider traits only: it never sees aws-sdk types or the
//! sandbox, so its tests run with in-memory providers in seconds, and a second way of
//! building images (EC2 Image Builder) is one `impl provider::Builder` the binary wires in.
//!
//! - [`observe`]: read-only. The catalog, each line's current parent (from its builder), a
//!   live fleet scan, advisory checks → [`policy::Observed`].
//! - decide: [`policy::plan`], pure; each action carries what acting needs.
//! - [`act`]: one module per action kind. Each runs inside [`record`]'s wrapper, which
//!   writes the intent (with the planner's reasons) before and the outcome (done, failed
//!   or interrupted) after, so no action can skip either.
//! - [`record`]: the audit chain's writer; it also closes intents a dead run left open.
//! - [`views`]: what `plan`, `images`, `report`, `metrics` and `advisories` share — image
//!   status, age and due date, releases, fleet summaries, exposure — each rule once.
//! - [`feeds`] and [`advisories`]: advisory feeds fetched, cached, marked stale; the
//!   per-line check every command uses.
//! - [`fleet`]: scanning consumers through a [`provider::FleetSource`] and judging hosts.
//!
//! ## Choices, and where they differ from the architecture sketch
//!
//! - **Locking.** [`Engine::plan`] writes nothing: it observes and decides (a live scan is
//!   shown, not stored). [`Engine::apply`] takes the run lock, records the scan it acted
//!   on, then acts. A build a live run holds is reported as running, not interrupted.
//! - **Concurrency.** Independent work runs concurrently on scoped threads, bounded by
//!   [`ApplyOptions::parallel`] (default 2): recoveries first, then each image line's
//!   chain (build or distribute, deprecations, retirements — in order within the line),
//!   then rollouts, one consumer each. The catalog is behind one mutex; each record is a
//!   short transaction.
//! - **Deprecation** is planned, not a side effect of publishing: the time belongs to the
//!   superseded version (its successor's release plus the rollout SLA) and is set once
//!   per AMI; after a run publishes a version the engine plans its line's deprecations
//!   again, so the predecessor is deprecated in the same run, and a refused deprecation
//!   is a failed action the next run retries.
//! - **Interruption.** A [`provider::Cancel`] set by SIGINT/SIGTERM stops new actions;
//!   the running ones clean up and record an `interrupted` outcome.
#![deny(missing_docs)]

pub mod act;
pub mod advisories;
pub mod approvals;
mod error;
pub mod feeds;
pub mod fleet;
pub mod import;
pub mod notices;
pub mod observe;
pub mod record;
pub mod views;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use catalog::Catalog;
use config::Config;
use jiff::Timestamp;
use provider::{AdvisorySource, Builder, Cancel, FleetSource, Publisher, Rollout};

pub use act::{ActionResult, ApplyOptions, ApplyReport};
pub use approvals::Decision;
pub use error::EngineError;
pub use observe::Observation;

/// The wall clock the engine records with (tests fix it).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Where the engine tells people what it is doing.
pub trait Progress: Send + Sync {
    /// A passing status ("building X: running component Y").
    fn status(&self, text: &str);
    /// A line that stays ("built X: …", "FAIL …").
    fn line(&self, text: &str);
}

/// Progress nobody reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn status(&self, _: &str) {}
    fn line(&self, _: &str) {}
}

/// The providers of one image line.
#[derive(Clone)]
pub struct Line {
    /// Builds its versions.
    pub builder: Arc<dyn Builder>,
    /// Publishes and deprecates them (cloud lines).
    pub publisher: Option<Arc<dyn Publisher>>,
    /// Finds the line's existing images (`amictl import`).
    pub importer: Option<Arc<dyn provider::Importer>>,
}

/// The concrete providers, wired in by the binary.
#[derive(Clone, Default)]
pub struct Providers {
    /// Per image line.
    pub lines: BTreeMap<String, Line>,
    /// Where consumers' hosts are read from.
    pub fleet: Option<Arc<dyn FleetSource>>,
    /// What moves them.
    pub rollout: Option<Arc<dyn Rollout>>,
    /// Inspector findings, for lines with `advisories = { inspector = true }`.
    pub inspector: Option<Arc<dyn AdvisorySource>>,
}

/// What to plan for.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this image line (`amictl build IMAGE`).
    pub only: Option<String>,
    /// Lines to rebuild whatever else holds (`--force`).
    pub forced: BTreeSet<String>,
}

/// The engine: config, state, clock and providers.
pub struct Engine {
    config: Config,
    location: catalog::Location,
    catalog: Mutex<Catalog>,
    clock: Arc<dyn Clock>,
    providers: Providers,
    progress: Arc<dyn Progress>,
    cancel: Cancel,
    actor: String,
}

/// Where `cfg` keeps its state: the SQLite file, or the PostgreSQL database of `[state]
/// url` with its password resolved now (errors name where it comes from, never a value).
pub fn state_location(cfg: &Config) -> Result<catalog::Location, EngineError> {
    let Some(db) = &cfg.state_db else { return Ok(catalog::Location::File(cfg.state.clone())) };
    let bad = |why: String| EngineError::Refused(format!("[state] url: {why}"));
    let url = db.url.resolve().map_err(bad)?;
    let password = db.password.as_ref().map(|p| p.resolve()).transpose().map_err(|e| bad(format!("password: {e}")))?;
    catalog::Location::postgres(url.trim(), password.as_deref()).map_err(bad)
}

impl Engine {
    /// An engine over an open catalog.
    pub fn new(config: Config, catalog: Catalog, providers: Providers) -> Engine {
        Engine {
            config,
            location: catalog.location().clone(),
            catalog: Mutex::new(catalog),
            clock: Arc::new(SystemClock),
            providers,
            progress: Arc::new(Quiet),
            cancel: Cancel::new(),
            actor: format!("amictl {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Records with this clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// Tells people what happens here.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Engine {
        self.progress = progress;
        self
    }

    /// Stops when this is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Engine {
        self.cancel = cancel;
        self
    }

    /// Records events as done by `actor` (`user@host (amictl 0.1.0)`).
    pub fn with_actor(mut self, actor: String) -> Engine {
        self.actor = actor;
        self
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state, for one short use.
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        // A panic while recording cannot leave SQLite half-written (transactions), so the
        // catalog is usable after one.
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn progress(&self) -> &dyn Progress {
        &*self.progress
    }

    pub(crate) fn line(&self, image: &str) -> Result<&Line, EngineError> {
        self.providers.lines.get(image).ok_or_else(|| {
            EngineError::Failed(format!(
                "no builder for image line `{image}` (it is not in {})",
                self.config.file.display()
            ))
        })
    }

    pub(crate) fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Where the state lives.
    pub fn location(&self) -> &catalog::Location {
        &self.location
    }

    /// The cancel token the engine stops on.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// What `apply` would do now, and why; writes nothing.
    pub fn plan(&self, now: Timestamp, scope: &Scope) -> Result<(policy::Plan, Observation), EngineError> {
        let holder = catalog::RunLock::holder_at(&self.location);
        let observation = self.observe(&observe::Mode { live_holder: holder, refresh_parents: false }, now, scope)?;
        Ok((observation.plan(now, scope), observation))
    }
}
