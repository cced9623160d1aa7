//! [`AmiImporter`]: a line's existing AMIs, found to be adopted (`amictl import`).
//!
//! Two ways to look, chosen by the config:
//! - `import = { name, owner }`: `DescribeImages` with the name filter and owner in the
//!   platform account's home region and every account and region the line is distributed
//!   to. Copies share a name (Image Builder's `<line>-{{ imagebuilder:buildDate }}` is the
//!   same in every target account and region), so one name is one version; an
//!   `Ec2ImageBuilderArn` tag ties the copies to the image that made them, and its package
//!   list is read from Image Builder.
//! - an Image Builder line without `import`: the pipeline's images
//!   (`ListImagePipelineImages`), each AVAILABLE one a version with the AMIs its
//!   `outputResources` lists and its packages.
//!
//! The parent is recorded only where the maker wrote it down: a `SourceAMI`-like tag, or
//! the recipe version the image was made from (`GetImage`) naming a fixed AMI. Nothing
//! else is guessed: a recipe naming `ssm:/…` resolved it at execution time, unrecorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_ec2::types::Filter;
use config::{Builder as BuilderSpec, Image as ImageSpec, ImportSpec};
use provider::{FoundCopy, FoundImage, Importer, ParentRef, ProviderError, Target};

use crate::AwsError;
use crate::error::api;
use crate::imagebuilder::{client, packages, pipeline};
use crate::providers::Cloud;

/// Tag keys image makers use for the AMI an image was built from (Packer's `source_ami`
/// convention, Image Builder recipes that tag it, hand-made ones), compared case-blind.
pub const PARENT_TAGS: [&str; 7] =
    ["SourceAMI", "source_ami", "source_ami_id", "SourceImageId", "ParentAMI", "parent_ami", "BaseAMI"];

/// (pipeline ARN, parent the recipe fixed, packages) of an Image Builder image.
type Made = (Option<String>, Option<ParentRef>, Vec<provider::Package>);

/// How one line's existing AMIs are found.
pub struct AmiImporter {
    cloud: Arc<Cloud>,
    image: ImageSpec,
}

impl AmiImporter {
    /// `None` when the line says nowhere to look (no `import`, not an Image Builder line).
    pub fn new(cloud: Arc<Cloud>, image: &ImageSpec) -> Option<AmiImporter> {
        let looks = image.import.is_some() || matches!(image.builder, BuilderSpec::ImageBuilder { .. });
        looks.then(|| AmiImporter { cloud, image: image.clone() })
    }

    fn targets(&self) -> Vec<Target> {
        let home = Target::new(&self.cloud.platform, &self.cloud.region);
        let mut out = vec![home.clone()];
        if let Some(d) = &self.image.distribute {
            out.extend(d.targets(&self.cloud.platform).into_iter().filter(|t| *t != home));
        }
        out
    }

    fn target_of(&self, account_id: &str, region: &str) -> Target {
        let name =
            self.cloud.aws.account_by_id(account_id).map(|a| a.name.clone()).unwrap_or_else(|| account_id.into());
        Target::new(name, region)
    }

