//! The observe step: everything the planner needs, read without changing anything.

use std::collections::BTreeMap;

use catalog::BuildState;
use jiff::Timestamp;
use policy::{DeprecationRecord, DesiredImage, Observed, ObservedVersion, PolicyView, VersionState};

use crate::fleet::ConsumerScan;
use crate::views::{released_at, time};
use crate::{Engine, EngineError, Scope};

/// How to observe.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// The live run holding the state lock (when `plan` runs beside an `apply`): its
    /// unfinished builds are running, not interrupted.
    pub live_holder: Option<catalog::Holder>,
    /// Fetch parents afresh (`apply --refresh-parents`).
    pub refresh_parents: bool,
}

/// What was observed, and what the config wants.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The planner's input.
    pub observed: Observed,
    /// The lines as configured.
    pub desired: Vec<DesiredImage>,
    /// The policy as the planner reads it.
    pub policy: PolicyView,
    /// The fleet scan made while observing (recorded only by `apply`).
    pub scans: Vec<ConsumerScan>,
}

impl Observation {
    /// The plan for `scope` as of `now`.
    pub fn plan(&self, now: Timestamp, scope: &Scope) -> policy::Plan {
        let desired: Vec<DesiredImage> =
            self.desired.iter().filter(|d| scope.only.as_ref().is_none_or(|o| *o == d.name)).cloned().collect();
        let mut plan = policy::plan(&desired, &self.policy, &self.observed, now);
        if let Some(only) = &scope.only {
            plan.actions.retain(|a| a.image() == only);
            plan.running.retain(|r| r.image == *only);
            plan.end_of_support.retain(|e| e.image == *only);
        }
        plan
    }
}

impl Engine {
    /// The policy as the planner reads it.
    pub fn policy_view(&self) -> PolicyView {
        let p = &self.config().policy;
        PolicyView {
            max_age_seconds: p.max_age_seconds,
            rebuild_on_parent_update: p.rebuild_on_parent_update,
            keep_versions: p.keep_versions,
            rebuild_on_severity: p.rebuild_on_severity.clone(),
            rollout_sla_seconds: p.rollout_sla_seconds,
        }
    }

    /// The lines as configured, with where each must be published.
    pub fn desired(&self) -> Vec<DesiredImage> {
        let cfg = self.config();
        let platform = cfg.platform().map(|a| a.name.clone());
        cfg.images
            .values()
            .map(|i| DesiredImage {
                name: i.name.clone(),
                recipe_hash: i.recipe_hash.clone(),
                components: i
                    .components
                    .iter()
                    .filter_map(|c| Some((c.clone(), cfg.components.get(c)?.version.clone())))
                    .collect(),
                targets: match (&i.distribute, &platform) {
                    (Some(d), Some(p)) => d.targets(p),
                    _ => Default::default(),
                },
                pointers: i.distribute.as_ref().is_some_and(|d| d.ssm_parameter.is_some()),
                resumes: self.providers().lines.get(&i.name).is_some_and(|l| l.builder.resumes()),
            })
            .collect()
    }

