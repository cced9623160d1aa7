//! The one place amictl reads the clock, so `--now` can answer "what happens on date X".

use anyhow::Result;
use jiff::Timestamp;

use crate::UsageError;

/// `None` → now; `2027-03-01`, an RFC 3339 time, or `+91d` (relative to now).
pub fn resolve(when: Option<&str>) -> Result<Timestamp> {
    let now = Timestamp::now();
    let Some(w) = when else { return Ok(now) };
    if let Some(rel) = w.strip_prefix('+') {
        let secs =
            config::parse_duration(rel).ok_or_else(|| UsageError(format!("--now {w}: expected +<n>d, +<n>h, …")))?;
        return Ok(Timestamp::from_second(now.as_second() + secs)?);
    }
    if let Ok(t) = w.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = w.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned_datetime(jiff::tz::TimeZone::UTC)?.timestamp());
    }
    Err(UsageError(format!("--now {w}: expected a date (2027-03-01), an RFC 3339 time or +91d")).into())
}
