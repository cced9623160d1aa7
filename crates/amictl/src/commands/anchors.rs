//! The audit anchors of `[audit.anchors]` (or `--anchors`): writing the chain's head after
//! every run, judging a chain against them, and refusing to start a new history where they
//! show one existed.

use anchor::{AnchorStore, Checkpoint, DirStore, Signer};
use anyhow::{Context, Result};
use catalog::Catalog;
use config::Config;

use crate::UsageError;

/// The stores: the config's, or the one `--anchors` names (`s3://…` or a directory).
pub fn stores(cfg: &Config, override_: Option<&str>) -> Result<Vec<Box<dyn AnchorStore>>> {
    let region = cfg.aws_region.clone().unwrap_or_else(|| "us-east-1".into());
    let s3 = |url: &str| -> Result<Box<dyn AnchorStore>> {
        Ok(Box::new(aws::anchors::S3Store::new(url, &region, cfg.anchors.retention_days.max(1))?))
    };
    if let Some(o) = override_ {
        return Ok(vec![if o.starts_with("s3://") {
            s3(o)?
        } else {
            Box::new(DirStore::new(std::path::Path::new(o)))
        }]);
    }
    let mut out: Vec<Box<dyn AnchorStore>> = Vec::new();
    if let Some(d) = &cfg.anchors.dir {
        out.push(Box::new(DirStore::new(d)));
    }
    if let Some(u) = &cfg.anchors.s3 {
        out.push(s3(u)?);
    }
    Ok(out)
}

/// The signing key, read now from where the config says (never from the state).
pub fn signer(cfg: &Config) -> Result<Option<Signer>> {
    let Some(key) = &cfg.anchors.signing_key else { return Ok(None) };
    let text = key.resolve().map_err(|e| UsageError(format!("[audit.anchors] signing_key: {e}")))?;
    Ok(Some(Signer::from_hex(&text).map_err(|e| UsageError(format!("[audit.anchors] signing_key: {e}")))?))
}

/// The key checkpoints are verified with: `public_key`, else the signing key's.
pub fn public(cfg: &Config) -> Result<Option<anchor::VerifyingKey>> {
    if let Some(p) = &cfg.anchors.public_key {
        return Ok(Some(anchor::public_key(p)?));
    }
    Ok(signer(cfg)?.map(|s| s.public()))
}

/// Writes the chain's head to every configured store; where each went. Nothing is written
/// for an empty chain.
pub fn write(cfg: &Config, cat: &Catalog, now: &str) -> Result<Vec<String>> {
    write_to(&stores(cfg, None)?, signer(cfg)?.as_ref(), cat, now)
}

/// [`write`] to the given stores.
pub fn write_to(
    stores: &[Box<dyn AnchorStore>],
    signer: Option<&Signer>,
    cat: &Catalog,
    now: &str,
) -> Result<Vec<String>> {
    let (Some((seq, hash)), Some(first)) = (cat.head()?, cat.hash_at(1)?) else { return Ok(Vec::new()) };
    let mut cp = Checkpoint::new(&first, seq, &hash, now);
    if let Some(s) = signer {
        s.sign(&mut cp);
    }
    let mut out = Vec::new();
    for s in stores {
        out.push(s.put(&cp).with_context(|| format!("writing the audit anchor to {}", s.describe()))?);
    }
    Ok(out)
}

/// Writes the anchor after a run; a failure is said, not fatal (the next run writes one).
pub fn after_run(cfg: &Config, cat: &Catalog) {
    if !cfg.anchors.any() {
        return;
    }
    if let Err(e) = write(cfg, cat, &jiff::Timestamp::now().to_string()) {
        eprintln!("amictl: warning: {e:#}");
    }
}

/// Refuses an empty state where an anchor shows a history existed: a lost database is
/// restored, never silently replaced by a new chain.
pub fn refuse_missing_history(cfg: &Config, cat: &Catalog) -> Result<()> {
    if !cfg.anchors.any() || cat.event_count()? > 0 {
        return Ok(());
    }
    for s in stores(cfg, None)? {
        if let Some(name) = anchor::any(s.as_ref())? {
            return Err(UsageError(format!(
                "state {} holds no audit events, but {} holds checkpoints of a history ({name}). Nothing was changed. \
                 Restore the state from a backup (SQLite: `cp BACKUP {}`; PostgreSQL: pg_restore, or `amictl state copy` from a copy), \
                 then check it with `amictl audit verify --anchors {}`. To start a new history on purpose, point [audit.anchors] at a new location first",
                cat.path().display(),
                s.describe(),
                cat.path().display(),
                s.describe().trim_start_matches("dir:"),
            ))
            .into());
        }
    }
    Ok(())
}
