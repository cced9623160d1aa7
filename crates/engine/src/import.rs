//! `amictl import`: a line's existing images (made by its Image Builder pipeline, or by
//! hand, before amictl) adopted as its versions, so the fleet is judged against them
//! instead of being called unmanaged, and the 90-day clock starts from what is there.
//!
//! What to adopt is decided by [`decide`] (pure); [`Engine::import`] finds, decides and
//! records — each version in one transaction, then an `imported` event with what matched
//! and why. An image is adopted once: its id comes from the line and what ties its copies
//! together, so a second import finds it known, and an AMI amictl already records (one it
//! built, published or adopted) is never adopted again.

use std::collections::{BTreeMap, BTreeSet};

use catalog::{NewBuild, Published, RunLock};
use provider::{AmiRef, Artifact, ArtifactKind, Distribution, EventKind, FoundImage, How, Package};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Engine, EngineError};

/// What importing one line found and did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct LineImport {
    /// The line.
    pub image: String,
    /// Where it looked.
    pub source: String,
    /// Images adopted as versions, oldest first.
    pub adopted: Vec<Adopted>,
    /// Images found that amictl already knows.
    pub known: Vec<Known>,
}

/// One image adopted as a version.
#[derive(Debug, Clone, Serialize)]
pub struct Adopted {
    /// The version's build id (`import-…`, from the line and the image).
    pub build_id: String,
    /// The version name it gets: the date it was made, `YYYY.MM.DD.N`.
    pub version: String,
    /// What was found.
    pub image: FoundImage,
}

/// One image found that is already a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Known {
    /// The AMI name.
    pub name: String,
    /// The version it is.
    pub version: String,
    /// Why it is not adopted again.
    pub why: String,
}

/// Which version an adopted image is, and where it was found.
#[derive(Clone, Copy)]
struct Adoption<'a> {
    image: &'a str,
    build_id: &'a str,
    version: &'a str,
    source: &'a str,
}

/// The build id an adopted image gets: the same for the same line and image, every time.
pub fn import_id(image: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{image}\0{key}").as_bytes());
    format!("import-{}", config::hex(&digest[..6]))
}

/// What amictl already records, for [`decide`].
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The line's versions: build id → version.
    pub adopted: BTreeMap<String, String>,
    /// Every AMI any version has (built, published, adopted) → `line@version`.
    pub amis: BTreeMap<String, String>,
    /// Every Image Builder execution a build started or followed, whatever its state →
    /// `line@version` (a killed build's execution has no AMIs recorded yet).
    pub executions: BTreeMap<String, String>,
}

/// Which `found` images of `image` to adopt: not those adopted before, not one with a
/// copy amictl already records, and not one made by an execution an amictl build started.
/// Returns (build id, image) to adopt, oldest first, and what was left.
pub fn decide(image: &str, found: Vec<FoundImage>, recorded: &Recorded) -> (Vec<(String, FoundImage)>, Vec<Known>) {
    let (adopted, known_amis) = (&recorded.adopted, &recorded.amis);
    let mut adopt = Vec::new();
    let mut known = Vec::new();
    let mut seen = BTreeSet::new();
    for f in found {
        let id = import_id(image, &f.key);
        if let Some(version) = adopted.get(&id) {
            known.push(Known { name: f.name, version: version.clone(), why: "adopted before".into() });
        } else if let Some((ami, version)) =
            f.copies.iter().find_map(|c| known_amis.get(&c.image_id).map(|v| (&c.image_id, v)))
        {
            known.push(Known {
                name: f.name.clone(),
                version: version.clone(),
                why: format!("{ami} is already recorded"),
            });
        } else if let Some(version) = f.execution.as_ref().and_then(|e| recorded.executions.get(e)) {
            let why = format!("made by the execution of amictl's build {version}");
            known.push(Known { name: f.name.clone(), version: version.clone(), why });
        } else if seen.insert(id.clone()) {
            adopt.push((id, f));
        }
    }
    adopt.sort_by(|a, b| a.1.created.cmp(&b.1.created).then_with(|| a.1.name.cmp(&b.1.name)));
    (adopt, known)
}

/// `2026-03-04T…` → `2026.03.04`.
fn version_date(created: &str) -> String {
    created.get(..10).filter(|d| d.len() == 10).map(|d| d.replace('-', ".")).unwrap_or_else(|| "0000.00.00".into())
}

