//! The advisory watch: between scheduled cycles, each line's feed is read (through its
//! cache: a `repomd.xml` feed is downloaded only when its checksum moved) and the newest
//! version checked as the planner would. Fixes at or above the threshold published after
//! the version was built, and not seen by an earlier watch, start a cycle — so a fix waits
//! at most one watch interval for its rebuild to be planned. The match is recorded first
//! (`watch.matched`, with when each fix was published and when the watch saw it).

use std::collections::BTreeSet;

use jiff::Timestamp;
use provider::EventKind;
use serde::Serialize;
use serde_json::json;

use crate::advisories::{self, Mode, Subject};
use crate::{Engine, EngineError};

/// New fixes for one line.
#[derive(Debug, Clone, Serialize)]
pub struct Matched {
    /// The line.
    pub image: String,
    /// Its newest version, which lacks them.
    pub version: String,
    /// `ALAS2-2027-0001` …, with when each was published.
    pub advisories: Vec<(String, Timestamp)>,
}

/// What one watch saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Watch {
    /// Lines checked.
    pub checked: usize,
    /// Lines whose check is stale (the feed could not be read), and why.
    pub stale: Vec<(String, String)>,
    /// Lines with fixes no earlier watch saw.
    pub matched: Vec<Matched>,
    /// Every fix that makes a line due (`image:advisory`), to pass as `seen` next time.
    pub due: BTreeSet<String>,
}

impl Engine {
    /// Checks every line's feed at `now`; `seen` are the fixes an earlier watch reported.
    pub fn watch(&self, now: Timestamp, seen: &BTreeSet<String>) -> Result<Watch, EngineError> {
        let cfg = self.config();
        let threshold = advisories::threshold(cfg);
        let mut out = Watch::default();
        for image in cfg.images.values().filter(|i| i.advisories.is_some()) {
            let Some(subject) = Subject::newest(cfg, &self.catalog(), image)? else { continue };
            let inspector = self.providers().inspector.as_deref();
            let Some(checked) = advisories::check(cfg, &subject, inspector, Mode::Live, now) else { continue };
            out.checked += 1;
            if let Some(why) = &checked.stale {
                out.stale.push((image.name.clone(), why.clone()));
            }
            let fixes = match checked.for_policy(threshold) {
                policy::AdvisoryCheck::Findings(f) | policy::AdvisoryCheck::Stale { findings: f, .. } => f,
            };
            let built = crate::views::time(subject.version.built_at());
            let mut fresh: Vec<(String, Timestamp)> = Vec::new();
            // A fix dated after now (a skewed clock, a modelled one) is not news yet.
            for f in policy::fresh_fixes(&fixes, built).into_iter().filter(|f| f.published <= now) {
                let key = format!("{}:{}", image.name, f.advisory);
                out.due.insert(key.clone());
                if !seen.contains(&key) && !fresh.iter().any(|(a, _)| *a == f.advisory) {
                    fresh.push((f.advisory.clone(), f.published));
                }
            }
            if !fresh.is_empty() {
                let names: Vec<&str> = fresh.iter().map(|(a, _)| a.as_str()).collect();
                let earliest = fresh.iter().map(|(_, p)| *p).min().unwrap_or(now);
                self.note(
                    EventKind::WatchMatched,
                    &image.name,
                    &format!(
                        "{} new {}+ fix(es) for {}@{}: {} — starting a cycle",
                        fresh.len(),
                        cfg.policy.rebuild_on_severity,
                        image.name,
                        subject.version.version,
                        names.join(", ")
                    ),
                    json!({
                        "version": subject.version.version,
                        "advisories": fresh.iter().map(|(a, p)| json!({"advisory": a, "published": p.to_string()})).collect::<Vec<_>>(),
                        "seen_at": now.to_string(),
                        "seconds_since_published": now.as_second() - earliest.as_second(),
                        "feed": checked.source,
                    }),
                )?;
                out.matched.push(Matched {
                    image: image.name.clone(),
                    version: subject.version.version.clone(),
                    advisories: fresh,
                });
            }
        }
        Ok(out)
    }

    /// Records that a cycle could not run, so the chain shows the gap and why.
    pub fn cycle_failed(&self, trigger: &str, error: &str) -> Result<(), EngineError> {
        self.note(
            EventKind::CycleFailed,
            "*",
            &format!("{trigger} cycle failed: {error}"),
            json!({"trigger": trigger}),
        )?;
        Ok(())
    }
}
