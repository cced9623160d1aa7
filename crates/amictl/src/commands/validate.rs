//! `amictl validate`.

use anyhow::Result;
use serde_json::json;

use super::load_config_with;
use crate::cli::{Common, ConfigValidateArgs};
use crate::exit;

pub fn run(common: &Common, args: &ConfigValidateArgs) -> Result<u8> {
    let cfg = load_config_with(common, args.strict)?;
    let docs = cfg.components.len() + cfg.images.values().map(|i| i.tests.len()).sum::<usize>();
    let components: Vec<_> = cfg
        .components
        .values()
        .map(|c| json!({"name": c.name, "version": c.version, "source": c.file.display().to_string(), "arn": c.arn, "sha256": c.sha256}))
        .collect();
    if common.json {
        println!(
            "{}",
            json!({"valid": true, "images": cfg.images.keys().collect::<Vec<_>>(), "documents": docs, "components": components, "fetched": cfg.fetched.keys().collect::<Vec<_>>()})
        );
    } else {
        for c in cfg.components.values() {
            if let Some(arn) = &c.arn {
                eprintln!("component {}: {} is {arn} (sha256 {})", c.name, c.file.display(), &c.sha256[..12]);
            }
        }
        eprintln!(
            "{}: valid — {} image line(s), {} component(s), {docs} document(s) checked",
            common.config.display(),
            cfg.images.len(),
            cfg.components.len()
        );
    }
    Ok(exit::OK)
}