impl Engine {
    /// Finds and adopts the existing images of every line that says where to look (or
    /// only `only`); with `dry_run`, records nothing and takes no lock.
    pub fn import(&self, only: Option<&str>, dry_run: bool) -> Result<Vec<LineImport>, EngineError> {
        let _lock = if dry_run {
            None
        } else {
            Some(RunLock::acquire_at(self.location(), false, "amictl import", |_| {}, || self.cancel().is_cancelled())?)
        };
        // Build ids with their `imported` event; ids are per line, so one read serves all.
        let noted = if dry_run { BTreeSet::new() } else { self.imported_events()? };
        let mut out = Vec::new();
        for (name, line) in &self.providers().lines {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let Some(importer) = &line.importer else { continue };
            let source = importer.source();
            self.progress().line(&format!("{name}: looking for {source} …"));
            let found = importer.find().map_err(|e| EngineError::provider(format!("import {name}"), e))?;
            let recorded = self.import_records(name)?;
            // A version recorded by an import that died before its event: the event now.
            if !dry_run {
                for f in &found {
                    let id = import_id(name, &f.key);
                    if let Some(version) = recorded.adopted.get(&id).filter(|_| !noted.contains(&id)) {
                        let (artifacts, packages) = {
                            let cat = self.catalog();
                            (cat.artifacts(&id)?, cat.packages(&id)?)
                        };
                        let what = Adoption { image: name, build_id: &id, version, source: &source };
                        self.note_imported(&what, f, &artifacts, &packages)?;
                        self.progress().line(&format!("{name}: recorded the missing imported event of {version}"));
                    }
                }
            }
            let (adopt, known) = decide(name, found, &recorded);
            let mut line_out = LineImport { image: name.clone(), source: source.clone(), adopted: Vec::new(), known };
            let mut dates: BTreeMap<String, usize> = BTreeMap::new();
            for (build_id, found) in adopt {
                let date = version_date(&found.created);
                let version = {
                    let cat = self.catalog();
                    let next = cat.next_version(name, &date)?;
                    if dry_run {
                        // Several on one date: number them as recording would.
                        let n = dates.entry(date.clone()).or_insert(0);
                        *n += 1;
                        let base: usize = next.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(1);
                        format!("{date}.{}", base + *n - 1)
                    } else {
                        next
                    }
                };
                if !dry_run {
                    self.adopt(name, &build_id, &version, &source, &found)?;
                    self.progress().line(&format!(
                        "{name}: adopted {} as {version} ({} cop{})",
                        found.name,
                        found.copies.len(),
                        if found.copies.len() == 1 { "y" } else { "ies" }
                    ));
                }
                line_out.adopted.push(Adopted { build_id, version, image: found });
            }
            out.push(line_out);
        }
        if let Some(o) = only
            && !self.providers().lines.contains_key(o)
        {
            return Err(EngineError::Failed(format!("no image line `{o}` in {}", self.config().file.display())));
        }
        Ok(out)
    }

    /// What the catalog already records, for [`decide`].
    fn import_records(&self, image: &str) -> Result<Recorded, EngineError> {
        let cat = self.catalog();
        let mut r = Recorded::default();
        for v in cat.versions(None)? {
            if v.image == image {
                r.adopted.insert(v.build_id.clone(), v.version.clone());
            }
            let label = format!("{}@{}", v.image, v.version);
            if !v.execution.is_empty() && !v.build_id.starts_with("import-") {
                r.executions.insert(v.execution.clone(), label.clone());
            }
            for d in cat.distributions(&v.build_id)? {
                r.amis.insert(d.distribution.image_id.clone(), label.clone());
            }
            for a in cat.artifacts(&v.build_id)?.iter().filter_map(Artifact::ami) {
                r.amis.insert(a.image_id, label.clone());
            }
        }
        Ok(r)
    }

    /// Build ids some `imported` event names.
    fn imported_events(&self) -> Result<BTreeSet<String>, EngineError> {
        Ok(self
            .catalog()
            .events(None)?
            .into_iter()
            .filter(|e| e.kind == EventKind::Imported.as_str())
            .filter_map(|e| e.data["build_id"].as_str().map(str::to_string))
            .collect())
    }

    /// Records one adopted image: the version, then its `imported` event.
    fn adopt(
        &self,
        image: &str,
        build_id: &str,
        version: &str,
        source: &str,
        found: &FoundImage,
    ) -> Result<(), EngineError> {
        let cfg = self.config();
        let line = cfg.images.get(image);
        // An image Image Builder made for an Image Builder line is its recipe's, and the
        // recipe is the line's. Any other image was not built from the line's recipe, and
        // the planner must not think so.
        let recipe_hash = match (line.map(|l| &l.builder), &found.pipeline) {
            (Some(config::Builder::ImageBuilder { pipeline }), Some(made_by))
                if made_by == pipeline || made_by.ends_with(&format!(":image-pipeline/{pipeline}")) =>
            {
                line.map(|l| l.recipe_hash.clone()).unwrap_or_default()
            }
            _ => format!("imported:{}", found.key),
        };
        let (parent_id, parent_name, parent_created) = match &found.parent {
            Some(p) => (p.id.clone(), p.name.clone(), p.created.clone()),
            None => ("unknown".to_string(), "not recorded by its maker".to_string(), String::new()),
        };
        let reason = json!({"imported": {"source": source, "matched": found.matched, "key": found.key}});
        let published: Vec<Published> = found
            .copies
            .iter()
            .map(|c| Published {
                distribution: Distribution {
                    target: c.target.clone(),
                    image_id: c.image_id.clone(),
                    how: if c.target.account == found.copies[0].target.account { How::Owner } else { How::Copy },
                    parameters: Vec::new(),
                },
                at: c.created.clone(),
            })
            .collect();
        let artifacts: Vec<Artifact> = found
            .copies
            .iter()
            .map(|c| Artifact {
                kind: ArtifactKind::Ami,
                path: AmiRef { target: c.target.clone(), image_id: c.image_id.clone() }.to_string(),
                sha256: String::new(),
                size: 0,
            })
            .collect();
        let packages: &[Package] = &found.packages;
        let runner = String::new();
        let b = NewBuild {
            build_id,
            image,
            version,
            reason: &reason,
            recipe_hash: &recipe_hash,
            parent_id: &parent_id,
            parent_name: &parent_name,
            parent_created: &parent_created,
            started_at: &found.created,
            log_dir: "",
            components: &[],
            runner: &runner,
        };
        self.catalog().insert_imported(&b, found.execution.as_deref(), &published, packages, &artifacts)?;
        // Killed here, the version stands without its event; the next import writes it.
        self.note_imported(&Adoption { image, build_id, version, source }, found, &artifacts, packages)
    }

