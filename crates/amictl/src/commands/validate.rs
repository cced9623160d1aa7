//! `amictl validate`.

use anyhow::Result;
use serde_json::json;

use super::load_config;
use crate::cli::Common;
use crate::exit;

pub fn run(common: &Common) -> Result<u8> {
    let cfg = load_config(common)?;
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
