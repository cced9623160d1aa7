//! Where versions were published, the deprecation of their AMIs, and notices to owners.

use provider::{AmiRef, Distribution, How, Target};
use serde::Serialize;

use crate::store::args;
use crate::{Catalog, CatalogError, Result, rows};

/// One version published in one account and region, and when it first was (a re-publish
/// keeps that time: it is the version's release there). Its JSON is flat: `{account,
/// region, image_id, how, parameters, at}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where and how.
    pub distribution: Distribution,
    /// When it was first published there (RFC 3339).
    pub at: String,
}

impl Serialize for Published {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let d = &self.distribution;
        let mut m = s.serialize_struct("Published", 6)?;
        m.serialize_field("account", &d.target.account)?;
        m.serialize_field("region", &d.target.region)?;
        m.serialize_field("image_id", &d.image_id)?;
        m.serialize_field("how", &d.how)?;
        m.serialize_field("parameters", &d.parameters)?;
        m.serialize_field("at", &self.at)?;
        m.end()
    }
}

/// The deprecation recorded for one AMI of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deprecation {
    /// The AMI.
    pub ami: AmiRef,
    /// The deprecation time asked for, or set (RFC 3339).
    pub at: String,
    /// Why the last attempt failed; `None` once set.
    pub error: Option<String>,
    /// The AMI no longer exists (nothing left to deprecate).
    pub gone: bool,
    /// When this was recorded.
    pub recorded_at: String,
}

impl Catalog {
    /// Records where a version was published; a re-publish updates what is there and keeps
    /// the first time.
    pub fn record_distribution(&self, build_id: &str, p: &Published) -> Result<()> {
        let d = &p.distribution;
        self.exec(
            "INSERT INTO distributions (build_id, account, region, image_id, how, parameters, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (build_id, account, region) DO UPDATE SET image_id = excluded.image_id, how = excluded.how, parameters = excluded.parameters",
            args![build_id, d.target.account, d.target.region, d.image_id, d.how.as_str(), d.parameters.join(","), p.at],
        )?;
        Ok(())
    }

    /// Where a version is published, by account and region.
    pub fn distributions(&self, build_id: &str) -> Result<Vec<Published>> {
        let found = self.all("SELECT account, region, image_id, how, parameters, at FROM distributions WHERE build_id = ?1 ORDER BY account, region", args![build_id])?;
        rows(self, found, |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<String>(4)?,
                r.get::<String>(5)?,
            ))
        })?
        .into_iter()
        .map(|(account, region, image_id, how, parameters, at)| {
            let how = How::parse(&how).ok_or_else(|| CatalogError::Io {
                path: self.path.clone(),
                message: format!("build {build_id} is published to {account}/{region} in an unknown way `{how}`"),
            })?;
            let parameters = parameters.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect();
            Ok(Published {
                distribution: Distribution { target: Target::new(account, region), image_id, how, parameters },
                at,
            })
        })
        .collect()
    }

    /// Records an attempt to deprecate one AMI: `error` is `None` when it was set (or the AMI
    /// is `gone`).
    pub fn record_deprecation(&self, build_id: &str, d: &Deprecation) -> Result<()> {
        let ami = &d.ami;
        self.exec(
            "INSERT INTO deprecations (build_id, account, region, image_id, at, error, gone, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (build_id, account, region, image_id) DO UPDATE SET at = excluded.at, error = excluded.error, gone = excluded.gone, recorded_at = excluded.recorded_at",
            args![build_id, ami.target.account, ami.target.region, ami.image_id, d.at, d.error, d.gone, d.recorded_at],
        )?;
        Ok(())
    }

    /// The deprecations recorded for a version's AMIs.
    pub fn deprecations(&self, build_id: &str) -> Result<Vec<Deprecation>> {
        let found = self.all("SELECT account, region, image_id, at, error, gone, recorded_at FROM deprecations WHERE build_id = ?1 ORDER BY account, region, image_id", args![build_id])?;
        rows(self, found, |r| {
            Ok(Deprecation {
                ami: AmiRef::new(r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?),
                at: r.get(3)?,
                error: r.get(4)?,
                gone: r.get(5)?,
                recorded_at: r.get(6)?,
            })
        })
    }

    /// Records a notice sent to a consumer's owner about a version.
    pub fn record_notice(
        &self,
        consumer: &str,
        image: &str,
        version: &str,
        topic: &str,
        message_id: &str,
        at: &str,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO notices (consumer, image, version, topic, message_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![consumer, image, version, topic, message_id, at],
        )?;
        Ok(())
    }

    /// When a consumer's owner was last told about a version (RFC 3339).
    pub fn last_notice(&self, consumer: &str, image: &str, version: &str) -> Result<Option<String>> {
        let row = self.one(
            "SELECT MAX(at) FROM notices WHERE consumer = ?1 AND image = ?2 AND version = ?3",
            args![consumer, image, version],
        )?;
        row.map(|r| r.get::<Option<String>>(0)).transpose().map(Option::flatten).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::catalog;

    #[test]
    fn a_republished_distribution_updates_its_row_and_keeps_its_release_time() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({"kind": "never_built"});
        c.insert_build(&crate::versions::tests_support::build("b1", "2026.11.27.1", &reason)).unwrap();
        let mut p = Published {
            distribution: Distribution {
                target: Target::new("workflow", "eu-west-2"),
                image_id: "ami-1".into(),
                how: How::Shared,
                parameters: vec!["/p/1".into(), "/p/latest".into()],
            },
            at: "t1".into(),
        };
        c.record_distribution("b1", &p).unwrap();
        p.distribution.image_id = "ami-2".into();
        p.at = "t2".into();
        c.record_distribution("b1", &p).unwrap();
        p.at = "t1".into();
        assert_eq!(c.distributions("b1").unwrap(), vec![p.clone()], "what is there now, first published at t1");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            (json["account"].as_str(), json["region"].as_str(), json["how"].as_str()),
            (Some("workflow"), Some("eu-west-2"), Some("shared"))
        );
        assert!(c.distributions("b2").unwrap().is_empty());
    }

    #[test]
    fn a_deprecation_attempt_is_replaced_by_the_retry_that_sets_it() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({});
        c.insert_build(&crate::versions::tests_support::build("b1", "2026.11.27.1", &reason)).unwrap();
        let ami = AmiRef::new("platform", "eu-west-1", "ami-1");
        let attempt = |error: Option<&str>, recorded_at: &str| Deprecation {
            ami: ami.clone(),
            at: "2026-12-15T00:00:00Z".into(),
            error: error.map(str::to_string),
            gone: false,
            recorded_at: recorded_at.into(),
        };
        c.record_deprecation("b1", &attempt(Some("AccessDenied"), "t1")).unwrap();
        c.record_deprecation("b1", &attempt(None, "t2")).unwrap();
        let got = c.deprecations("b1").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].error.as_deref(), got[0].recorded_at.as_str()), (None, "t2"));
        assert_eq!(c.last_notice("goobi", "host", "v1").unwrap(), None);
        c.record_notice("goobi", "host", "v1", "arn:topic", "m-1", "2026-12-01T00:00:00Z").unwrap();
        c.record_notice("goobi", "host", "v1", "arn:topic", "m-2", "2026-12-02T00:00:00Z").unwrap();
        assert_eq!(c.last_notice("goobi", "host", "v1").unwrap().as_deref(), Some("2026-12-02T00:00:00Z"));
    }
}