    /// The `imported` event of one adopted image, with the artifacts and packages recorded.
    fn note_imported(
        &self,
        what: &Adoption<'_>,
        found: &FoundImage,
        artifacts: &[Artifact],
        packages: &[Package],
    ) -> Result<(), EngineError> {
        let Adoption { image, build_id, version, source } = *what;
        let subject = provider::VersionRef::new(image, version).to_string();
        let why = format!("adopted {} ({}) made {}", found.name, found.matched, found.created);
        self.note(
            EventKind::Imported,
            &subject,
            &why,
            json!({
                "build_id": build_id, "state": "available", "result": "done", "image": image, "version": version,
                "name": found.name, "key": found.key, "matched": found.matched, "source": source,
                "execution": found.execution, "created": found.created, "parent": found.parent,
                "copies": found.copies, "manifest_sha256": catalog::manifest_digest(packages),
                "artifacts": artifacts,
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider::{FoundCopy, Target};

    fn found(key: &str, name: &str, created: &str, amis: &[&str]) -> FoundImage {
        FoundImage {
            key: key.into(),
            name: name.into(),
            created: created.into(),
            parent: None,
            execution: None,
            pipeline: None,
            copies: amis
                .iter()
                .map(|a| FoundCopy {
                    target: Target::new("workflow", "eu-west-1"),
                    image_id: (*a).into(),
                    created: created.into(),
                })
                .collect(),
            packages: Vec::new(),
            matched: "test".into(),
        }
    }

    #[test]
    fn an_image_is_adopted_once_and_never_when_amictl_knows_a_copy() {
        let list = vec![
            found("b", "line-2026-02", "2026-02-01T00:00:00Z", &["ami-2"]),
            found("a", "line-2026-01", "2026-01-01T00:00:00Z", &["ami-1"]),
            found("c", "line-2026-03", "2026-03-01T00:00:00Z", &["ami-3", "ami-built"]),
            found("a", "line-2026-01", "2026-01-01T00:00:00Z", &["ami-1"]),
        ];
        let recorded = Recorded {
            amis: BTreeMap::from([("ami-built".into(), "line@2026.03.01.1".into())]),
            ..Recorded::default()
        };
        let (adopt, known) = decide("line", list.clone(), &recorded);
        let names: Vec<&str> = adopt.iter().map(|(_, f)| f.name.as_str()).collect();
        assert_eq!(names, ["line-2026-01", "line-2026-02"], "oldest first, each once");
        assert_eq!(known[0].why, "ami-built is already recorded");
        assert_eq!(adopt[0].0, import_id("line", "a"));
        assert_ne!(import_id("line", "a"), import_id("other", "a"), "ids are per line");

        let adopted: BTreeMap<String, String> =
            adopt.iter().map(|(id, f)| (id.clone(), version_date(&f.created) + ".1")).collect();
        let (again, known) = decide("line", list.clone(), &Recorded { adopted, ..Recorded::default() });
        assert_eq!(again.len(), 1, "only the one not adopted yet: {again:?}");
        assert_eq!(known.iter().filter(|k| k.why == "adopted before").count(), 3);

        // An execution an amictl build started (killed before its AMIs were recorded) is
        // that build's, not an image to adopt.
        let mut mine = found("arn:image/x/1.0.0/7", "line-2026-04", "2026-04-01T00:00:00Z", &["ami-4"]);
        mine.execution = Some("arn:image/x/1.0.0/7".into());
        let recorded = Recorded {
            executions: BTreeMap::from([("arn:image/x/1.0.0/7".into(), "line@2026.04.01.1".into())]),
            ..Recorded::default()
        };
        let (adopt, known) = decide("line", vec![mine], &recorded);
        assert!(adopt.is_empty());
        assert!(known[0].why.contains("amictl's build"), "{known:?}");
        assert_eq!(version_date("2026-02-01T00:00:00Z"), "2026.02.01");
    }
}