    async fn by_name(&self, spec: &ImportSpec) -> Result<Vec<FoundImage>, AwsError> {
        struct Seen {
            copy: FoundCopy,
            execution: Option<String>,
            parent: Option<ParentRef>,
        }
        let mut by_name: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        for target in self.targets() {
            let ec2 = self.cloud.aws.ec2(&target.account, &target.region).await?;
            let mut pages = ec2
                .describe_images()
                .owners(&spec.owner)
                .filters(Filter::builder().name("name").values(&spec.name).build())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(api("ec2:DescribeImages", &target.account, &target.region))?;
                for i in page.images() {
                    let (Some(id), Some(name)) = (i.image_id(), i.name()) else { continue };
                    // Only what can be launched: pending and failed AMIs are not versions.
                    if i.state() != Some(&aws_sdk_ec2::types::ImageState::Available) {
                        continue;
                    }
                    // An AMI shared with several targets is seen from each: it lives in
                    // its owner's account, once.
                    if by_name.values().flatten().any(|s| s.copy.image_id == id) {
                        continue;
                    }
                    let home = match i.owner_id() {
                        Some(owner) if spec.owner != "self" => self.target_of(owner, &target.region),
                        _ => target.clone(),
                    };
                    let tag = |keys: &[&str]| {
                        i.tags().iter().find_map(|t| {
                            let k = t.key()?;
                            let v = t.value()?;
                            keys.iter().any(|w| w.eq_ignore_ascii_case(k)).then(|| (k.to_string(), v.to_string()))
                        })
                    };
                    let parent = tag(&PARENT_TAGS).filter(|(_, v)| v.starts_with("ami-")).map(|(k, v)| ParentRef {
                        id: v,
                        name: format!("tag {k}"),
                        created: String::new(),
                    });
                    by_name.entry(name.to_string()).or_default().push(Seen {
                        copy: FoundCopy {
                            target: home,
                            image_id: id.to_string(),
                            created: i.creation_date().unwrap_or_default().to_string(),
                        },
                        execution: tag(&["Ec2ImageBuilderArn"]).map(|(_, v)| v),
                        parent,
                    });
                }
            }
        }
        let owner =
            if spec.owner == "self" { "owned by the account".to_string() } else { format!("owned by {}", spec.owner) };
        let mut out = Vec::new();
        for (name, seen) in by_name {
            let execution = seen.iter().find_map(|s| s.execution.clone());
            let mut matched = format!("AMI name {name} matches {} {owner}", spec.name);
            // What Image Builder knows of the image that made it; a name-matched AMI need
            // not be the platform's, so not knowing is noted, not fatal.
            let made = match &execution {
                Some(arn) => match self.made_by(arn).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        matched.push_str(&format!("; Image Builder image {arn} not readable: {e}"));
                        None
                    }
                },
                None => None,
            };
            let tagged = seen.iter().find_map(|s| s.parent.clone());
            let (pipeline, recipe_parent, packages) = made.unwrap_or_default();
            out.push(FoundImage {
                key: execution.clone().unwrap_or_else(|| name.clone()),
                created: seen.iter().map(|s| s.copy.created.clone()).min().unwrap_or_default(),
                parent: tagged.or(recipe_parent),
                copies: seen.into_iter().map(|s| s.copy).collect(),
                matched,
                name,
                execution,
                pipeline,
                packages,
            });
        }
        Ok(out)
    }

    /// What made an Image Builder image (asked in the region its ARN names): its pipeline,
    /// the parent its recipe named when that is a fixed AMI, and its packages.
    async fn made_by(&self, image_arn: &str) -> Result<Made, AwsError> {
        let region = image_arn.split(':').nth(3).unwrap_or(&self.cloud.region).to_string();
        let account = &self.cloud.platform;
        let c = client(&self.cloud.aws, account, &region).await?;
        let got = c.get_image().image_build_version_arn(image_arn).send().await.map_err(api(
            "imagebuilder:GetImage",
            account,
            &region,
        ))?;
        let image = got.image();
        let pipeline = image.and_then(|i| i.source_pipeline_arn()).map(str::to_string);
        let named = image.and_then(|i| i.image_recipe()).and_then(|r| r.parent_image()).unwrap_or_default();
        let parent = named.starts_with("ami-").then(|| ParentRef {
            id: named.to_string(),
            name: format!("recipe of {image_arn}"),
            created: String::new(),
        });
        Ok((pipeline, parent, packages(&c, account, &region, image_arn).await?))
    }

    async fn pipeline_images(&self, spec: &str) -> Result<Vec<FoundImage>, AwsError> {
        let (account, region) = (&self.cloud.platform, &self.cloud.region);
        let c = client(&self.cloud.aws, account, region).await?;
        let p = pipeline(&c, account, region, spec).await?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = c
                .list_image_pipeline_images()
                .image_pipeline_arn(&p.arn)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(api("imagebuilder:ListImagePipelineImages", account, region))?;
            for i in page.image_summary_list() {
                let available = i.state().and_then(|s| s.status()).map(|s| s.as_str()) == Some("AVAILABLE");
                let Some(arn) = i.arn().filter(|_| available) else { continue };
                let created = i.date_created().unwrap_or_default().to_string();
                let copies: Vec<FoundCopy> = i
                    .output_resources()
                    .map(|o| o.amis())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| {
                        Some(FoundCopy {
                            target: self.target_of(a.account_id().unwrap_or(account_id(&self.cloud)), a.region()?),
                            image_id: a.image()?.to_string(),
                            created: created.clone(),
                        })
                    })
                    .collect();
                if copies.is_empty() {
                    continue;
                }
                let name = i
                    .output_resources()
                    .and_then(|o| o.amis().first())
                    .and_then(|a| a.name())
                    .unwrap_or_else(|| i.name().unwrap_or_default())
                    .to_string();
                // The recipe version this image was made from says its parent, if fixed.
                let (_, parent, packages) = self.made_by(arn).await?;
                out.push(FoundImage {
                    key: arn.to_string(),
                    name,
                    created,
                    parent,
                    execution: Some(arn.to_string()),
                    pipeline: Some(p.arn.clone()),
                    copies,
                    packages,
                    matched: format!("image {arn} of pipeline {}", p.name),
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

fn account_id(cloud: &Cloud) -> &str {
    cloud.aws.account(&cloud.platform).map(|a| a.id.as_str()).unwrap_or_default()
}

impl Importer for AmiImporter {
    fn source(&self) -> String {
        match (&self.image.import, &self.image.builder) {
            (Some(spec), _) => format!("AMIs named {} owned by {}", spec.name, spec.owner),
            (None, BuilderSpec::ImageBuilder { pipeline }) => format!("images of pipeline {pipeline}"),
            (None, _) => "nowhere".into(),
        }
    }

    fn find(&self) -> Result<Vec<FoundImage>, ProviderError> {
        let found = self.cloud.block_on(async {
            match (&self.image.import, &self.image.builder) {
                (Some(spec), _) => self.by_name(spec).await,
                (None, BuilderSpec::ImageBuilder { pipeline }) => self.pipeline_images(pipeline).await,
                (None, _) => Ok(Vec::new()),
            }
        })?;
        let mut found = found;
        for f in &mut found {
            // The home copy first, then by account and region.
            let home = Target::new(&self.cloud.platform, &self.cloud.region);
            f.copies.sort_by(|a, b| (a.target != home, &a.target).cmp(&(b.target != home, &b.target)));
        }
        found.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(found)
    }
}
