//! Notices for people: build failed, version released, a consumer's deadline in 3 days or
//! passed, an approval waiting. The engine only *queues* them (the outbox, with an audit
//! event), keyed so each is sent once however many cycles see it; `serve` delivers them
//! with retries, so a slow or dead webhook never holds a cycle up.

use std::collections::BTreeSet;

use catalog::{NewEvent, NewNotice};
use jiff::Timestamp;
use provider::EventKind;
use serde_json::{Value, json};

use crate::{ApplyReport, Engine, EngineError, views};

/// How far ahead of a consumer's deadline its owner is warned.
pub const DEADLINE_WARNING_DAYS: i64 = 3;

impl Engine {
    /// Queues a notice for every sink that takes `event`; records `notice.queued` once.
    pub(crate) fn queue_notice(
        &self,
        key: &str,
        event: &str,
        subject: &str,
        text: &str,
        data: Value,
    ) -> Result<bool, EngineError> {
        let sinks: Vec<&str> = self
            .config()
            .serve
            .webhooks
            .values()
            .filter(|w| w.events.iter().any(|e| e == event))
            .map(|w| w.name.as_str())
            .collect();
        if sinks.is_empty() {
            return Ok(false);
        }
        let time = self.now().to_string();
        let event_data = json!({"notice": key, "event": event, "sinks": sinks, "detail": data});
        let notice = NewNotice { key, event, subject, text, data: &data, at: &time };
        let ev = NewEvent {
            time: &time,
            actor: &self.actor,
            kind: EventKind::NoticeQueued.as_str(),
            subject,
            reason: text,
            data: &event_data,
            opens: false,
            closes: None,
        };
        Ok(self.catalog().queue_notice(&notice, &sinks, &ev)?.is_some())
    }

    /// What a finished run tells people: failed builds, released versions, and consumers
    /// whose deadline is near or past (judged at `now` from the scans the run recorded).
    /// Returns how many notices were new.
    pub fn queue_notices(&self, report: &ApplyReport, now: Timestamp) -> Result<usize, EngineError> {
        let mut n = 0;
        let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut released = BTreeSet::new();
        for r in &report.actions {
            if r.held.is_some() {
                continue;
            }
            match (r.action, r.ok) {
                ("build", false) if !r.interrupted => {
                    let error = r.error.clone().unwrap_or_default();
                    let text = format!("build of {} failed: {error}", r.image);
                    n += usize::from(self.queue_notice(
                        &format!("build.failed:{}:{stamp}", r.image),
                        "build.failed",
                        &r.subject,
                        &text,
                        json!({"image": r.image, "error": error}),
                    )?);
                }
                ("build" | "distribute", true) => {
                    released.insert(r.image.clone());
                }
                _ => {}
            }
        }
        let lines = views::lines(self.config(), &self.catalog(), now)?;
        for line in lines.iter().filter(|l| released.contains(&l.image)) {
            let Some(version) = &line.newest else { continue };
            let consumers: Vec<&str> =
                self.config().consumers.values().filter(|c| c.image == line.image).map(|c| c.name.as_str()).collect();
            let deadline =
                now.saturating_add(jiff::SignedDuration::from_secs(self.config().policy.rollout_sla_seconds));
            let text = format!(
                "{} {version} released; consumers {} have until {} to move",
                line.image,
                if consumers.is_empty() { "(none)".to_string() } else { consumers.join(", ") },
                deadline.map(|d| d.to_string()).unwrap_or_default()
            );
            n += usize::from(self.queue_notice(
                &format!("version.released:{}@{version}", line.image),
                "version.released",
                &format!("{}@{version}", line.image),
                &text,
                json!({"image": line.image, "version": version, "consumers": consumers}),
            )?);
        }
        Ok(n + self.queue_deadline_notices(now)?)
    }

    /// Consumers whose deadline is within [`DEADLINE_WARNING_DAYS`] or past, judged at
    /// `now` from their last scans: `serve` asks this every watch interval, so a warning
    /// is not late by up to a whole cycle interval. Returns how many notices were new.
    pub fn queue_deadline_notices(&self, now: Timestamp) -> Result<usize, EngineError> {
        let mut n = 0;
        let consumers = views::consumers(self.config(), &self.catalog(), now)?;
        for c in &consumers {
            let s = &c.summary;
            let Some(newest) = &s.newest else { continue };
            let subject = format!("consumer:{}", c.consumer);
            if s.overdue > 0 {
                let text = format!(
                    "{}: {} host(s) past the deadline to move to {} {newest} ({} day(s) over) — escalate to {}",
                    c.consumer,
                    s.overdue,
                    c.image,
                    s.most_days_over,
                    c.owner.as_deref().unwrap_or("the owner")
                );
                n += usize::from(self.queue_notice(
                    &format!("deadline.passed:{}:{}@{newest}", c.consumer, c.image),
                    "deadline.passed",
                    &subject,
                    &text,
                    json!({"consumer": c.consumer, "image": c.image, "version": newest, "overdue": s.overdue, "owner": c.owner}),
                )?);
            } else if let Some(deadline) = &s.next_deadline {
                let left = views::time(deadline).as_second() - now.as_second();
                if s.within_sla > 0 && left > 0 && left <= DEADLINE_WARNING_DAYS * 86_400 {
                    let text = format!(
                        "{}: {} host(s) must move to {} {newest} by {deadline} (in {DEADLINE_WARNING_DAYS} days or less)",
                        c.consumer, s.within_sla, c.image
                    );
                    n += usize::from(self.queue_notice(
                        &format!("deadline.soon:{}:{}@{newest}", c.consumer, c.image),
                        "deadline.soon",
                        &subject,
                        &text,
                        json!({"consumer": c.consumer, "image": c.image, "version": newest, "deadline": deadline, "behind": s.within_sla}),
                    )?);
                }
            }
        }
        Ok(n)
    }
}