    /// Every version as the planner sees it. An unfinished build is running when
    /// `live_holder` — the live run holding the state lock — is the process that started it;
    /// otherwise its run died and it is interrupted.
    pub fn observe_versions(&self, live_holder: Option<&catalog::Holder>) -> Result<Vec<ObservedVersion>, EngineError> {
        let home = self.config().aws_region.clone();
        let cat = self.catalog();
        let mut out = Vec::new();
        for v in cat.versions(None)? {
            let state = match v.state {
                BuildState::Available => VersionState::Available,
                BuildState::Failed => VersionState::Failed,
                BuildState::Retired => VersionState::Retired,
                _ => VersionState::Unfinished,
            };
            let published = cat.distributions(&v.build_id)?;
            let released =
                matches!(state, VersionState::Available | VersionState::Retired).then(|| released_at(&v, &published));
            let deprecations = cat
                .deprecations(&v.build_id)?
                .into_iter()
                .map(|d| (d.ami, DeprecationRecord { at: time(&d.at), error: if d.gone { None } else { d.error } }))
                .collect();
            let running = live_holder
                .filter(|_| state == VersionState::Unfinished)
                .filter(|h| h.pid.is_some_and(|pid| v.runner.as_deref() == Some(pid.to_string().as_str())))
                .map(ToString::to_string);
            // The tested AMI: the build's artifact, or (catalogs older than AMI references)
            // the platform's own copy in the home region.
            let source = cat.artifacts(&v.build_id)?.iter().find_map(|a| a.ami()).or_else(|| {
                published
                    .iter()
                    .map(|p| &p.distribution)
                    .find(|d| d.how == provider::How::Owner && Some(&d.target.region) == home.as_ref())
                    .map(|d| d.ami())
            });
            out.push(ObservedVersion {
                image: v.image.clone(),
                version: v.version.clone(),
                build_id: v.build_id.clone(),
                state,
                stage: v.state.as_str().to_string(),
                running,
                execution: v.execution.clone(),
                built_at: time(v.built_at()),
                released_at: released,
                recipe_hash: v.recipe_hash.clone(),
                parent_id: v.parent_id.clone(),
                // Components a builder reported from its recipe (their source is an ARN)
                // are the recipe's, not the config's: nothing to compare them with.
                components: v
                    .components
                    .iter()
                    .filter(|c| !c.sha256.starts_with("arn:"))
                    .map(|c| (c.name.clone(), c.version.clone()))
                    .collect(),
                distributions: published.into_iter().map(|p| p.distribution).collect(),
                source,
                deprecations,
                cleanup_blocked: v.cleanup.clone(),
            });
        }
        Ok(out)
    }

    /// Observes everything the planner needs for `scope` as of `now`. Changes nothing.
    pub fn observe(&self, mode: &Mode, now: Timestamp, scope: &Scope) -> Result<Observation, EngineError> {
        let cfg = self.config();
        let versions = self.observe_versions(mode.live_holder.as_ref())?;
        let mut parents = BTreeMap::new();
        for image in cfg.images.values().filter(|i| scope.only.as_ref().is_none_or(|o| *o == i.name)) {
            let line = self.line(&image.name)?;
            let found =
                if mode.refresh_parents { line.builder.refresh_parent() } else { line.builder.current_parent() };
            let found = found.map_err(|e| {
                EngineError::provider(format!("resolving the parent {} of {}", image.parent, image.name), e)
            })?;
            if let Some(p) = found {
                parents.insert(image.name.clone(), p);
            }
        }
        // Consumers and advisories of the lines in scope only; the catalog is not held while
        // the fleet and the feeds are read.
        let in_scope = |image: &str| scope.only.as_ref().is_none_or(|o| o == image);
        let scans = match (&self.providers().fleet, cfg.consumers.values().any(|c| in_scope(&c.image))) {
            (Some(source), true) => {
                let releases = crate::views::releases(&self.catalog())?;
                crate::fleet::scan(cfg, releases, source.as_ref(), false, now, |c| in_scope(&c.image))
            }
            _ => Vec::new(),
        };
        let mut in_use = self.catalog().versions_in_use()?;
        in_use.extend(crate::fleet::in_use(&scans));
        let threshold = crate::advisories::threshold(cfg);
        let inspector = self.providers().inspector.as_deref();
        let mut advisories = std::collections::BTreeMap::new();
        for image in cfg.images.values().filter(|i| i.advisories.is_some() && in_scope(&i.name)) {
            let subject = crate::advisories::Subject::newest(cfg, &self.catalog(), image)?;
            if let Some(subject) = subject
                && let Some(c) = crate::advisories::check(cfg, &subject, inspector, crate::advisories::Mode::Live, now)
            {
                advisories.insert(image.name.clone(), c.for_policy(threshold));
            }
        }
        let observed = Observed {
            versions,
            parents,
            forced: scope.forced.clone(),
            in_use,
            lagging: crate::fleet::lagging(&scans),
            advisories,
        };
        Ok(Observation { observed, desired: self.desired(), policy: self.policy_view(), scans })
    }
}
