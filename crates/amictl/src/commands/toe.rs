//! `amictl toe validate|run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use sandbox::Sandbox;
use toe::component::{ComponentArn, Fetch};
use toe::{Diagnostic, DirectoryStore, Document, ObjectStore, RunOptions, RunOutcome, Severity};

use crate::cli::{RunArgs, ToeCommand, ValidateArgs};
use crate::progress::Progress;
use crate::{UsageError, exit};

/// Where the sandbox sees the folders the host lends it.
const IN_LOGS: &str = "/run/amictl/logs";
const IN_STATE: &str = "/run/amictl/state";
const IN_OBJECTS: &str = "/run/amictl/objects";
const IN_DOCUMENTS: &str = "/run/amictl/documents";

pub fn run(cmd: ToeCommand, json: bool) -> Result<u8> {
    match cmd {
        ToeCommand::Validate(a) => validate(a, json),
        ToeCommand::Run(a) => run_documents(a, json),
    }
}

fn split_list(flag: &str, list: &str) -> Result<Vec<String>> {
    let items: Vec<String> = list.split(',').map(str::to_string).collect();
    if items.iter().any(|i| i.trim().is_empty()) {
        return Err(UsageError(format!("--{flag} has an empty item in `{list}` (comma-separated, no spaces)")).into());
    }
    Ok(items)
}

/// `name=value,…`; the value may contain `=`, never a comma.
pub fn parse_parameters(list: &str) -> Result<Vec<(String, String)>> {
    list.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
            _ => Err(UsageError(format!("--parameters: `{pair}` is not name=value (both must be non-empty)")).into()),
        })
        .collect()
}

