//! Image versions: the build state machine, lineage, components, manifests, artifacts
//! and tests.

use provider::{Artifact, ArtifactKind, Package, TestResult};
use serde::Serialize;

use crate::store::{Sql, args};
use crate::{Catalog, CatalogError, Result, rows};

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum BuildState {
    Pending,
    Building,
    Testing,
    Available,
    Failed,
    Retired,
}

impl BuildState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Pending => "pending",
            BuildState::Building => "building",
            BuildState::Testing => "testing",
            BuildState::Available => "available",
            BuildState::Failed => "failed",
            BuildState::Retired => "retired",
        }
    }

    /// The state a stored name stands for (anything unknown reads as failed).
    pub fn parse(s: &str) -> BuildState {
        match s {
            "pending" => BuildState::Pending,
            "building" => BuildState::Building,
            "testing" => BuildState::Testing,
            "available" => BuildState::Available,
            "retired" => BuildState::Retired,
            _ => BuildState::Failed,
        }
    }

    /// The transitions the state machine allows.
    pub fn can_become(self, next: BuildState) -> bool {
        use BuildState::*;
        matches!(
            (self, next),
            (Pending, Building)
                | (Pending, Failed)
                | (Building, Testing)
                | (Building, Failed)
                | (Testing, Available)
                | (Testing, Failed)
                | (Available, Retired)
                | (Failed, Retired)
        )
    }

    /// Pending, building or testing.
    pub fn is_unfinished(self) -> bool {
        matches!(self, BuildState::Pending | BuildState::Building | BuildState::Testing)
    }
}

/// A component as one build used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentUse {
    /// Its config name.
    pub name: String,
    /// Its configured version.
    pub version: String,
    /// SHA-256 of its document.
    pub sha256: String,
}

/// One version of an image line.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// Its build.
    pub build_id: String,
    /// The line.
    pub image: String,
    /// `YYYY.MM.DD.N`.
    pub version: String,
    /// Where it stands.
    pub state: BuildState,
    /// The planner's reasons, as JSON.
    pub reason: serde_json::Value,
    /// The recipe it was built from.
    pub recipe_hash: String,
    /// The parent's id (AMI id or content hash); empty until known.
    pub parent_id: String,
    /// The parent's name.
    pub parent_name: String,
    /// When the parent was made or prepared.
    pub parent_created: String,
    /// RFC 3339.
    pub started_at: String,
    /// When it became available or failed.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Its logs.
    pub log_dir: String,
    /// The process that started it (`pid`), to tell a live build from an interrupted one.
    pub runner: Option<String>,
    /// The cloud execution it started (an Image Builder image ARN); empty when none.
    pub execution: String,
    /// Why its last retirement was refused (what still uses it, when found).
    pub cleanup: Option<String>,
    /// The components it was built with.
    pub components: Vec<ComponentUse>,
    /// Packages in its manifest.
    pub package_count: usize,
    /// Tests passed.
    pub tests_passed: usize,
    /// Tests failed.
    pub tests_failed: usize,
}

impl Version {
    /// When it finished building (started, if it never finished).
    pub fn built_at(&self) -> &str {
        self.finished_at.as_deref().unwrap_or(&self.started_at)
    }
}

/// A build about to start.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct NewBuild<'a> {
    pub build_id: &'a str,
    pub image: &'a str,
    pub version: &'a str,
    /// The planner's reasons, as JSON.
    pub reason: &'a serde_json::Value,
    pub recipe_hash: &'a str,
    pub parent_id: &'a str,
    pub parent_name: &'a str,
    pub parent_created: &'a str,
    pub started_at: &'a str,
    pub log_dir: &'a str,
    pub components: &'a [ComponentUse],
    /// The process that starts it (`pid`).
    pub runner: &'a str,
}

