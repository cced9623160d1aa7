//! One module per verb: parse the arguments, call the engine, render the result.

pub mod advisories;
pub mod anchors;
pub mod apply;
pub mod approvals;
pub mod audit;
pub mod fleet;
pub mod iam;
pub mod images;
pub mod import;
pub mod plan;
pub mod report;
pub mod toe;
pub mod validate;

use anyhow::Result;
use config::Config;

use crate::UsageError;
use crate::cli::Common;

/// Loads and validates the config for a command that decides (plan, apply, validate,
/// import): components by ARN with `x` in their version are asked for again. Every
/// problem is printed and nothing changes.
pub fn load_config(common: &Common) -> Result<Config> {
    load_config_with(common, false)
}

/// [`load_config`]; with `strict`, unknown keys in documents are errors.
pub fn load_config_with(common: &Common, strict: bool) -> Result<Config> {
    load(common, strict, false, component_source())
}

/// [`load_config`] for a command that only reads and reports: cached components serve,
/// and one that cannot be fetched is a warning.
pub fn load_config_reading(common: &Common) -> Result<Config> {
    load(common, false, true, cache(true))
}

fn load(common: &Common, strict: bool, lenient: bool, source: ::toe::component::Cache) -> Result<Config> {
    let opts = config::LoadOptions { strict, components: Some(&source), lenient };
    match Config::load_opts(&common.config, &opts) {
        Ok((cfg, warnings)) => {
            toe::print_diagnostics(&warnings);
            Ok(cfg)
        }
        Err(diags) => {
            toe::print_diagnostics(&diags);
            let errors = diags.iter().filter(|d| d.severity == ::toe::Severity::Error).count();
            Err(UsageError(format!("{} has {errors} error(s); nothing was changed", common.config.display())).into())
        }
    }
}

/// Components by ARN: the on-disk cache in front of Image Builder's `GetComponent`.
pub fn component_source() -> ::toe::component::Cache {
    cache(false)
}

/// The cache; `cached_first` for commands that only read.
fn cache(cached_first: bool) -> ::toe::component::Cache {
    let upstream = Some(std::sync::Arc::new(aws::components::ComponentFetcher::new()) as _);
    let dir = ::toe::component::Cache::default_dir();
    if cached_first {
        ::toe::component::Cache::cached_first(dir, upstream)
    } else {
        ::toe::component::Cache::new(dir, upstream)
    }
}

/// Who runs amictl, for the audit trail: `user@host (amictl 0.1.0)`.
pub fn actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{} (amictl {})", host.trim(), env!("CARGO_PKG_VERSION"))
}

/// Where the state lives: the SQLite file, or `[state] url`.
pub fn location(cfg: &Config) -> Result<catalog::Location> {
    engine::state_location(cfg).map_err(|e| UsageError(e.to_string()).into())
}

/// The state, opened by a command that writes (created when no history existed, and
/// refused when the anchors say one did).
pub fn catalog(cfg: &Config) -> Result<catalog::Catalog> {
    let cat = catalog::Catalog::open_at(&location(cfg)?)?;
    anchors::refuse_missing_history(cfg, &cat)?;
    Ok(cat)
}

/// The state, opened by a command that only reads: never creates a file.
pub fn catalog_read(cfg: &Config) -> Result<catalog::Catalog> {
    let cat = catalog::Catalog::open_read_at(&location(cfg)?)?;
    anchors::refuse_missing_history(cfg, &cat)?;
    Ok(cat)
}
