//! When each of `serve`'s jobs last ran, and what it keeps between runs (the advisory
//! watch's last seen advisories): kept in the state so a restarted server neither repeats
//! a cycle it finished nor forgets one that fell due while it was down.

use crate::store::args;
use crate::{Catalog, Result};

impl Catalog {
    /// A job's last run (RFC 3339) and its data.
    pub fn job(&self, job: &str) -> Result<Option<(String, serde_json::Value)>> {
        let row = self.one("SELECT last_run, data FROM schedule WHERE job = ?1", args![job])?;
        row.map(|r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))
            .transpose()
            .map(|o| o.map(|(t, d)| (t, serde_json::from_str(&d).unwrap_or(serde_json::Value::Null))))
            .map_err(|e| self.err(e))
    }

    /// Records that `job` ran at `at`, with `data`.
    pub fn set_job(&mut self, job: &str, at: &str, data: &serde_json::Value) -> Result<()> {
        self.exec(
            "INSERT INTO schedule (job, last_run, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET last_run = excluded.last_run, data = excluded.data",
            args![job, at, data.to_string()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::catalog;

    #[test]
    fn a_job_remembers_its_last_run() {
        let (_d, mut c) = catalog();
        assert_eq!(c.job("cycle").unwrap(), None);
        c.set_job("cycle", "2027-01-01T03:00:00Z", &serde_json::json!({"n": 1})).unwrap();
        c.set_job("cycle", "2027-01-08T03:00:00Z", &serde_json::json!({"n": 2})).unwrap();
        assert_eq!(c.job("cycle").unwrap(), Some(("2027-01-08T03:00:00Z".into(), serde_json::json!({"n": 2}))));
    }
}
