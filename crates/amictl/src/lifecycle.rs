//! observe → decide → act → record, for `plan`, `apply` and `build`.
//!
//! The planner (`policy`) is pure; this module gathers what it needs (config, catalog,
//! parents), hands the plan to the local factory, and records every decision and every
//! action twice in the audit chain — intent before, outcome after — with the planner's
//! reason.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use catalog::{BuildState, Catalog, ComponentUse, NewBuild, RunLock};
use config::Config;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use local::{Factory, Stage};
use policy::{
    Action, ActionKind, DesiredImage, Observed, ObservedVersion, ParentObservation, Plan, PolicyView, VersionState,
};
use serde_json::json;

use crate::cli::{ApplyArgs, BuildArgs, Common, PlanArgs};
use crate::cloud::{self, Cloud};
use crate::{UsageError, clock, exit};

/// Loads and validates the config; every problem is printed and nothing changes.
pub fn load_config(common: &Common) -> Result<Config> {
    match Config::load(&common.config) {
        Ok((cfg, warnings)) => {
            crate::toe_cmd::print_diagnostics(&warnings);
            Ok(cfg)
        }
        Err(diags) => {
            crate::toe_cmd::print_diagnostics(&diags);
            let errors = diags.iter().filter(|d| d.severity == toe::Severity::Error).count();
            Err(UsageError(format!("{} has {errors} error(s); nothing was changed", common.config.display())).into())
        }
    }
}

pub fn validate(common: &Common) -> Result<u8> {
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

fn desired(cfg: &Config, cloud: Option<&Cloud>) -> (Vec<DesiredImage>, PolicyView) {
    let platform = cloud.map(|c| c.platform.as_str());
    let images = cfg
        .images
        .values()
        .map(|i| DesiredImage {
            name: i.name.clone(),
            recipe_hash: i.recipe_hash.clone(),
            components: i.components.iter().map(|c| (c.clone(), cfg.components[c].version.clone())).collect(),
            targets: if cloud.is_some() { cloud::targets(i, platform) } else { BTreeSet::new() },
        })
        .collect();
    let p = &cfg.policy;
    (
        images,
        PolicyView {
            max_age_seconds: p.max_age_seconds,
            rebuild_on_parent_update: p.rebuild_on_parent_update,
            keep_versions: p.keep_versions,
            rebuild_on_severity: p.rebuild_on_severity.clone(),
        },
    )
}

fn observe(
    cfg: &Config,
    cat: &mut Catalog,
    forced: BTreeSet<String>,
    cloud: Option<&Cloud>,
    now: Timestamp,
) -> Result<Observed> {
    let mut versions = Vec::new();
    for v in cat.versions(None)? {
        let state = match v.state {
            BuildState::Available => VersionState::Available,
            BuildState::Failed => VersionState::Failed,
            BuildState::Retired => VersionState::Retired,
            _ => VersionState::Unfinished,
        };
        let built_at =
            v.finished_at.as_deref().unwrap_or(&v.started_at).parse::<Timestamp>().unwrap_or(Timestamp::UNIX_EPOCH);
        versions.push(ObservedVersion {
            image: v.image.clone(),
            version: v.version.clone(),
            build_id: v.build_id.clone(),
            state,
            stage: v.state.as_str().to_string(),
            built_at,
            recipe_hash: v.recipe_hash.clone(),
            parent_id: v.parent_id.clone(),
            components: v.components.iter().map(|c| (c.name.clone(), c.version.clone())).collect(),
            distributed: cat
                .distributions(&v.build_id)?
                .into_iter()
                .map(|d| format!("{}/{}", d.account, d.region))
                .collect(),
        });
    }
    let mut parents = BTreeMap::new();
    for image in cfg.images.values() {
        if let (true, Some(cloud)) = (image.parent.is_ami(), cloud) {
            let p = cloud.parent(&image.parent)?;
            parents.insert(image.name.clone(), ParentObservation { id: p.image_id, name: image.parent.to_string() });
        } else if let Some(p) = local::observe_parent(&cfg.cache_dir, &image.parent) {
            parents.insert(image.name.clone(), ParentObservation { id: p.id, name: p.name });
        }
    }
    // Which versions run where: a fresh scan when consumers are configured, else the last one.
    let mut lagging = Vec::new();
    if let Some(cloud) = cloud
        && !cfg.consumers.is_empty()
    {
        let scans = crate::fleet_cmd::scan(cfg, cloud, cat, now)?;
        lagging = crate::fleet_cmd::lagging(&scans);
    }
    let in_use = cat.versions_in_use()?;
    let advisories = crate::advisories_cmd::checks(cfg, cat, now, cloud)?;
    Ok(Observed { versions, parents, forced, in_use, lagging, advisories })
}

fn make_plan(
    cfg: &Config,
    cat: &mut Catalog,
    now: Timestamp,
    only: Option<&str>,
    forced: BTreeSet<String>,
    cloud: Option<&Cloud>,
) -> Result<Plan> {
    let (mut images, policy) = desired(cfg, cloud);
    if let Some(only) = only {
        images.retain(|i| i.name == only);
    }
    let observed = observe(cfg, cat, forced, cloud, now)?;
    let mut plan = policy::plan(&images, &policy, &observed, now);
    if let Some(only) = only {
        plan.actions.retain(|a| a.image == only);
    }
    Ok(plan)
}

/// What people read for an action kind (`--json` keeps the serde names).
fn label(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Recover => "recover",
        ActionKind::Build => "build",
        ActionKind::Distribute => "publish",
        ActionKind::Rollout => "rollout",
        ActionKind::Retire => "retire",
    }
}

