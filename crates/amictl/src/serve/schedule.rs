//! When `serve`'s jobs fall due: pure, from the config and the last runs, so the real and
//! the modelled clock share every rule.
//!
//! - **Cycles** follow `[serve] schedule` (croner, read in `[serve] timezone`, so "03:00
//!   every Monday" stays 03:00 across daylight saving). One falls due at the first
//!   occurrence after the last cycle; a server that was down when one was due runs it as
//!   soon as it starts (once, however many were missed), and one that never ran a cycle
//!   runs one at start.
//! - **The advisory watch** runs every `watch_interval` after its last run.

use anyhow::Result;
use croner::Cron;
use jiff::Timestamp;

use crate::UsageError;

/// The schedule of one server.
pub struct Schedule {
    cron: Option<Cron>,
    /// In croner's jiff (0.2): times cross by their second.
    tz: jiff02::tz::TimeZone,
    watch_every: i64,
}

impl Schedule {
    pub fn new(cfg: &config::Serve) -> Result<Schedule> {
        let cron = match &cfg.schedule {
            None => None,
            Some(text) => Some(
                croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Optional)
                    .build()
                    .parse(text)
                    .map_err(|e| UsageError(format!("[serve] schedule {text:?}: {e}")))?,
            ),
        };
        let tz = jiff02::tz::TimeZone::get(&cfg.timezone).map_err(|e| UsageError(format!("[serve] timezone: {e}")))?;
        Ok(Schedule { cron, tz, watch_every: cfg.watch_interval_seconds })
    }

    /// The first scheduled cycle strictly after `t`; `None` without a schedule.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let cron = self.cron.as_ref()?;
        let at = jiff02::Timestamp::from_second(t.as_second()).ok()?.to_zoned(self.tz.clone());
        let next = cron.find_next_occurrence(&at, false).ok()?;
        Timestamp::from_second(next.timestamp().as_second()).ok()
    }

    /// When the next cycle is due, given the last one (`None`: never ran, due now).
    pub fn cycle_due(&self, last: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        match last {
            None => Some(now),
            Some(last) => self.next_after(last),
        }
    }

    /// When the next watch is due, given the last one.
    pub fn watch_due(&self, last: Option<Timestamp>, now: Timestamp) -> Timestamp {
        match last {
            None => now,
            Some(last) => last.saturating_add(jiff::SignedDuration::from_secs(self.watch_every)).unwrap_or(now),
        }
    }

    pub fn watch_interval(&self) -> i64 {
        self.watch_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str) -> Schedule {
        let cfg = config::Serve { schedule: Some(cron.into()), timezone: tz.into(), ..config::Serve::default() };
        Schedule::new(&cfg).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_weekly_cycle_stays_at_local_time_across_daylight_saving() {
        let s = schedule("0 3 * * MON", "Europe/London");
        // Winter: 03:00 GMT is 03:00 UTC.
        assert_eq!(s.next_after(t("2027-01-01T00:00:00Z")), Some(t("2027-01-04T03:00:00Z")));
        // Summer: 03:00 BST is 02:00 UTC.
        assert_eq!(s.next_after(t("2027-06-01T00:00:00Z")), Some(t("2027-06-07T02:00:00Z")));
    }

    #[test]
    fn a_missed_cycle_is_due_at_once_and_only_once() {
        let s = schedule("0 3 * * *", "UTC");
        let now = t("2027-01-10T12:00:00Z");
        // Last ran a week ago: the first occurrence after that is long past, so it is due now.
        let due = s.cycle_due(Some(t("2027-01-03T03:00:00Z")), now).unwrap();
        assert!(due <= now);
        // Once it has run (now), the next is tomorrow at 03:00.
        assert_eq!(s.cycle_due(Some(now), now), Some(t("2027-01-11T03:00:00Z")));
        // Never ran: due now.
        assert_eq!(s.cycle_due(None, now), Some(now));
        // No schedule: only the start-up cycle and triggers.
        let none = Schedule::new(&config::Serve::default()).unwrap();
        assert_eq!(none.cycle_due(Some(now), now), None);
    }

    #[test]
    fn the_watch_runs_every_interval_after_its_last_run() {
        let cfg = config::Serve { watch_interval_seconds: 900, ..config::Serve::default() };
        let s = Schedule::new(&cfg).unwrap();
        let now = t("2027-01-01T00:00:00Z");
        assert_eq!(s.watch_due(None, now), now);
        assert_eq!(s.watch_due(Some(now), now), t("2027-01-01T00:15:00Z"));
    }
}
