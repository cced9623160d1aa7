//! The one place amictl reads the clock, so `--now` can answer "what happens on date X".

use anyhow::Result;
use jiff::Timestamp;

use crate::UsageError;

/// The earliest `--now` amictl accepts (no AMI is older).
pub const EARLIEST: &str = "2000-01-01T00:00:00Z";
/// The latest `--now` amictl accepts: far enough for any policy, near enough that every
/// date sum (a ten-year `max_age` on top) stays exact.
pub const LATEST: &str = "2100-12-31T23:59:59Z";

/// `None` → now; `2027-03-01`, an RFC 3339 time, or `+91d` (relative to now), within
/// [`EARLIEST`]..=[`LATEST`].
pub fn resolve(when: Option<&str>) -> Result<Timestamp> {
    let now = Timestamp::now();
    let Some(w) = when else { return Ok(now) };
    let range = || format!("--now {w}: out of range; amictl plans for times from 2000-01-01 to 2100-12-31");
    let t = if let Some(rel) = w.strip_prefix('+') {
        let secs =
            config::parse_duration(rel).ok_or_else(|| UsageError(format!("--now {w}: expected +<n>d, +<n>h, …")))?;
        now.as_second()
            .checked_add(secs)
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or_else(|| UsageError(range()))?
    } else if let Ok(t) = w.parse::<Timestamp>() {
        t
    } else if let Ok(d) = w.parse::<jiff::civil::Date>() {
        d.to_zoned_datetime(jiff::tz::TimeZone::UTC).map_err(|_| UsageError(range()))?.timestamp()
    } else {
        return Err(UsageError(format!("--now {w}: expected a date (2027-03-01), an RFC 3339 time or +91d")).into());
    };
    let (earliest, latest): (Timestamp, Timestamp) = (EARLIEST.parse()?, LATEST.parse()?);
    if t < earliest || t > latest {
        return Err(UsageError(range()).into());
    }
    Ok(t)
}

/// A modelled clock: it reads `start` when amictl starts and moves on with real time from
/// there, so a cycle `serve --from` runs at a modelled hour records its events at that hour
/// (in order, seconds apart) while the machine's clock says something else.
pub struct Modelled {
    start: Timestamp,
    began: std::time::Instant,
}

impl Modelled {
    pub fn starting(start: Timestamp) -> Modelled {
        Modelled { start, began: std::time::Instant::now() }
    }
}

impl engine::Clock for Modelled {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.began.elapsed()).unwrap_or_default();
        self.start.saturating_add(elapsed).unwrap_or(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_a_date_a_time_or_an_offset_within_the_documented_range() {
        assert_eq!(resolve(Some("2027-03-01")).unwrap().to_string(), "2027-03-01T00:00:00Z");
        assert!(resolve(Some("+91d")).unwrap() > Timestamp::now());
        for bad in ["9999-12-31", "1999-12-31", "+9223372036854775807s", "+99999999d", "-2000-01-01"] {
            let err = resolve(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("out of range") || err.contains("expected"), "{bad}: {err}");
            assert!(!err.contains("overflow"), "{bad}: {err}");
        }
    }
}