pub(crate) fn reasons_text(a: &Action) -> String {
    a.reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn print_plan(plan: &Plan, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    if plan.actions.is_empty() {
        println!("Nothing to do.");
    } else {
        println!("{:<8} {:<36} {:<16} REASON", "ACTION", "IMAGE", "VERSION");
        for a in &plan.actions {
            let kind = label(a.kind);
            println!("{kind:<8} {:<36} {:<16} {}", a.image, a.version.as_deref().unwrap_or("(new)"), reasons_text(a));
        }
    }
    for n in &plan.notes {
        println!("  {} {} is current; rebuild due in {} day(s)", n.image, n.version, n.due_in_days);
    }
    for s in &plan.stale {
        println!("  {}: advisory check STALE — {}", s.image, s.reason);
    }
    Ok(())
}

pub fn plan(common: &Common, args: &PlanArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let mut cat = Catalog::open(&cfg.state)?;
    let cloud = if cloud::needed(&cfg) { Some(Cloud::new(&cfg)?) } else { None };
    let plan = make_plan(&cfg, &mut cat, now, None, BTreeSet::new(), cloud.as_ref())?;
    print_plan(&plan, common.json)?;
    Ok(if plan.is_empty() { exit::OK } else { exit::USAGE })
}

pub fn apply(common: &Common, args: &ApplyArgs) -> Result<u8> {
    let now = clock::resolve(args.now.as_deref())?;
    if args.dry_run {
        return plan(common, &PlanArgs { now: args.now.clone() });
    }
    run(common, now, None, BTreeSet::new(), args.wait, args.refresh_parents)
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
    run(common, Timestamp::now(), Some(&args.image), forced, args.wait, args.refresh_parents)
}

fn actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{} (amictl {})", host.trim(), env!("CARGO_PKG_VERSION"))
}

/// Progress on a TTY; plain lines elsewhere (CI logs, pipes).
pub(crate) struct Ui {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Ui {
    fn new(quiet: bool) -> Ui {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Ui { bar, quiet }
    }

    pub(crate) fn status(&self, msg: String) {
        match &self.bar {
            Some(b) => b.set_message(msg),
            None if !self.quiet => eprintln!("  … {msg}"),
            None => {}
        }
    }