/// Loads every document (a file, or an Image Builder component ARN), returning all of
/// them or every diagnostic.
fn load_all(specs: &[String], strict: bool, components: &dyn Fetch) -> (Vec<Document>, Vec<Diagnostic>) {
    let mut docs = Vec::new();
    let mut diags = Vec::new();
    for spec in specs {
        let loaded = if ComponentArn::looks_like(spec) {
            match components.fetch(spec) {
                Ok(f) => {
                    if let Some(why) = &f.stale {
                        eprintln!("amictl: warning: {spec}: using the cached version {} ({why})", f.version);
                    }
                    f.document(PathBuf::from("."), strict)
                }
                Err(e) => {
                    let mut sink = toe::diag::Sink::new(spec);
                    sink.error(
                        toe::yaml::Pos { line: 1, column: 1 },
                        "component-fetch-failed",
                        e.message,
                        "check the ARN and that the credentials may call imagebuilder:GetComponent in its region",
                    );
                    Err(sink.items)
                }
            }
        } else {
            Document::load_with(Path::new(spec), strict)
        };
        match loaded {
            Ok((d, warnings)) => {
                docs.push(d);
                diags.extend(warnings);
            }
            Err(errors) => diags.extend(errors),
        }
    }
    (docs, diags)
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

fn validate(a: ValidateArgs, json: bool) -> Result<u8> {
    let paths = split_list("documents", &a.documents)?;
    let (docs, diags) = load_all(&paths, a.strict, &super::component_source());
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diags.len() - errors;
    if json {
        let out =
            serde_json::json!({ "valid": errors == 0, "errors": errors, "warnings": warnings, "diagnostics": diags });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_diagnostics(&diags);
        if errors == 0 {
            let steps: usize = docs.iter().flat_map(|d| &d.phases).map(|p| p.steps.len()).sum();
            eprintln!("{} document(s) valid: {steps} step(s), {warnings} warning(s)", docs.len());
        } else {
            eprintln!("{errors} error(s), {warnings} warning(s) in {} document(s); nothing was run", paths.len());
        }
    }
    Ok(if errors == 0 { exit::OK } else { exit::USAGE })
}

fn run_documents(a: RunArgs, json: bool) -> Result<u8> {
    let parameters = a.parameters.as_deref().map(parse_parameters).transpose()?.unwrap_or_default();
    let phases = a.phases.as_deref().map(|p| split_list("phases", p)).transpose()?;
    let store_dir = a
        .object_store
        .as_deref()
        .map(|d| std::fs::canonicalize(d).with_context(|| format!("--object-store {}", d.display())))
        .transpose()?;
    let host_store: Option<Arc<dyn ObjectStore>> =
        store_dir.clone().map(|d| Arc::new(DirectoryStore::new(d)) as Arc<dyn ObjectStore>);

    let scratch = std::env::temp_dir();
    let mut paths = Vec::new();
    for d in split_list("documents", &a.documents)? {
        if ComponentArn::looks_like(&d) {
            paths.push(d);
        } else {
            paths.push(fetch_document(&d, host_store.as_deref(), scratch.as_path())?.display().to_string());
        }
    }
    let source = Arc::new(super::component_source());
    let bad_id = |id: &str| {
        !(1..=128).contains(&id.len())
            || id.contains("..")
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if a.execution_id.as_deref().is_some_and(bad_id) {
        return Err(UsageError(
            "--execution-id: 1 to 128 letters, digits, `-`, `_` or `.` (it names the log folder), no `..`".into(),
        )
        .into());
    }
    let (mut docs, diags) = load_all(&paths, false, source.as_ref());
    print_diagnostics(&diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(UsageError("the documents are invalid; nothing was run".into()).into());
    }

    std::fs::create_dir_all(&a.log_directory)
        .with_context(|| format!("cannot create --log-directory {}", a.log_directory.display()))?;
    let log_dir = std::fs::canonicalize(&a.log_directory)?;
    let state_dir = a.state_directory.clone().unwrap_or_else(|| log_dir.join(".amictl-toe-state"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&state_dir)?;

    let progress = Progress::new(a.trace, json);
    let Some(root) = &a.root else {
        let opts = RunOptions {
            phases,
            parameters,
            execution_id: a.execution_id.clone(),
            log_directory: log_dir,
            log_directory_display: None,
            state_directory: state_dir,
            object_store: host_store,
            parameter_store: None,
            components: Some(source as Arc<dyn Fetch>),
            secrets: Vec::new(),
        };
        return execute(&docs, &opts, progress, false);
    };

    // The sandbox does not reach Image Builder: what the documents run by ARN is fetched now.
    let refs: Vec<&Document> = docs.iter().collect();
    let prefetched = toe::component::prefetch(&refs, source.as_ref()).map_err(|e| UsageError(e.message))?;
    // Sandbox: lend the log, state and object-store folders and each document's folder.
    let mut sb = Sandbox::new(root).map_err(|e| UsageError(e.to_string()))?;
    sb = sb.bind(&log_dir, IN_LOGS, true)?.bind(&state_dir, IN_STATE, true)?;
    if let Some(dir) = &store_dir {
        sb = sb.bind(dir, IN_OBJECTS, false)?;
    }
    // A document fetched by ARN has no folder of its own: lend it an empty one, never the
    // working directory.
    let no_folder = log_dir.join(".amictl-documents-by-arn");
    std::fs::create_dir_all(&no_folder)?;
    for (i, doc) in docs.iter_mut().enumerate() {
        let inside = format!("{IN_DOCUMENTS}/{}", i + 1);
        let host_dir = if ComponentArn::looks_like(&doc.file) {
            no_folder.clone()
        } else if doc.dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            doc.dir.clone()
        };
        sb = sb.bind(&host_dir, &inside, false)?;
        doc.dir = PathBuf::from(inside);
    }
    let opts = RunOptions {
        phases,
        parameters,
        execution_id: a.execution_id.clone(),
        log_directory: IN_LOGS.into(),
        log_directory_display: Some(log_dir),
        state_directory: IN_STATE.into(),
        object_store: store_dir.map(|_| Arc::new(DirectoryStore::new(IN_OBJECTS)) as Arc<dyn ObjectStore>),
        parameter_store: None,
        components: Some(Arc::new(prefetched) as Arc<dyn Fetch>),
        secrets: Vec::new(),
    };
    progress.finish();
    // Each pass is one "boot": a fresh sandbox. A reboot request ends the pass with 194 and
    // the next pass resumes from the saved state, like the machine coming back up.
    loop {
        let progress = Progress::new(a.trace, json);
        let code = sb.run(|| match execute(&docs, &opts, progress, true) {
            Ok(c) => i32::from(c),
            Err(e) => {
                eprintln!("amictl: error: {e:#}");
                i32::from(exit::FAILED)
            }
        })?;
        if code == i32::from(exit::REBOOT) {
            if !json {
                eprintln!("reboot requested: restarting the sandbox and resuming");
            }
            continue;
        }
        return Ok(u8::try_from(code).unwrap_or(exit::FAILED));
    }
}

/// Local paths pass through; `s3://` documents are copied from the object store.
fn fetch_document(spec: &str, store: Option<&dyn ObjectStore>, scratch: &Path) -> Result<PathBuf> {
    let Some((bucket, key)) = toe::objstore::parse_uri(spec) else {
        return Ok(PathBuf::from(spec));
    };
    let store = store.ok_or_else(|| UsageError(format!("{spec}: s3:// documents need --object-store")))?;
    let local = scratch.join(format!(
        "amictl-{}-{}",
        uuid::Uuid::new_v4(),
        Path::new(key).file_name().and_then(|n| n.to_str()).unwrap_or("document.yml")
    ));
    store.get(bucket, key, None, &local).with_context(|| format!("cannot fetch {spec}"))?;
    Ok(local)
}

fn execute(docs: &[Document], opts: &RunOptions, mut progress: Progress, sandboxed: bool) -> Result<u8> {
    let outcome = toe::run(docs, opts, &mut progress);
    progress.finish();
    match outcome.map_err(|e| match e {
        toe::EngineError::MissingParameter { .. } => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })? {
        RunOutcome::Finished(summary) => {
            println!("{}", serde_json::to_string(&summary)?);
            Ok(if summary.status.is_success() { exit::OK } else { exit::FAILED })
        }
        RunOutcome::RebootRequested { execution_id, log_url } => {
            if !sandboxed {
                eprintln!(
                    "execution {execution_id} asked for a reboot; state is saved — reboot and run the same command again (logs: {log_url})"
                );
            }
            Ok(exit::REBOOT)
        }
    }
}
