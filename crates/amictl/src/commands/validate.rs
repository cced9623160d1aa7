//! `amictl validate`.

use anyhow::Result;
use serde_json::json;

use super::load_config_with;
use crate::cli::{Common, ConfigValidateArgs};
use crate::exit;

pub fn run(common: &Common, args: &ConfigValidateArgs) -> Result<u8> {
    let cfg = load_config_with(common, args.strict)?;
    let docs = cfg.components.len() + cfg.images.values().map(|i| i.tests.len()).sum::<usize>();
    if common.json {
        println!("{}", json!({"valid": true, "images": cfg.images.keys().collect::<Vec<_>>(), "documents": docs}));
    } else {
        eprintln!(
            "{}: valid — {} image line(s), {} component(s), {docs} document(s) checked",
            common.config.display(),
            cfg.images.len(),
            cfg.components.len()
        );
    }
    Ok(exit::OK)
}