    pub(crate) fn line(&self, msg: String) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub(crate) struct Recorder<'a> {
    pub(crate) cat: &'a mut Catalog,
    actor: String,
}

impl Recorder<'_> {
    pub(crate) fn event(&mut self, kind: &str, subject: &str, reason: &str, data: serde_json::Value) -> Result<()> {
        self.cat.append_event(&Timestamp::now().to_string(), &self.actor, kind, subject, reason, &data)?;
        Ok(())
    }
}

fn run(
    common: &Common,
    now: Timestamp,
    only: Option<&str>,
    forced: BTreeSet<String>,
    wait: bool,
    refresh: bool,
) -> Result<u8> {
    let cfg = load_config(common)?;
    let ui = Ui::new(common.json);
    let _lock = RunLock::acquire(&cfg.state, wait, |holder| {
        ui.line(format!("waiting for the run holding the state lock (pid {holder}) …"))
    })?;
    let mut cat = Catalog::open(&cfg.state)?;
    let cloud = if cloud::needed(&cfg) { Some(Cloud::new(&cfg)?) } else { None };
    let cloud = cloud.as_ref();
    let plan = make_plan(&cfg, &mut cat, now, only, forced, cloud)?;
    let factory = Factory::new(&cfg.work_dir);
    let mut rec = Recorder { cat: &mut cat, actor: actor() };
    rec.event(
        "apply.start",
        only.unwrap_or("*"),
        &format!("{} action(s) planned", plan.actions.len()),
        json!({"now": now.to_string(), "config": cfg.file.display().to_string()}),
    )?;
    for a in &plan.actions {
        let subject = match &a.version {
            Some(v) => format!("{}@{v}", a.image),
            None => a.image.clone(),
        };
        rec.event("decision", &subject, &reasons_text(a), json!({"action": a.kind, "reasons": a.reasons}))?;
    }
    if plan.actions.is_empty() && !common.json {
        ui.line("Nothing to do.".into());
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for a in &plan.actions {
        let outcome = match a.kind {
            ActionKind::Recover => recover(&factory, cloud, &mut rec, a, &ui),
            ActionKind::Build => build_image(&cfg, &factory, cloud, &mut rec, a, now, refresh, &ui),
            ActionKind::Distribute => match cloud {
                Some(cloud) => distribute(&cfg, cloud, &mut rec, a, now, &ui),
                None => Err(anyhow::anyhow!("publishing {} needs the AWS provider", a.image)),
            },
            ActionKind::Rollout => match cloud {
                Some(cloud) => crate::rollout::rollout(&cfg, cloud, &mut rec, a, now, &ui),
                None => Err(anyhow::anyhow!("rollouts need the AWS provider")),
            },
            ActionKind::Retire => retire(&factory, &mut rec, a, &ui),
        };
        match outcome {
            Ok(summary) => results.push(json!({"action": a.kind, "image": a.image, "ok": true, "result": summary})),
            Err(e) => {
                failed += 1;
                ui.line(format!("FAIL {} {}: {e:#}", label(a.kind), a.image));
                results.push(json!({"action": a.kind, "image": a.image, "ok": false, "error": format!("{e:#}")}));
            }
        }
    }
    rec.event(
        "apply.finish",
        only.unwrap_or("*"),
        &format!("{} ok, {failed} failed", plan.actions.len() - failed),
        json!({}),
    )?;
    ui.done();
    if common.json {
        println!("{}", serde_json::to_string_pretty(&json!({"actions": results, "failed": failed}))?);
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

fn recover(
    factory: &Factory,
    cloud: Option<&Cloud>,
    rec: &mut Recorder<'_>,
    a: &Action,
    ui: &Ui,
) -> Result<serde_json::Value> {
    let build_id = a.build_id.clone().unwrap_or_default();
    let version = a.version.clone().unwrap_or_default();
    let subject = format!("{}@{version}", a.image);
    rec.event("recover.intent", &subject, &reasons_text(a), json!({"build_id": build_id}))?;
    ui.status(format!("recovering {subject}: cleaning up the interrupted build"));
    if let Some(cloud) = cloud {
        // Everything the build made carries its id: instances, a half-made AMI, secrets.
        let cleaned = cloud.cleanup(&build_id).with_context(|| format!("cannot clean up {subject} in AWS"))?;
        rec.event("recover.cloud", &subject, "removed what the interrupted build left in AWS", json!(cleaned))?;
    }
    factory.clean_scratch(&build_id);
    factory
        .remove_image(&a.image, &version)
        .with_context(|| format!("cannot remove the partial image of {subject}"))?;
    rec.cat.set_state(
        &build_id,
        BuildState::Failed,
        Some(&format!("interrupted: {}", reasons_text(a))),
        &Timestamp::now().to_string(),
    )?;
    rec.event(
        "recover.outcome",
        &subject,
        "cleaned up and marked failed",
        json!({"build_id": build_id, "state": "failed"}),
    )?;
    ui.line(format!("recovered {subject}: {}", reasons_text(a)));
    Ok(json!({"build_id": build_id}))
}

fn retire(factory: &Factory, rec: &mut Recorder<'_>, a: &Action, ui: &Ui) -> Result<serde_json::Value> {
    let build_id = a.build_id.clone().unwrap_or_default();
    let version = a.version.clone().unwrap_or_default();
    let subject = format!("{}@{version}", a.image);
    rec.event("retire.intent", &subject, &reasons_text(a), json!({"build_id": build_id}))?;
    factory.remove_image(&a.image, &version).with_context(|| format!("cannot remove the files of {subject}"))?;
    rec.cat.set_state(&build_id, BuildState::Retired, None, &Timestamp::now().to_string())?;
    rec.event("retire.outcome", &subject, "files removed, version retired", json!({"build_id": build_id}))?;
    ui.line(format!("retired {subject}: {}", reasons_text(a)));
    Ok(json!({"build_id": build_id}))
}

fn step_text(step: &aws::build::Step) -> String {
    use aws::build::Step;
    match step {
        Step::Launching(role) => format!("launching the {role} instance"),
        Step::WaitingForSsm(role) => format!("waiting for the {role}'s SSM agent"),
        Step::Component(name) => format!("running component {name}"),
        Step::Manifest => "collecting the package manifest".into(),
        Step::Imaging => "creating the AMI".into(),
        Step::Test(name) => format!("testing: {name}"),
        Step::Rebooting => "testing: reboot".into(),
        Step::CleaningUp => "cleaning up instances".into(),
    }
}

/// One log file per Run Command step, in order, for `show` and the operator.
fn write_cloud_logs(dir: &std::path::Path, journal: &aws::build::Journal) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    for (i, log) in journal.logs.iter().enumerate() {
        let file: String =
            log.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let text = format!("# {} (command {})\n{}\n# stderr\n{}\n", log.name, log.command_id, log.stdout, log.stderr);
        let _ = std::fs::write(dir.join(format!("{:02}-{file}.log", i + 1)), text);
    }
}

/// Publishes a version everywhere it is configured to go, records each region, and then
/// deprecates the versions it supersedes (after the rollout SLA, so fleets have time).
#[allow(clippy::too_many_arguments)]
fn publish(
    cfg: &Config,
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    image: &config::Image,
    version: &str,
    build_id: &str,
    image_id: &str,
    now: Timestamp,
    ui: &Ui,
) -> Result<serde_json::Value> {
    let subject = format!("{}@{version}", image.name);
    let targets: Vec<String> = cloud::targets(image, Some(&cloud.platform)).into_iter().collect();
    rec.event(
        "publish.intent",
        &subject,
        "publish a tested version",
        json!({"build_id": build_id, "source": image_id, "targets": targets}),
    )?;
    ui.status(format!("{subject}: publishing to {} target(s)", targets.len()));
    let report = cloud.publish(image, version, build_id, image_id);
    let at = Timestamp::now().to_string();
    for r in &report.done {
        for row in cloud::distribution_rows(&cloud.platform, r, &at) {
            rec.cat.record_distribution(build_id, &row)?;
        }
        rec.event("publish.region", &subject, "available, shared and pointed to", json!(r))?;
        ui.line(format!(
            "published {subject} in {}: {} → {}",
            r.region,
            r.image_id,
            r.consumers.iter().map(|c| format!("{} ({})", c.account, c.how)).collect::<Vec<_>>().join(", ")
        ));
    }
    for (region, e) in &report.failed {
        rec.event("publish.region.failed", &subject, &e.to_string(), json!({"region": region}))?;
        ui.line(format!("FAIL publishing {subject} in {region}: {e}"));
    }
    rec.event(
        "publish.outcome",
        &subject,
        &format!("{} region(s) done, {} failed", report.done.len(), report.failed.len()),
        json!({"build_id": build_id}),
    )?;
    if !report.failed.is_empty() {
        let list: Vec<String> = report.failed.iter().map(|(r, e)| format!("{r}: {e}")).collect();
        return Err(anyhow::anyhow!("publishing failed in {}", list.join("; ")));
    }
    deprecate_superseded(cfg, cloud, rec, &image.name, build_id, now)?;
    Ok(json!(report.done))
}

/// Older available versions of the line are deprecated `rollout_sla` from now. Failures are
/// recorded, not fatal: deprecation steers launches, it does not change what runs.
fn deprecate_superseded(
    cfg: &Config,
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    image: &str,
    build_id: &str,
    now: Timestamp,
) -> Result<()> {
    let at = now.as_second().saturating_add(cfg.policy.rollout_sla_seconds);
    let when = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    let older: Vec<catalog::Version> = rec
        .cat
        .versions(Some(image))?
        .into_iter()
        .filter(|v| v.build_id != build_id && v.state == BuildState::Available)
        .collect();
    for v in older {
        let subject = format!("{image}@{}", v.version);
        for d in rec.cat.distributions(&v.build_id)?.into_iter().filter(|d| d.how != "shared") {
            let outcome = cloud.deprecate(&d.account, &d.region, &d.image_id, when);
            let (reason, error) = match &outcome {
                Ok(()) => ("superseded".to_string(), None),
                Err(e) => ("superseded; deprecation failed".to_string(), Some(format!("{e:#}"))),
            };
            rec.event(
                "deprecate",
                &subject,
                &reason,
                json!({"account": d.account, "region": d.region, "image_id": d.image_id, "at": Timestamp::from_second(at).map(|t| t.to_string()).unwrap_or_default(), "error": error}),
            )?;
        }
    }
    Ok(())
}

/// Publishes an existing version to the targets it has not reached.
fn distribute(
    cfg: &Config,
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    a: &Action,
    now: Timestamp,
    ui: &Ui,
) -> Result<serde_json::Value> {
    let build_id = a.build_id.clone().unwrap_or_default();
    let version = a.version.clone().unwrap_or_default();
    let image = cfg.images.get(&a.image).ok_or_else(|| anyhow::anyhow!("no image line {}", a.image))?;
    let source = rec
        .cat
        .artifacts(&build_id)?
        .into_iter()
        .find(|x| x.kind == "ami")
        .and_then(|x| x.path.rsplit(':').next().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("{}@{version} has no AMI recorded", a.image))?;
    rec.event("decision.publish", &format!("{}@{version}", a.image), &reasons_text(a), json!({"build_id": build_id}))?;
    publish(cfg, cloud, rec, image, &version, &build_id, &source, now, ui)
}

#[allow(clippy::too_many_arguments)]
fn build_image(
    cfg: &Config,
    factory: &Factory,
    cloud: Option<&Cloud>,
    rec: &mut Recorder<'_>,
    a: &Action,
    now: Timestamp,
    refresh: bool,
    ui: &Ui,
) -> Result<serde_json::Value> {
    let image = &cfg.images[&a.image];
    let components: Vec<&config::Component> = image.components.iter().map(|c| &cfg.components[c]).collect();
    let uses: Vec<ComponentUse> = components
        .iter()
        .map(|c| ComponentUse { name: c.name.clone(), version: c.version.clone(), sha256: c.sha256.clone() })
        .collect();
    let build_id = uuid::Uuid::new_v4().to_string();
    let version = rec.cat.next_version(&image.name, &clock::version_date(Timestamp::now()))?;
    let subject = format!("{}@{version}", image.name);
    let reason = serde_json::to_value(&a.reasons)?;
    let log_dir = factory.log_dir(&build_id);
    let started = Timestamp::now().to_string();
    rec.cat.insert_build(&NewBuild {
        build_id: &build_id,
        image: &image.name,
        version: &version,
        reason: &reason,
        recipe_hash: &image.recipe_hash,
        parent_id: "",
        parent_name: &image.parent.to_string(),
        parent_created: "",
        started_at: &started,
        log_dir: &log_dir.display().to_string(),
        components: &uses,
    })?;
    rec.event(
        "build.intent",
        &subject,
        &reasons_text(a),
        json!({"build_id": build_id, "recipe": image.recipe_hash, "parent": image.parent.to_string(), "components": uses, "planned_at": now.to_string()}),
    )?;
    let fail = |rec: &mut Recorder<'_>, message: String| -> Result<serde_json::Value> {
        rec.cat.set_state(&build_id, BuildState::Failed, Some(&message), &Timestamp::now().to_string())?;
        rec.event(
            "build.outcome",
            &subject,
            "failed",
            json!({"build_id": build_id, "state": "failed", "error": message, "logs": log_dir.display().to_string()}),
        )?;
        Err(anyhow::anyhow!("{message}"))
    };
    rec.cat.set_state(&build_id, BuildState::Building, None, &started)?;
    if let config::Builder::Ec2 { .. } = image.builder {
        let Some(cloud) = cloud else { return fail(rec, "the EC2 builder needs the AWS provider".into()) };
        let parent = match cloud.parent(&image.parent) {
            Ok(p) => p,
            Err(e) => return fail(rec, format!("parent: {e:#}")),
        };
        rec.cat.set_parent(&build_id, &parent.image_id, &parent.name, &parent.created)?;
        let mut journal = aws::build::Journal::default();
        let testing: std::cell::RefCell<Option<Result<(), catalog::CatalogError>>> = Default::default();
        let result = cloud.build(cfg, image, &build_id, &version, &parent.image_id, &mut journal, &|step| {
            ui.status(format!("{subject}: {}", step_text(&step)));
            if matches!(step, aws::build::Step::Launching("tester")) {
                *testing.borrow_mut() =
                    Some(rec.cat.set_state(&build_id, BuildState::Testing, None, &Timestamp::now().to_string()));
            }
        });
        if let Some(Err(e)) = testing.into_inner() {
            return Err(e.into());
        }
        write_cloud_logs(&log_dir, &journal);
        let tests: Vec<catalog::TestResult> = journal
            .tests
            .iter()
            .map(|t| catalog::TestResult { name: t.name.clone(), passed: t.passed, detail: t.detail.clone() })
            .collect();
        let image_id = match result {
            Ok(id) => id,
            Err(e) => {
                rec.cat.record_outputs(&build_id, &[], &[], &tests)?;
                return fail(rec, format!("{e:#}"));
            }
        };
        let packages: Vec<catalog::Package> = journal
            .packages
            .iter()
            .map(|p| catalog::Package {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                source_name: p.source_name.clone(),
                source_version: p.source_version.clone(),
            })
            .collect();
        let account_id = cfg.accounts.get(&cloud.platform).map(|a| a.id.clone()).unwrap_or_default();
        let artifacts = vec![catalog::Artifact {
            kind: "ami".into(),
            path: format!("{account_id}:{}:{image_id}", cloud.region),
            sha256: String::new(),
            size: 0,
        }];
        rec.cat.record_outputs(&build_id, &packages, &artifacts, &tests)?;
        rec.cat.set_state(&build_id, BuildState::Available, None, &Timestamp::now().to_string())?;
        rec.event(
            "build.outcome",
            &subject,
            "built and tested on EC2",
            json!({"build_id": build_id, "state": "available", "image_id": image_id, "region": cloud.region,
                   "parent": parent, "packages": packages.len(), "tests": tests, "cleanup": journal.cleanup}),
        )?;
        ui.line(format!(
            "built {subject}: {image_id} in {}, {} packages, {} test(s) passed ({})",
            cloud.region,
            packages.len(),
            tests.len(),
            reasons_text(a)
        ));
        let published = publish(cfg, cloud, rec, image, &version, &build_id, &image_id, now, ui);
        return match published {
            Ok(p) => Ok(json!({"version": version, "build_id": build_id, "image_id": image_id, "published": p})),
            Err(e) => Err(e.context(format!(
                "{subject} is built and tested ({image_id}) but not fully published; the next apply retries"
            ))),
        };
    }
    ui.status(format!("{subject}: preparing parent {}", image.parent));
    let parent = match local::prepare_parent(&cfg.cache_dir, &image.parent, refresh) {
        Ok(p) => p,
        Err(e) => {
            std::fs::create_dir_all(&log_dir).ok();
            let _ = std::fs::write(log_dir.join("parent.log"), e.to_string());
            return fail(rec, format!("parent: {e}"));
        }
    };
    rec.cat.set_parent(&build_id, &parent.id, &parent.name, &parent.created)?;
    let request = local::BuildRequest {
        build_id: &build_id,
        image: &image.name,
        version: &version,
        parent: &parent,
        components,
        tests: &image.tests,
        disk_size_mb: match image.builder {
            config::Builder::Local { disk_size_mb } => disk_size_mb,
            config::Builder::Ec2 { .. } => None,
        },
    };
    let mut state_error = None;
    let result = factory.build(&request, |stage| {
        let msg = match stage {
            Stage::Build => "running build and validate phases in an overlay",
            Stage::Materialise => "materialising the new root filesystem",
            Stage::Test => "testing in a fresh overlay of the output",
            Stage::Artifacts => "writing rootfs.tar.zst, disk.raw, disk.qcow2",
        };
        ui.status(format!("{subject}: {msg}"));
        if stage == Stage::Test
            && let Err(e) = rec.cat.set_state(&build_id, BuildState::Testing, None, &Timestamp::now().to_string())
        {
            state_error = Some(e);
        }
    });
    if let Some(e) = state_error {
        return Err(e.into());
    }
    let output = match result {
        Ok(o) => o,
        Err(e) => return fail(rec, e.to_string()),
    };
    let packages = output.packages;
    let artifacts: Vec<catalog::Artifact> = output
        .artifacts
        .iter()
        .map(|a| catalog::Artifact {
            kind: a.kind.clone(),
            path: a.path.clone(),
            sha256: a.sha256.clone(),
            size: a.size,
        })
        .collect();
    let tests: Vec<catalog::TestResult> = output
        .tests
        .iter()
        .map(|t| catalog::TestResult { name: t.name.clone(), passed: t.passed, detail: t.detail.clone() })
        .collect();
    rec.cat.record_outputs(&build_id, &packages, &artifacts, &tests)?;
    rec.cat.set_state(&build_id, BuildState::Available, None, &Timestamp::now().to_string())?;
    rec.event(
        "build.outcome",
        &subject,
        "built and tested",
        json!({"build_id": build_id, "state": "available", "parent_id": parent.id, "packages": packages.len(), "tests": tests, "artifacts": artifacts}),
    )?;
    ui.line(format!(
        "built {subject}: {} packages, {} test(s) passed ({})",
        packages.len(),
        tests.len(),
        reasons_text(a)
    ));
    Ok(json!({"version": version, "build_id": build_id, "packages": packages.len()}))
}
