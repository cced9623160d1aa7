//! Image artifacts: a root filesystem tarball and disk images, made without loop devices.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use provider::{Artifact, ArtifactKind};
use sha2::{Digest, Sha256};

use crate::FactoryError;

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(config::hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn run(stage_what: &str, cmd: &mut Command) -> Result<(), FactoryError> {
    let out =
        cmd.output().map_err(|e| FactoryError::Stage { stage: "artifacts", message: format!("{stage_what}: {e}") })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FactoryError::Stage {
            stage: "artifacts",
            message: format!("{stage_what} failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

fn describe(kind: ArtifactKind, path: &Path) -> Result<Artifact, FactoryError> {
    let size =
        fs::metadata(path).map_err(|e| FactoryError::Stage { stage: "artifacts", message: e.to_string() })?.len();
    let sha256 = sha256_file(path).map_err(|e| FactoryError::Stage { stage: "artifacts", message: e.to_string() })?;
    Ok(Artifact { kind, path: path.display().to_string(), sha256, size })
}

/// The apparent size of a tree in bytes.
fn tree_size(dir: &Path) -> u64 {
    let out = Command::new("du").args(["-sb", "--apparent-size"]).arg(dir).output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

pub fn produce(rootfs: &Path, dir: &Path, disk_size_mb: Option<u64>) -> Result<Vec<Artifact>, FactoryError> {
    let tarball = dir.join("rootfs.tar.zst");
    run(
        "tar",
        Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-I", "zstd -T0 -3 -q", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(rootfs)
            .arg("."),
    )?;
    // ext4 with a third of headroom (and at least 256 MiB), built straight from the tree.
    let size_mb = disk_size_mb.unwrap_or_else(|| (tree_size(rootfs) / (1 << 20)) * 4 / 3 + 256);
    let raw = dir.join("disk.raw");
    run(
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d"])
            .arg(rootfs)
            .arg(&raw)
            .arg(format!("{size_mb}M")),
    )?;
    let qcow2 = dir.join("disk.qcow2");
    run("qemu-img", Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(&qcow2))?;
    let manifest = dir.join("manifest.tsv");
    let mut out = vec![
        describe(ArtifactKind::RootfsTarZst, &tarball)?,
        describe(ArtifactKind::DiskRaw, &raw)?,
        describe(ArtifactKind::DiskQcow2, &qcow2)?,
    ];
    if manifest.exists() {
        out.push(describe(ArtifactKind::Manifest, &manifest)?);
    }
    Ok(out)
}
