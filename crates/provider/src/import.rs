//! Adopting images amictl did not make: what an [`Importer`] finds, for the engine to
//! record as versions of a line.

use serde::Serialize;

use crate::{Package, ParentRef, ProviderError, Target};

/// One copy of a found image: an AMI in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundCopy {
    /// Where it lives (the account by its config name), as `account/region`.
    #[serde(serialize_with = "as_text")]
    pub target: Target,
    /// The AMI.
    pub image_id: String,
    /// When this copy was made (RFC 3339).
    pub created: String,
}

/// One image found, with every copy of it: a version to adopt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundImage {
    /// What ties the copies together: the Image Builder image ARN, or the AMI name.
    pub key: String,
    /// The AMI name.
    pub name: String,
    /// When it was first made (the earliest copy).
    pub created: String,
    /// Its parent, when its maker recorded one (Image Builder's recipe, a `SourceAMI`-like
    /// tag); `None` when nothing says.
    pub parent: Option<ParentRef>,
    /// The Image Builder image (execution) that made it.
    pub execution: Option<String>,
    /// The Image Builder pipeline that made it (its ARN).
    pub pipeline: Option<String>,
    /// Every copy, the home copy first when there is one.
    pub copies: Vec<FoundCopy>,
    /// Its package list, when its maker keeps one (Image Builder's `ListImagePackages`).
    pub packages: Vec<Package>,
    /// Why it matched, for the audit trail (`name weco-* owned by the account`).
    pub matched: String,
}

fn as_text<S: serde::Serializer>(t: &Target, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// Finds a line's existing images where its config says to look.
pub trait Importer: Send + Sync {
    /// Where it looks, for people (`images of pipeline weco-amzn2`, `AMIs named weco-* …`).
    fn source(&self) -> String;

    /// Every image found, oldest first.
    fn find(&self) -> Result<Vec<FoundImage>, ProviderError>;
}
