//! Fleet scans: which version each consumer host ran, as each scan judged it.

use serde::Serialize;

use crate::store::{DbError, Row, args};
use crate::{Catalog, Result, rows};

/// One host as a fleet scan judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanHost {
    /// The account's config name.
    pub account: String,
    /// Its region.
    pub region: String,
    /// `i-…`.
    pub instance_id: String,
    /// The AMI it ran.
    pub image_id: String,
    /// The line that AMI is a version of.
    pub image: Option<String>,
    /// The version.
    pub version: Option<String>,
    /// `current`, `within-sla`, `overdue`, `exempt`, `unmanaged`.
    pub standing: String,
    /// The full assessment, as JSON.
    pub detail: String,
}

/// One consumer's scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// The consumer.
    pub consumer: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why the consumer could not be read; then `hosts` is empty and means nothing.
    pub unknown: Option<String>,
    /// Its hosts.
    pub hosts: Vec<ScanHost>,
}

impl Catalog {
    /// Records one consumer's scan: its hosts, or why it could not be read.
    pub fn record_scan(
        &mut self,
        at: &str,
        consumer: &str,
        hosts: std::result::Result<&[ScanHost], &str>,
    ) -> Result<i64> {
        self.write(|tx| {
            // Numbered here (writers take turns), not by either database's own counter,
            // so a copied history keeps its numbers.
            let scan_id: i64 = tx
                .query_opt("INSERT INTO scans (scan_id, at, consumer, unknown) VALUES ((SELECT COALESCE(MAX(scan_id), 0) + 1 FROM scans), ?1, ?2, ?3) RETURNING scan_id", args![at, consumer, hosts.err()])?
                .ok_or_else(|| DbError::Decode("INSERT … RETURNING gave no row".into()))?
                .get(0)?;
        if let Ok(hosts) = hosts {
            for h in hosts {
                tx.execute("INSERT INTO scan_hosts (scan_id, account, region, instance_id, image_id, image, version, standing, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", args![
                    scan_id,
                    h.account,
                    h.region,
                    h.instance_id,
                    h.image_id,
                    h.image,
                    h.version,
                    h.standing,
                    h.detail
                ])?;
            }
        }
            Ok(scan_id)
        })
    }

    /// Each consumer's latest scan.
    pub fn latest_scans(&self) -> Result<Vec<Scan>> {
        let found = self.all("SELECT scan_id, consumer, at, unknown FROM scans WHERE scan_id IN (SELECT MAX(scan_id) FROM scans GROUP BY consumer) ORDER BY consumer", args![])?;
        let scans = rows(self, found, |r| {
            Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?, r.get::<Option<String>>(3)?))
        })?;
        let mut out = Vec::new();
        for (id, consumer, at, unknown) in scans {
            let found = self.all("SELECT account, region, instance_id, image_id, image, version, standing, detail FROM scan_hosts WHERE scan_id = ?1 ORDER BY rowid", args![id])?;
            let host = |r: &Row| -> std::result::Result<ScanHost, DbError> {
                Ok(ScanHost {
                    account: r.get(0)?,
                    region: r.get(1)?,
                    instance_id: r.get(2)?,
                    image_id: r.get(3)?,
                    image: r.get(4)?,
                    version: r.get(5)?,
                    standing: r.get(6)?,
                    detail: r.get(7)?,
                })
            };
            out.push(Scan { consumer, at, unknown, hosts: rows(self, found, host)? });
        }
        Ok(out)
    }

    /// The `(image, version)` pairs some consumer's latest scan found running. A consumer
    /// whose latest scan is unknown keeps what its last good scan found.
    pub fn versions_in_use(&self) -> Result<std::collections::BTreeSet<(String, String)>> {
        let found = self.all(
            "SELECT DISTINCT h.image, h.version FROM scan_hosts h
             WHERE h.image IS NOT NULL AND h.version IS NOT NULL AND h.scan_id IN (
                SELECT MAX(scan_id) FROM scans WHERE unknown IS NULL GROUP BY consumer)",
            args![],
        )?;
        Ok(rows(self, found, |r| Ok((r.get(0)?, r.get(1)?)))?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::catalog;

    #[test]
    fn versions_in_use_come_from_each_consumers_latest_good_scan() {
        let (_d, mut c) = catalog();
        let host = |v: &str| ScanHost {
            account: "workflow".into(),
            region: "eu-west-1".into(),
            instance_id: "i-1".into(),
            image_id: "ami-1".into(),
            image: Some("host".into()),
            version: Some(v.into()),
            standing: "current".into(),
            detail: "{}".into(),
        };
        c.record_scan("t1", "goobi", Ok(&[host("v1")])).unwrap();
        c.record_scan("t2", "goobi", Ok(&[host("v2")])).unwrap();
        c.record_scan("t1", "digirati", Ok(&[host("v1")])).unwrap();
        c.record_scan("t2", "digirati", Err("access denied")).unwrap();
        let used: Vec<(String, String)> = c.versions_in_use().unwrap().into_iter().collect();
        assert_eq!(used, [("host".to_string(), "v1".to_string()), ("host".into(), "v2".into())]);
        let latest = c.latest_scans().unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!((latest[0].consumer.as_str(), latest[0].unknown.as_deref()), ("digirati", Some("access denied")));
        assert_eq!(latest[1].hosts[0].version.as_deref(), Some("v2"));
    }
}
