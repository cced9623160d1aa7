//! # aws — amictl's AWS provider
//!
//! Built on aws-sdk-rust with aws-config's standard credential chain (environment,
//! profiles, SSO, IMDS) and the standard `AWS_ENDPOINT_URL` override, so the same code talks
//! to AWS or to a local emulator.
//!
//! - [`Aws`] hands out clients per account and region; accounts with a role are reached
//!   through STS AssumeRole (credentials cached and refreshed by aws-config).
//! - [`parent`] resolves the newest parent AMI (an SSM public parameter, or a name filter),
//!   with the name and creation date recorded as lineage.
//! - [`publish`] copies an AMI to regions, shares it with consumer accounts, tags it and
//!   moves versioned SSM pointers — every step find-before-create, so a re-run adopts what
//!   exists instead of making a duplicate (the Bottlerocket `pubsys` way).
//! - [`build`] and [`builder`]: one build on EC2 instances through Run Command.
//! - [`fleet`], [`rollout`], [`inspector`], [`kms`], [`iam`]: consumers' hosts, moving
//!   them, advisories from Inspector, encrypted AMIs, least-privilege policies.
//! - [`providers`]: the engine's traits on all of the above, over one [`Cloud`].

pub mod anchors;
pub mod build;
pub mod builder;
pub mod clients;
pub mod components;
pub mod ecs;
pub mod error;
pub mod fleet;
pub mod iam;
pub mod imagebuilder;
pub mod import;
pub mod inspector;
pub mod kms;
pub mod limits;
pub mod parent;
pub mod providers;
pub mod publish;
pub mod ram;
pub mod remote;
pub mod retire;
pub mod rollout;

pub use clients::{AccountAccess, Aws};
pub use error::AwsError;
pub use providers::{AmiPublisher, AsgRollout, Cloud, Ec2Builder, Ec2Fleet, Inspector, SetupError};
