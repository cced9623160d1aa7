//! # provider — what the engine drives, and the words every crate shares
//!
//! An interface crate, like ripgrep's `grep-matcher`: it holds the domain types that cross
//! crate boundaries and the traits the engine calls, and no implementation. `aws` (EC2
//! builder, AMI publisher, EC2 fleet, ASG rollout, Inspector) and `local` (sandbox
//! builder, inventory files) implement the traits; the engine only ever sees `dyn` trait
//! objects, so a second way of building images is one new `impl` beside the others.
//!
//! - [`place`]: where things are — [`Target`] (account and region), [`AmiRef`],
//!   [`VersionRef`].
//! - [`image`]: what a build is made of and makes — [`ParentRef`], [`Package`],
//!   [`TestResult`], [`Artifact`].
//! - [`fleet`]: hosts as a scan sees them, and the one [`Selection`] rule that live scans
//!   and inventory files share.
//! - [`advisory`]: [`Severity`] and [`Finding`].
//! - [`rollout`]: how a consumer's hosts move ([`RolloutMethod`]) and what moving did.
//! - [`audit`]: the kinds of audit events ([`EventKind`]).
//! - [`builder`], [`publisher`], [`source`]: the traits and their job and report types.
//! - [`import`]: images amictl did not make, found to be adopted ([`Importer`]).
//!
//! ## Why the traits are synchronous
//!
//! The local builder is processes and files; the AWS provider is async on tokio. A sync
//! interface lets each keep its own nature: `aws` owns its runtime and blocks on it inside
//! its `impl`s, `local` needs none, and the engine (and its tests with in-memory
//! providers) needs no async runtime at all. Independent actions run concurrently on
//! scoped threads, which is all the parallelism a few image lines and consumers need;
//! every trait is `Send + Sync` so they can. A long call takes a [`Cancel`] and returns
//! [`ProviderError::Cancelled`] soon after it is set, having cleaned up what it made.
#![deny(missing_docs)]

pub mod advisory;
pub mod audit;
pub mod builder;
mod cancel;
mod error;
pub mod fleet;
pub mod image;
pub mod import;
pub mod place;
pub mod publisher;
pub mod rollout;
pub mod source;

pub use advisory::{Finding, Severity};
pub use audit::{Act, EventKind};
pub use builder::{
    BuildEvents, BuildFailure, BuildJob, BuildOutput, Builder, Checked, CleanupJob, CleanupReport, ComponentVersion,
    Reference, Resource, RetireJob, RetireReport,
};
pub use cancel::Cancel;
pub use error::{ProviderError, chain};
pub use fleet::{Agent, Host, Selection, Short};
pub use image::{Artifact, ArtifactKind, Package, ParentRef, TestResult};
pub use import::{FoundCopy, FoundImage, Importer};
pub use place::{AmiRef, Target, VersionRef};
pub use publisher::{
    Deprecated, Distribution, How, PublishJob, PublishReport, Publisher, RegionFailure, RegionPublished,
};
pub use rollout::{
    DEFAULT_DRAIN_SECONDS, GroupFailure, GroupRolled, Notice, Protected, RefreshProtected, RefreshStandby, Replacement,
    RolloutGroup, RolloutMethod, TemplateChange,
};
pub use source::{AdvisorySource, AgentCheck, FleetSource, HostQuery, Rollout};
