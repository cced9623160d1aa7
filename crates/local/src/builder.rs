//! [`LocalBuilder`]: the [`provider::Builder`] of `builder = { kind = "local" }` lines.

use std::path::PathBuf;

use config::{Builder as BuilderSpec, Component, Config, Image};
use provider::{
    BuildEvents, BuildFailure, BuildJob, BuildOutput, Builder, CleanupJob, CleanupReport, ParentRef, ProviderError,
    Resource, RetireJob, RetireReport,
};

use crate::{BuildRequest, Factory, Parent, Stage, observe_parent, prepare_parent};

/// Builds one image line's versions on this machine.
pub struct LocalBuilder {
    factory: Factory,
    cache_dir: PathBuf,
    image: Image,
    components: Vec<Component>,
}

impl LocalBuilder {
    /// The builder of `image` as `cfg` describes it.
    pub fn new(cfg: &Config, image: &Image) -> LocalBuilder {
        LocalBuilder {
            factory: Factory {
                components: std::sync::Arc::new(toe::component::Prefetched(cfg.fetched.clone())),
                ..Factory::new(&cfg.work_dir)
            },
            cache_dir: cfg.cache_dir.clone(),
            image: image.clone(),
            components: image.components.iter().filter_map(|c| cfg.components.get(c)).cloned().collect(),
        }
    }
}

fn parent_ref(p: &Parent) -> ParentRef {
    ParentRef { id: p.id.clone(), name: p.name.clone(), created: p.created.clone() }
}

impl Builder for LocalBuilder {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn concurrent(&self) -> bool {
        false
    }

    fn current_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        Ok(observe_parent(&self.cache_dir, &self.image.parent).as_ref().map(parent_ref))
    }

    fn refresh_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        let p = prepare_parent(&self.cache_dir, &self.image.parent, true).map_err(ProviderError::failed)?;
        Ok(Some(parent_ref(&p)))
    }

    fn build(&self, job: &BuildJob<'_>, events: &dyn BuildEvents) -> Result<BuildOutput, BuildFailure> {
        events.status(&format!("preparing parent {}", self.image.parent));
        let parent = match prepare_parent(&self.cache_dir, &self.image.parent, false) {
            Ok(p) => p,
            Err(e) => {
                // The operator's first question is why: keep the parent's log with the build's.
                let _ = std::fs::create_dir_all(job.log_dir);
                let _ = std::fs::write(job.log_dir.join("parent.log"), e.to_string());
                return Err(BuildFailure::early(ProviderError::message(format!("parent: {e}"))));
            }
        };
        let found = parent_ref(&parent);
        if let Some(planned) = job.parent
            && planned.id != found.id
        {
            return Err(BuildFailure::early(ProviderError::message(format!(
                "the parent {} moved since the plan (planned {}, found {}); plan again",
                self.image.parent, planned.id, found.id
            ))));
        }
        events.parent(&found);
        job.cancel.check().map_err(BuildFailure::early)?;
        let request = BuildRequest {
            build_id: job.build_id,
            image: job.image,
            version: job.version,
            parent: &parent,
            components: self.components.iter().collect(),
            tests: &self.image.tests,
            disk_size_mb: match self.image.builder {
                BuilderSpec::Local { disk_size_mb } => disk_size_mb,
                _ => None,
            },
            snapshot_cleanup: self.image.snapshot_cleanup,
        };
        let result = self.factory.build(&request, |stage| {
            events.status(match stage {
                Stage::Build => "running build and validate phases in an overlay",
                Stage::Materialise => "materialising the new root filesystem",
                Stage::Test => "testing in a fresh overlay of the output",
                Stage::Artifacts => "writing rootfs.tar.zst, disk.raw, disk.qcow2",
            });
            if stage == Stage::Test {
                events.testing();
            }
        });
        let scratch = Resource {
            kind: "files".into(),
            id: self.factory.build_dir(job.build_id).display().to_string(),
            place: None,
        };
        match result {
            Ok(out) => Ok(BuildOutput {
                parent: found,
                packages: out.packages,
                artifacts: out.artifacts,
                tests: out.tests,
                cleanup: CleanupReport { removed: vec![scratch] },
                components: Vec::new(),
            }),
            // A step killed because the operator asked to stop is an interruption, not a failure.
            Err(_) if job.cancel.is_cancelled() => Err(BuildFailure {
                error: ProviderError::Cancelled,
                parent: Some(Box::new(found)),
                tests: Vec::new(),
                cleanup: Some(CleanupReport { removed: vec![scratch] }),
            }),
            Err(e) => Err(BuildFailure {
                error: ProviderError::failed(e),
                parent: Some(Box::new(found)),
                tests: Vec::new(),
                cleanup: Some(CleanupReport { removed: vec![scratch] }),
            }),
        }
    }

    fn clean_up(&self, job: &CleanupJob<'_>) -> Result<CleanupReport, ProviderError> {
        self.factory.clean_scratch(job.build_id);
        let image_dir = self.factory.image_dir(job.image, job.version);
        let existed = image_dir.exists();
        self.factory.remove_image(job.image, job.version).map_err(|e| {
            ProviderError::message(format!("cannot remove the partial image {}: {e}", image_dir.display()))
        })?;
        let mut removed = vec![Resource {
            kind: "files".into(),
            id: self.factory.build_dir(job.build_id).display().to_string(),
            place: None,
        }];
        if existed {
            removed.push(Resource { kind: "files".into(), id: image_dir.display().to_string(), place: None });
        }
        Ok(CleanupReport { removed })
    }

    fn retire(&self, job: &RetireJob<'_>) -> Result<RetireReport, ProviderError> {
        let dir = self.factory.image_dir(job.image, job.version);
        self.factory
            .remove_image(job.image, job.version)
            .map_err(|e| ProviderError::message(format!("cannot remove the files of {}: {e}", dir.display())))?;
        Ok(RetireReport {
            removed: vec![Resource { kind: "files".into(), id: dir.display().to_string(), place: None }],
            left: Vec::new(),
            checked: Vec::new(),
        })
    }
}
