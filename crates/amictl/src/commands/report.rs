//! `amictl report` (one self-contained HTML page, or JSON) and `amictl metrics`
//! (Prometheus text), from the state alone — no AWS calls, so a report can be produced
//! anywhere the state file is. Deadlines are judged again at `--now`.

use anyhow::{Context, Result};
use engine::views;

use super::{catalog_read, load_config_reading};
use crate::cli::{Common, MetricsArgs, ReportArgs};
use crate::render::{html, prometheus};
use crate::{clock, exit};

pub fn report(common: &Common, args: &ReportArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let report = views::report(&cfg, &catalog_read(&cfg)?, now)?;
    if let Some(path) = &args.html {
        std::fs::write(path, html::html(&report)).with_context(|| format!("cannot write {}", path.display()))?;
        if !common.json {
            eprintln!("wrote {}", path.display());
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.html.is_none() {
        println!("{}", html::html(&report));
    }
    let compliant = report.consumers.iter().all(|c| c.summary.compliant());
    Ok(if compliant { exit::OK } else { exit::NONCOMPLIANT })
}

pub fn metrics(common: &Common, args: &MetricsArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let report = views::report(&cfg, &catalog_read(&cfg)?, now)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", prometheus::prometheus(&report));
    }
    Ok(exit::OK)
}
