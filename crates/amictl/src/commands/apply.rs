//! `amictl apply` and `amictl build IMAGE`: carry out the plan, recording every step.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use engine::{ApplyOptions, ApplyReport, Engine, Scope};
use jiff::Timestamp;
use provider::Cancel;
use serde_json::json;

use super::{actor, catalog, load_config};
use crate::cli::{ApplyArgs, BuildArgs, Common, PlanArgs};
use crate::ui::Ui;
use crate::wiring::{self, Needs};
use crate::{UsageError, clock, exit, signals};

pub fn apply(common: &Common, args: &ApplyArgs) -> Result<u8> {
    if args.dry_run {
        return super::plan::run(common, &PlanArgs { now: args.now.clone() });
    }
    let options =
        ApplyOptions { wait: args.wait, refresh_parents: args.refresh_parents, parallel: args.parallel.max(1) };
    if let Some(from) = &args.clock_from {
        let start = clock::resolve(Some(from))?;
        return run(common, start, Scope::default(), &options, Some(Arc::new(clock::Modelled::starting(start))));
    }
    let now = clock::resolve(args.now.as_deref())?;
    run(common, now, Scope::default(), &options, None)
}

pub fn build(common: &Common, args: &BuildArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    if !cfg.images.contains_key(&args.image) {
        let known = cfg.images.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err(UsageError(format!(
            "no image line `{}` in {} (known: {known})",
            args.image,
            common.config.display()
        ))
        .into());
    }
    let forced = if args.force { BTreeSet::from([args.image.clone()]) } else { BTreeSet::new() };
    let scope = Scope { only: Some(args.image.clone()), forced };
    let options = ApplyOptions { wait: args.wait, refresh_parents: args.refresh_parents, ..ApplyOptions::default() };
    run(common, Timestamp::now(), scope, &options, None)
}

fn run(
    common: &Common,
    now: Timestamp,
    scope: Scope,
    options: &ApplyOptions,
    modelled: Option<Arc<dyn engine::Clock>>,
) -> Result<u8> {
    let cfg = load_config(common)?;
    let ui = Arc::new(Ui::new(common.json));
    let cancel = Cancel::new();
    let stop = signals::graceful(cancel.clone());
    let providers = wiring::providers(&cfg, Needs::default())?;
    let cat = catalog(&cfg)?;
    let mut engine = Engine::new(cfg, cat, providers).with_progress(ui.clone()).with_cancel(cancel).with_actor(actor());
    if let Some(clock) = modelled {
        engine = engine.with_clock(clock);
    }
    let progress = ui.clone();
    let report = engine.apply(now, &scope, options, move |holder| {
        engine::Progress::line(&*progress, &format!("waiting for the run holding the state lock ({holder}) …"))
    });
    ui.done();
    // The chain's head goes outside the database after every run, whatever its result.
    {
        let cat = engine.catalog();
        super::anchors::after_run(engine.config(), &cat);
    }
    let report = report?;
    print(&report, common.json)?;
    if let Some(code) = stop.exit_code() {
        return Ok(code);
    }
    Ok(if report.failed() == 0 { exit::OK } else { exit::FAILED })
}

fn print(report: &ApplyReport, as_json: bool) -> Result<()> {
    if as_json {
        let held: Vec<&str> = report.held().filter_map(|a| a.held.as_deref()).collect();
        let out = json!({
            "actions": report.actions, "failed": report.failed(), "closed": report.closed,
            "interrupted": report.interrupted(), "not_started": report.not_started, "held": held,
            "plan": report.plan,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if report.plan.actions.is_empty() {
        eprintln!("Nothing to do.");
    }
    for a in report.held() {
        let id = a.held.as_deref().unwrap_or_default();
        eprintln!("held: {} {} waits for approval {id} (`amictl approve {id}`)", a.action, a.subject);
    }
    if report.interrupted() {
        eprintln!(
            "interrupted: {} action(s) ran, {} not started; the next apply carries on",
            report.actions.len(),
            report.not_started
        );
    }
    Ok(())
}