impl Catalog {
    /// The next version name for `image` on `date` (`YYYY.MM.DD`): `YYYY.MM.DD.N`.
    pub fn next_version(&self, image: &str, date: &str) -> Result<String> {
        let row = self.one(
            "SELECT COUNT(*) FROM builds WHERE image = ?1 AND version LIKE ?2",
            args![image, format!("{date}.%")],
        )?;
        let n: i64 = row.map_or(Ok(0), |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(format!("{date}.{}", n + 1))
    }

    /// Records a new build as `pending`, with its components.
    pub fn insert_build(&mut self, b: &NewBuild<'_>) -> Result<()> {
        self.write(|tx| {
            tx.execute(
            "INSERT INTO builds (build_id, image, version, state, reason, recipe_hash, parent_id, parent_name, parent_created, started_at, log_dir, runner)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            args![b.build_id, b.image, b.version, b.reason.to_string(), b.recipe_hash, b.parent_id, b.parent_name, b.parent_created, b.started_at, b.log_dir, b.runner],
        )?;
            insert_components(tx, b.build_id, b.components)
        })
    }

    /// Adopts an image amictl did not make as an `available` version (`amictl import`):
    /// the build row (finished when it was made), where each copy lives, its packages and
    /// its AMIs as artifacts — all or nothing.
    pub fn insert_imported(
        &mut self,
        b: &NewBuild<'_>,
        execution: Option<&str>,
        published: &[crate::Published],
        packages: &[Package],
        artifacts: &[Artifact],
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
            "INSERT INTO builds (build_id, image, version, state, reason, recipe_hash, parent_id, parent_name, parent_created, started_at, finished_at, log_dir, runner, execution)
             VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12)",
            args![b.build_id, b.image, b.version, b.reason.to_string(), b.recipe_hash, b.parent_id, b.parent_name, b.parent_created, b.started_at, b.log_dir, b.runner, execution.unwrap_or_default()],
        )?;
            for p in published {
                let d = &p.distribution;
                tx.execute(
                "INSERT INTO distributions (build_id, account, region, image_id, how, parameters, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                args![b.build_id, d.target.account, d.target.region, d.image_id, d.how.as_str(), d.parameters.join(","), p.at],
            )?;
            }
            insert_outputs(tx, b.build_id, packages, artifacts, &[])
        })
    }

    /// Adds the components a build reports it ran (an Image Builder recipe's), with where
    /// each came from in place of a document hash.
    pub fn add_components(&mut self, build_id: &str, components: &[ComponentUse]) -> Result<()> {
        self.write(|tx| insert_components(tx, build_id, components))
    }

    /// Moves a build along its state machine; an illegal transition is an error.
    pub fn set_state(&self, build_id: &str, next: BuildState, failure: Option<&str>, at: &str) -> Result<()> {
        let current = self
            .state(build_id)?
            .ok_or_else(|| CatalogError::Io { path: self.path.clone(), message: format!("no build {build_id}") })?;
        if !current.can_become(next) {
            return Err(CatalogError::Io {
                path: self.path.clone(),
                message: format!("build {build_id} cannot go from {} to {}", current.as_str(), next.as_str()),
            });
        }
        let finished = matches!(next, BuildState::Available | BuildState::Failed).then_some(at);
        self.exec(
            "UPDATE builds SET state = ?2, failure = COALESCE(?3, failure), finished_at = COALESCE(?4, finished_at) WHERE build_id = ?1",
            args![build_id, next.as_str(), failure, finished],
        )?;
        Ok(())
    }

    /// A build's state now.
    pub fn state(&self, build_id: &str) -> Result<Option<BuildState>> {
        let row = self.one("SELECT state FROM builds WHERE build_id = ?1", args![build_id])?;
        let found: Option<String> = row.map(|r| r.get(0)).transpose().map_err(|e| self.err(e))?;
        Ok(found.map(|s| BuildState::parse(&s)))
    }

    /// Records why a retirement was refused, or clears it (`None`).
    pub fn set_cleanup(&self, build_id: &str, why: Option<&str>) -> Result<()> {
        self.exec("UPDATE builds SET cleanup = ?2 WHERE build_id = ?1", args![build_id, why])?;
        Ok(())
    }

    /// Records the cloud execution a build started.
    pub fn set_execution(&self, build_id: &str, execution: &str) -> Result<()> {
        self.exec("UPDATE builds SET execution = ?2 WHERE build_id = ?1", args![build_id, execution])?;
        Ok(())
    }

    /// Sets a build's parent once it is known (it may take a debootstrap to learn it).
    pub fn set_parent(&self, build_id: &str, id: &str, name: &str, created: &str) -> Result<()> {
        self.exec(
            "UPDATE builds SET parent_id = ?2, parent_name = ?3, parent_created = ?4 WHERE build_id = ?1",
            args![build_id, id, name, created],
        )?;
        Ok(())
    }

    /// Records what a build produced, all or nothing.
    pub fn record_outputs(
        &mut self,
        build_id: &str,
        packages: &[Package],
        artifacts: &[Artifact],
        tests: &[TestResult],
    ) -> Result<()> {
        self.write(|tx| insert_outputs(tx, build_id, packages, artifacts, tests))
    }

    /// Versions of one image (or all), oldest first.
    pub fn versions(&self, image: Option<&str>) -> Result<Vec<Version>> {
        let found = self
            .all(
                "SELECT b.build_id, b.image, b.version, b.state, b.reason, b.recipe_hash, b.parent_id, b.parent_name, b.parent_created,
                        b.started_at, b.finished_at, b.failure, b.log_dir, b.runner, b.execution, b.cleanup,
                        (SELECT COUNT(*) FROM packages p WHERE p.build_id = b.build_id),
                        (SELECT COUNT(*) FROM test_results t WHERE t.build_id = b.build_id AND t.passed),
                        (SELECT COUNT(*) FROM test_results t WHERE t.build_id = b.build_id AND NOT t.passed)
                 FROM builds b WHERE (CAST(?1 AS TEXT) IS NULL OR b.image = ?1) ORDER BY b.started_at, b.rowid",
                args![image],
            )?;
        let mut out = rows(self, found, |r| {
            Ok(Version {
                build_id: r.get(0)?,
                image: r.get(1)?,
                version: r.get(2)?,
                state: BuildState::parse(&r.get::<String>(3)?),
                reason: serde_json::from_str(&r.get::<String>(4)?).unwrap_or(serde_json::Value::Null),
                recipe_hash: r.get(5)?,
                parent_id: r.get(6)?,
                parent_name: r.get(7)?,
                parent_created: r.get(8)?,
                started_at: r.get(9)?,
                finished_at: r.get(10)?,
                failure: r.get(11)?,
                log_dir: r.get(12)?,
                runner: r.get(13)?,
                execution: r.get(14)?,
                cleanup: r.get(15)?,
                components: Vec::new(),
                package_count: r.get::<i64>(16)? as usize,
                tests_passed: r.get::<i64>(17)? as usize,
                tests_failed: r.get::<i64>(18)? as usize,
            })
        })?;
        for v in &mut out {
            v.components = self.components(&v.build_id)?;
        }
        Ok(out)
    }

    fn components(&self, build_id: &str) -> Result<Vec<ComponentUse>> {
        let found = self.all(
            "SELECT name, version, sha256 FROM build_components WHERE build_id = ?1 ORDER BY rowid",
            args![build_id],
        )?;
        rows(self, found, |r| Ok(ComponentUse { name: r.get(0)?, version: r.get(1)?, sha256: r.get(2)? }))
    }

    /// A version's package manifest, by name and arch.
    pub fn packages(&self, build_id: &str) -> Result<Vec<Package>> {
        let found = self.all("SELECT name, version, arch, source_name, source_version FROM packages WHERE build_id = ?1 ORDER BY name, arch", args![build_id])?;
        rows(self, found, |r| {
            Ok(Package {
                name: r.get(0)?,
                version: r.get(1)?,
                arch: r.get(2)?,
                source_name: r.get(3)?,
                source_version: r.get(4)?,
            })
        })
    }

    /// What a version's build made, in the order it was recorded. A kind this amictl does
    /// not know is an error naming it (the state is newer or damaged).
    pub fn artifacts(&self, build_id: &str) -> Result<Vec<Artifact>> {
        let found = self.all(
            "SELECT kind, path, sha256, size FROM artifacts WHERE build_id = ?1 ORDER BY rowid",
            args![build_id],
        )?;
        rows(self, found, |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?, r.get::<i64>(3)?)))?
            .into_iter()
            .map(|(kind, path, sha256, size)| {
                let kind = ArtifactKind::parse(&kind).ok_or_else(|| CatalogError::Io {
                    path: self.path.clone(),
                    message: format!("build {build_id} has an artifact of unknown kind `{kind}`"),
                })?;
                Ok(Artifact { kind, path, sha256, size: size as u64 })
            })
            .collect()
    }

    /// A version's test results, in order.
    pub fn tests(&self, build_id: &str) -> Result<Vec<TestResult>> {
        let found = self
            .all("SELECT name, passed, detail FROM test_results WHERE build_id = ?1 ORDER BY rowid", args![build_id])?;
        rows(self, found, |r| Ok(TestResult { name: r.get(0)?, passed: r.get(1)?, detail: r.get(2)? }))
    }
}

