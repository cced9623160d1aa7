//! Parent root filesystems, stored once by content.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use config::ParentSpec;
use sha2::{Digest, Sha256};

use crate::FactoryError;

/// A prepared parent: its content id, display name and root filesystem.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Parent {
    pub id: String,
    pub name: String,
    /// When this content was first prepared (RFC 3339).
    pub created: String,
    pub rootfs: PathBuf,
}

fn ref_file(work_dir: &Path, spec: &ParentSpec) -> PathBuf {
    let key = match spec {
        ParentSpec::Debootstrap { suite } => format!("debootstrap-{suite}"),
        ParentSpec::Tarball { path } => {
            format!("tarball-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("rootfs"))
        }
        ami => format!("ami-{}", config::hex(&Sha256::digest(ami.to_string()))),
    };
    work_dir.join("parents").join(format!("{key}.json"))
}

/// The parent recorded by the last preparation (the ref file only).
fn stored(work_dir: &Path, spec: &ParentSpec) -> Option<Parent> {
    let text = fs::read_to_string(ref_file(work_dir, spec)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A tarball parent's content id.
fn tarball_id(path: &Path) -> Result<String, FactoryError> {
    crate::sha256_file(path)
        .map(|h| h[..16].to_string())
        .map_err(|e| FactoryError::Parent(format!("cannot read {}: {e}", path.display())))
}

/// The parent as last prepared, without doing any work (for `plan`). A tarball parent
/// moves when the file changes; hashing it is cheap next to a build.
pub fn observe_parent(work_dir: &Path, spec: &ParentSpec) -> Option<Parent> {
    let parent = stored(work_dir, spec)?;
    if let ParentSpec::Tarball { path } = spec {
        let id = tarball_id(path).ok()?;
        if id != parent.id {
            return Some(Parent { id, ..parent });
        }
    }
    parent.rootfs.is_dir().then_some(parent)
}

/// Makes sure the parent's root filesystem exists, preparing it (debootstrap, extract)
/// when needed or when `refresh` asks for a new one.
pub fn prepare_parent(work_dir: &Path, spec: &ParentSpec, refresh: bool) -> Result<Parent, FactoryError> {
    let stored = stored(work_dir, spec).filter(|p| p.rootfs.is_dir());
    // Hashed once here and reused below.
    let tarball = match spec {
        ParentSpec::Tarball { path } => Some(tarball_id(path)?),
        _ => None,
    };
    if !refresh
        && let Some(p) = &stored
        && tarball.as_ref().is_none_or(|id| *id == p.id)
    {
        return Ok(p.clone());
    }
    let parents = work_dir.join("parents");
    fs::create_dir_all(&parents)
        .map_err(|e| FactoryError::Parent(format!("cannot create {}: {e}", parents.display())))?;
    let tmp = parents.join(format!(".incoming-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        let rootfs = tmp.join("rootfs");
        let id = match spec {
            ParentSpec::Debootstrap { suite } => {
                let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
                fs::create_dir_all(&tmp).map_err(|e| FactoryError::Parent(e.to_string()))?;
                let log = tmp.join("debootstrap.log");
                let out = fs::File::create(&log).map_err(|e| FactoryError::Parent(e.to_string()))?;
                let status = Command::new("debootstrap")
                    .args(["--variant=minbase", suite])
                    .arg(&rootfs)
                    .arg(&mirror)
                    .stdout(out.try_clone().map_err(|e| FactoryError::Parent(e.to_string()))?)
                    .stderr(out)
                    .status()
                    .map_err(|e| {
                        FactoryError::Parent(format!(
                            "cannot run debootstrap ({e}); install it with apt-get install debootstrap"
                        ))
                    })?;
                if !status.success() {
                    let tail: Vec<String> = fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(5)
                        .map(str::to_string)
                        .collect();
                    return Err(FactoryError::Parent(format!(
                        "debootstrap {suite} failed: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    )));
                }
                let status = fs::read(rootfs.join("var/lib/dpkg/status"))
                    .map_err(|e| FactoryError::Parent(format!("debootstrap left no dpkg status: {e}")))?;
                config::hex(&Sha256::digest(&status))[..16].to_string()
            }
            ami @ (ParentSpec::SsmParameter { .. } | ParentSpec::AmiName { .. } | ParentSpec::Recipe) => {
                return Err(FactoryError::Parent(format!(
                    "{ami} is an AMI; the local builder needs debootstrap: or tarball: parents"
                )));
            }
            ParentSpec::Tarball { path } => {
                fs::create_dir_all(&rootfs).map_err(|e| FactoryError::Parent(e.to_string()))?;
                let status = Command::new("tar")
                    .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf"])
                    .arg(path)
                    .arg("-C")
                    .arg(&rootfs)
                    .status()
                    .map_err(|e| FactoryError::Parent(format!("cannot run tar: {e}")))?;
                if !status.success() {
                    return Err(FactoryError::Parent(format!("cannot extract {}", path.display())));
                }
                tarball.clone().unwrap_or_default()
            }
        };
        let dest = parents.join(&id);
        if !dest.join("rootfs").is_dir() {
            let _ = fs::remove_dir_all(&dest);
            fs::rename(&tmp, &dest).map_err(|e| FactoryError::Parent(e.to_string()))?;
        }
        let parent = Parent {
            id: id.clone(),
            name: spec.to_string(),
            created: jiff::Timestamp::now().to_string(),
            rootfs: dest.join("rootfs"),
        };
        // Same content as before: keep its original preparation time.
        let parent = stored.filter(|p| p.id == id).unwrap_or(parent);
        fs::write(ref_file(work_dir, spec), serde_json::to_string_pretty(&parent).unwrap_or_default())
            .map_err(|e| FactoryError::Parent(e.to_string()))?;
        Ok(parent)
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}
