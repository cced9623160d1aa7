//! What a build starts from and what it makes.

use serde::{Deserialize, Serialize};

/// The parent image a build starts from, as it was resolved: an AMI, or a root filesystem
/// identified by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The AMI id, or the content hash of a root filesystem.
    pub id: String,
    /// The parent's own name (an AMI name, or the spec such as `debootstrap:stable`).
    pub name: String,
    /// When the parent was made (the AMI's creation date) or prepared here (RFC 3339).
    pub created: String,
}

/// One installed package of an image, from rpm or dpkg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The binary package name.
    pub name: String,
    /// rpm `[epoch:]version-release` or a dpkg version.
    pub version: String,
    /// `x86_64`, `noarch`, `amd64` …
    pub arch: String,
    /// The source package it was built from (Debian advisories are per source).
    pub source_name: String,
    /// The source package's version.
    pub source_version: String,
}

/// One test of a new image and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// `ssm-agent-online`, `motd (test phase)` …
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found; the failure when it did not pass.
    pub detail: String,
}

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArtifactKind {
    /// The root filesystem as a zstd-compressed tarball.
    #[serde(rename = "rootfs.tar.zst")]
    RootfsTarZst,
    /// A raw ext4 disk image.
    #[serde(rename = "disk.raw")]
    DiskRaw,
    /// The disk image as qcow2.
    #[serde(rename = "disk.qcow2")]
    DiskQcow2,
    /// The package manifest as read from the image.
    #[serde(rename = "manifest")]
    Manifest,
    /// An AMI; its location is an [`crate::AmiRef`].
    #[serde(rename = "ami")]
    Ami,
}

impl ArtifactKind {
    /// The name the catalog stores and people read.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::RootfsTarZst => "rootfs.tar.zst",
            ArtifactKind::DiskRaw => "disk.raw",
            ArtifactKind::DiskQcow2 => "disk.qcow2",
            ArtifactKind::Manifest => "manifest",
            ArtifactKind::Ami => "ami",
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(s: &str) -> Option<ArtifactKind> {
        [
            ArtifactKind::RootfsTarZst,
            ArtifactKind::DiskRaw,
            ArtifactKind::DiskQcow2,
            ArtifactKind::Manifest,
            ArtifactKind::Ami,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// What it is.
    pub kind: ArtifactKind,
    /// A file path, or an [`crate::AmiRef`] for [`ArtifactKind::Ami`].
    pub path: String,
    /// SHA-256 of a file; empty for an AMI.
    pub sha256: String,
    /// Bytes of a file; 0 for an AMI.
    pub size: u64,
}

impl Artifact {
    /// The AMI this artifact is, when it is one.
    pub fn ami(&self) -> Option<crate::AmiRef> {
        (self.kind == ArtifactKind::Ami).then(|| self.path.parse().ok()).flatten()
    }
}