fn insert_components(
    tx: &mut dyn Sql,
    build_id: &str,
    components: &[ComponentUse],
) -> std::result::Result<(), crate::store::DbError> {
    for c in components {
        tx.execute(
            "INSERT INTO build_components (build_id, name, version, sha256) VALUES (?1, ?2, ?3, ?4)",
            args![build_id, c.name, c.version, c.sha256],
        )?;
    }
    Ok(())
}

fn insert_outputs(
    tx: &mut dyn Sql,
    build_id: &str,
    packages: &[Package],
    artifacts: &[Artifact],
    tests: &[TestResult],
) -> std::result::Result<(), crate::store::DbError> {
    for pk in packages {
        tx.execute(
            "INSERT INTO packages (build_id, name, version, arch, source_name, source_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![build_id, pk.name, pk.version, pk.arch, pk.source_name, pk.source_version],
        )?;
    }
    for ar in artifacts {
        tx.execute(
            "INSERT INTO artifacts (build_id, kind, path, sha256, size) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![build_id, ar.kind.as_str(), ar.path, ar.sha256, ar.size as i64],
        )?;
    }
    for tr in tests {
        tx.execute(
            "INSERT INTO test_results (build_id, name, passed, detail) VALUES (?1, ?2, ?3, ?4)",
            args![build_id, tr.name, tr.passed, tr.detail],
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn build<'a>(id: &'a str, version: &'a str, reason: &'a serde_json::Value) -> NewBuild<'a> {
        NewBuild {
            build_id: id,
            image: "host",
            version,
            reason,
            recipe_hash: "r1",
            parent_id: "p1",
            parent_name: "debootstrap:stable",
            parent_created: "2026-11-01T00:00:00Z",
            started_at: "2026-11-27T10:00:00Z",
            log_dir: "/logs",
            components: &[],
            runner: "1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::build;
    use super::*;
    use crate::testing::catalog;

    #[test]
    fn builds_follow_the_state_machine() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({"kind": "never_built"});
        c.insert_build(&build("b1", "2026.11.27.1", &reason)).unwrap();
        assert!(c.set_state("b1", BuildState::Available, None, "t").is_err(), "pending cannot jump to available");
        c.set_state("b1", BuildState::Building, None, "t").unwrap();
        c.set_state("b1", BuildState::Testing, None, "t").unwrap();
        c.set_state("b1", BuildState::Available, None, "t2").unwrap();
        let v = &c.versions(Some("host")).unwrap()[0];
        assert_eq!(v.state, BuildState::Available);
        assert_eq!(v.finished_at.as_deref(), Some("t2"));
        assert_eq!(c.next_version("host", "2026.11.27").unwrap(), "2026.11.27.2");
    }

    #[test]
    fn artifacts_round_trip_with_their_kind() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({});
        c.insert_build(&build("b1", "2026.11.27.1", &reason)).unwrap();
        let ami = Artifact {
            kind: ArtifactKind::Ami,
            path: "platform/eu-west-1/ami-0abc".into(),
            sha256: String::new(),
            size: 0,
        };
        c.record_outputs("b1", &[], std::slice::from_ref(&ami), &[]).unwrap();
        let got = c.artifacts("b1").unwrap();
        assert_eq!(got, [ami]);
        assert_eq!(got[0].ami().unwrap().image_id, "ami-0abc");
    }
}
