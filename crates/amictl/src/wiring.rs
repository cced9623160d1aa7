//! The one place concrete providers are chosen: each image line's builder and publisher
//! from its `builder` kind, and the cloud's fleet source, rollout and Inspector. A new
//! builder kind is one `impl provider::Builder` and one arm here.

use std::sync::Arc;

use anyhow::Result;
use aws::Cloud;
use config::{Builder, Config};
use engine::{Line, Providers};

/// What a command needs beyond the image lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The cloud even when no line builds on EC2 (a live `fleet`, Inspector advisories).
    pub cloud: bool,
}

/// Whether any line builds in AWS (on EC2, or through Image Builder).
fn cloud_lines(cfg: &Config) -> bool {
    cfg.images.values().any(|i| matches!(i.builder, Builder::Ec2 { .. } | Builder::ImageBuilder { .. }))
}

fn importer(cloud: &Arc<Cloud>, image: &config::Image) -> Option<Arc<dyn provider::Importer>> {
    aws::import::AmiImporter::new(cloud.clone(), image).map(|i| Arc::new(i) as Arc<dyn provider::Importer>)
}

/// The providers for `cfg`; the cloud (and its runtime) only when something needs it.
pub fn providers(cfg: &Config, needs: Needs) -> Result<Providers> {
    let cloud = if needs.cloud || cloud_lines(cfg) { Some(Arc::new(Cloud::new(cfg)?)) } else { None };
    let mut providers = Providers::default();
    for image in cfg.images.values() {
        let line = match (&image.builder, &cloud) {
            (Builder::Local { .. }, _) => {
                Line { builder: Arc::new(local::LocalBuilder::new(cfg, image)), publisher: None, importer: None }
            }
            (Builder::Ec2 { .. }, Some(cloud)) => Line {
                builder: Arc::new(aws::Ec2Builder::new(cloud.clone(), cfg, image)),
                publisher: Some(Arc::new(aws::AmiPublisher::new(cloud.clone(), image))),
                importer: importer(cloud, image),
            },
            (Builder::ImageBuilder { .. }, Some(cloud)) => Line {
                builder: Arc::new(aws::imagebuilder::PipelineBuilder::new(cloud.clone(), image.clone())),
                publisher: Some(Arc::new(aws::imagebuilder::PipelinePublisher::new(cloud.clone(), image))),
                importer: importer(cloud, image),
            },
            (Builder::Ec2 { .. } | Builder::ImageBuilder { .. }, None) => {
                unreachable!("the cloud exists whenever a line builds in AWS")
            }
        };
        providers.lines.insert(image.name.clone(), line);
    }
    if let Some(cloud) = cloud {
        providers.fleet = Some(Arc::new(aws::Ec2Fleet::new(cloud.clone())));
        providers.rollout = Some(Arc::new(aws::AsgRollout::new(cloud.clone())));
        providers.inspector = Some(Arc::new(aws::Inspector::new(cloud)));
    }
    Ok(providers)
}
