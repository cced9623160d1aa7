//! The executor: runs documents' phases and steps in awstoe order, with attempts, timeouts,
//! loops, conditions, output chaining, nested documents and reboot hand-off.
//!
//! All mutable progress lives in [`State`], which is what a reboot persists: after exit 194
//! the next `run` with the same state directory resumes at the right step (the same step
//! after an ExecuteBash 194, the next one after a Reboot step) with the stored `if`
//! decision and every earlier step's outputs still available for chaining.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actions::{self, ActionCtx, ActionError};
use crate::condition::{Condition, Probe, StepAction};
use crate::diag::Diagnostic;
use crate::document::{Document, LoopKind, OnFailure, Step};
use crate::expr::{self, Io, LoopField, Reference, Segment};
use crate::objstore::{ObjectStore, ParameterStore};
use crate::report::{
    Counts, DocumentRecord, ExecutionRecord, LogFolder, PhaseRecord, Status, StepRecord, Summary, log_folder_name,
    now_rfc3339,
};

/// Documents may nest three levels below the top one.
pub const MAX_DOCUMENT_DEPTH: usize = 3;
/// A run that asks for more reboots than this is failed, so a step that always exits 194
/// cannot loop forever.
pub const MAX_REBOOTS: u32 = 16;
const STATE_FILE: &str = "execution-state.json";
/// The most an execution's saved state may be (it holds every step's outputs, each bounded).
const STATE_LIMIT: u64 = 256 << 20;
/// What a loop's consolidated outputs keep per key (the tail): each iteration's output is
/// bounded, and so is their sum.
const CONSOLIDATED_KEPT: usize = crate::process::STDOUT_KEPT * 4;

pub struct RunOptions {
    /// Phases to run; `None` runs all of them.
    pub phases: Option<Vec<String>>,
    pub parameters: Vec<(String, String)>,
    pub execution_id: Option<String>,
    /// Parent of the `TOE_…` folder, as this process sees it.
    pub log_directory: PathBuf,
    /// The same folder as the caller sees it (differs inside a sandbox); used in `logUrl`.
    pub log_directory_display: Option<PathBuf>,
    pub state_directory: PathBuf,
    pub object_store: Option<Arc<dyn ObjectStore>>,
    pub parameter_store: Option<Arc<dyn ParameterStore>>,
    /// Where `ExecuteDocument` finds documents named by Image Builder component ARN.
    pub components: Option<Arc<dyn crate::component::Fetch>>,
    /// Values masked in every log and report (secret parameters); the outputs of
    /// `disableLogging` steps are added as the run makes them.
    pub secrets: Vec<String>,
}

/// Progress callbacks for a terminal UI; all methods default to doing nothing.
pub trait Observer {
    fn resumed(&mut self, _execution_id: &str, _reboots: u32) {}
    fn step_started(&mut self, _document: &str, _phase: &str, _step: &str) {}
    fn step_finished(&mut self, _document: &str, _phase: &str, _record: &StepRecord) {}
    fn output(&mut self, _bytes: &[u8]) {}
}

pub struct NoObserver;
impl Observer for NoObserver {}

#[derive(Debug)]
pub enum RunOutcome {
    Finished(Summary),
    /// A step asked for a reboot; state is saved and the caller must run again.
    RebootRequested {
        execution_id: String,
        log_url: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "document {document}: parameter `{name}` has no default and no value was given (use --parameters {name}=VALUE)"
    )]
    MissingParameter { document: String, name: String },
    #[error("cannot use state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is unreadable: {message}; remove it to start afresh")]
    CorruptState { path: PathBuf, message: String },
    #[error("cannot write logs under {path}: {source}")]
    Logs { path: PathBuf, source: std::io::Error },
}

#[derive(Serialize, Deserialize, Clone)]
struct DocSource {
    file: String,
    dir: PathBuf,
    source: String,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct ChainEntry {
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    #[serde(default)]
    secret: bool,
}

type ChainMap = BTreeMap<String, ChainEntry>;

/// Progress through one document.
#[derive(Serialize, Deserialize)]
struct DocRun {
    record: DocumentRecord,
    phase: usize,
    step: usize,
    in_phase: bool,
    chain: ChainMap,
    counts: Counts,
    /// The current step's `if` decision, kept across a reboot.
    pending_if: Option<bool>,
}

#[derive(Serialize, Deserialize)]
struct State {
    execution_id: String,
    log_folder: PathBuf,
    log_url: String,
    sources: Vec<DocSource>,
    phases: Option<Vec<String>>,
    parameters: Vec<(String, String)>,
    record: ExecutionRecord,
    doc_index: usize,
    current: Option<DocRun>,
    counts: Counts,
    reboots: u32,
    /// Resolved inputs and outputs of finished documents' steps, for chaining.json.
    chaining: BTreeMap<String, ChainEntry>,
}

enum DocEnd {
    Completed,
    Aborted,
    Reboot,
}

/// Runs `documents`, or resumes the execution saved in the state directory (in which case
/// `documents` is ignored, as awstoe does).
pub fn run(documents: &[Document], opts: &RunOptions, observer: &mut dyn Observer) -> Result<RunOutcome, EngineError> {
    let state_path = opts.state_directory.join(STATE_FILE);
    let resumed = state_path.exists();
    let (mut state, docs) = if resumed {
        let text = crate::input::read_text(&state_path, STATE_LIMIT).map_err(|e| EngineError::StateDir {
            path: state_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| EngineError::CorruptState { path: state_path.clone(), message: e.to_string() })?;
        let mut docs = Vec::new();
        for s in &state.sources {
            let doc =
                Document::parse(&s.file, s.dir.clone(), s.source.clone()).map_err(|d| EngineError::CorruptState {
                    path: state_path.clone(),
                    message: format!("saved document {} no longer validates: {}", s.file, first_message(&d)),
                })?;
            docs.push(doc.0);
        }
        observer.resumed(&state.execution_id, state.reboots);
        (state, docs)
    } else {
        for doc in documents {
            for p in &doc.parameters {
                if p.default.is_none() && !opts.parameters.iter().any(|(n, _)| n == &p.name) {
                    return Err(EngineError::MissingParameter { document: doc.file.clone(), name: p.name.clone() });
                }
            }
        }
        let execution_id = opts.execution_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let folder = log_folder_name(&execution_id);
        let log_url =
            opts.log_directory_display.as_ref().unwrap_or(&opts.log_directory).join(&folder).display().to_string();
        let state = State {
            record: ExecutionRecord {
                execution_id: execution_id.clone(),
                status: Status::Success,
                start_time: now_rfc3339(),
                end_time: String::new(),
                failure_message: String::new(),
                documents: Vec::new(),
            },
            execution_id,
            log_folder: opts.log_directory.join(folder),
            log_url,
            sources: documents
                .iter()
                .map(|d| DocSource { file: d.file.clone(), dir: d.dir.clone(), source: d.source.clone() })
                .collect(),
            phases: opts.phases.clone(),
            parameters: opts.parameters.clone(),
            doc_index: 0,
            current: None,
            counts: Counts::default(),
            reboots: 0,
            chaining: BTreeMap::new(),
        };
        (state, documents.to_vec())
    };

    let mut log = LogFolder::open(&state.log_folder)
        .map_err(|source| EngineError::Logs { path: state.log_folder.clone(), source })?;
    if resumed {
        log.app(&format!(
            "resuming execution {} after reboot {} from {}",
            state.execution_id,
            state.reboots,
            state_path.display()
        ));
    } else {
        for (i, doc) in docs.iter().enumerate() {
            let name = if docs.len() == 1 { "document.yaml".to_string() } else { format!("document-{}.yaml", i + 1) };
            std::fs::write(state.log_folder.join(name), &doc.source)
                .map_err(|source| EngineError::Logs { path: state.log_folder.clone(), source })?;
        }
        log.app(&format!("execution {} started with {} document(s)", state.execution_id, docs.len()));
    }
    for secret in &opts.secrets {
        log.add_secret(secret);
    }
    // After a reboot, what the `disableLogging` steps before it produced is still secret.
    let saved = state.current.iter().flat_map(|d| d.chain.values()).chain(state.chaining.values());
    for entry in saved.filter(|e| e.secret) {
        mask_outputs(&mut log, &entry.outputs);
    }
    let mut runner = Runner {
        opts,
        log,
        observer,
        execution_id: state.execution_id.clone(),
        reboots: state.reboots,
        depth: 0,
        stack: Vec::new(),
        step_seq: 0,
        nested_detail: None,
    };

    let mut stopped = false;
    while state.doc_index < docs.len() {
        let doc = &docs[state.doc_index];
        let mut dr = state.current.take().unwrap_or_else(|| DocRun::new(doc));
        let values = runner.values(doc, &state.parameters);
        runner.stack = vec![canonical(&doc.dir.join(file_name(&doc.file)))];
        match runner.run_document(doc, &mut dr, &values, state.phases.as_deref(), state.doc_index) {
            DocEnd::Reboot => {
                state.current = Some(dr);
                state.reboots += 1;
                runner.log.app(&format!("reboot requested; state saved to {}", state_path.display()));
                runner.log.flush();
                save_state(&state_path, &state)?;
                return Ok(RunOutcome::RebootRequested { execution_id: state.execution_id, log_url: state.log_url });
            }
            end => {
                state.counts.add(dr.counts);
                for (k, v) in std::mem::take(&mut dr.chain) {
                    if !v.secret {
                        state.chaining.insert(format!("{}:{k}", state.doc_index + 1), v);
                    }
                }
                state.record.status = state.record.status.fold(dr.record.status);
                if state.record.failure_message.is_empty() && !dr.record.failure_message.is_empty() {
                    state.record.failure_message = dr.record.failure_message.clone();
                }
                state.record.documents.push(dr.record);
                state.doc_index += 1;
                if matches!(end, DocEnd::Aborted) {
                    stopped = true;
                    break;
                }
            }
        }
    }
    if stopped {
        runner.log.app("execution stopped after a failed step with onFailure Abort");
    }
    state.record.end_time = now_rfc3339();
    let logs_err = |source| EngineError::Logs { path: state.log_folder.clone(), source };
    runner.log.write_json("detailedoutput.json", &state.record).map_err(logs_err)?;
    runner.log.write_json("chaining.json", &state.chaining).map_err(logs_err)?;
    runner.log.app(&format!("execution {} finished: {:?}", state.execution_id, state.record.status));
    runner.log.flush();
    if resumed {
        let _ = std::fs::remove_file(&state_path);
    }
    Ok(RunOutcome::Finished(Summary {
        execution_id: state.execution_id,
        status: state.record.status,
        failed_step_count: state.counts.failed_step_count,
        executed_step_count: state.counts.executed_step_count,
        ignored_failed_step_count: state.counts.ignored_failed_step_count,
        failure_message: runner.log.mask(&state.record.failure_message),
        log_url: state.log_url,
    }))
}

/// Adds every string a `disableLogging` step output to the log's secrets.
fn mask_outputs(log: &mut LogFolder, outputs: &[Value]) {
    fn walk(log: &mut LogFolder, v: &Value) {
        match v {
            Value::String(s) => log.add_secret(s),
            Value::Array(a) => a.iter().for_each(|x| walk(log, x)),
            Value::Object(m) => m.values().for_each(|x| walk(log, x)),
            _ => {}
        }
    }
    outputs.iter().for_each(|o| walk(log, o));
}

fn first_message(d: &[Diagnostic]) -> String {
    d.iter().map(ToString::to_string).next().unwrap_or_default()
}

fn file_name(file: &str) -> &str {
    Path::new(file).file_name().and_then(|f| f.to_str()).unwrap_or(file)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn save_state(path: &Path, state: &State) -> Result<(), EngineError> {
    let err = |source| EngineError::StateDir { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(state).map_err(|e| err(std::io::Error::other(e)))?;
    // It holds `disableLogging` outputs (to chain them after a reboot): owner-only.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

impl DocRun {
    fn new(doc: &Document) -> DocRun {
        DocRun {
            record: DocumentRecord {
                name: doc.name.clone(),
                file_path: doc.file.clone(),
                status: Status::Success,
                description: doc.description.clone(),
                start_time: now_rfc3339(),
                end_time: String::new(),
                failure_message: String::new(),
                phases: Vec::new(),
            },
            phase: 0,
            step: 0,
            in_phase: false,
            chain: ChainMap::new(),
            counts: Counts::default(),
            pending_if: None,
        }
    }
}

/// Outcome of one step, before it is folded into its phase.
enum StepEnd {
    Done,
    Reboot { rerun: bool },
}

struct Runner<'a> {
    opts: &'a RunOptions,
    log: LogFolder,
    observer: &'a mut dyn Observer,
    execution_id: String,
    reboots: u32,
    /// 0 for top-level documents, +1 per ExecuteDocument.
    depth: usize,
    /// Canonical paths of the documents being executed, for cycle detection.
    stack: Vec<PathBuf>,
    step_seq: usize,
    /// The execution tree of the last ExecuteDocument, for its step record.
    nested_detail: Option<Vec<ExecutionRecord>>,
}

struct LoopVar {
    name: Option<String>,
    index: usize,
    value: String,
}

/// Resolves `{{ }}` in one step's strings.
struct Scope<'s> {
    values: &'s HashMap<String, String>,
    chain: &'s ChainMap,
    looping: Option<LoopVar>,
    phase: &'s str,
    step: &'s str,
    execution_id: &'s str,
    ssm: Option<&'s dyn ParameterStore>,
    warnings: Vec<String>,
}

impl Scope<'_> {
    fn resolve(&mut self, template: &str) -> Result<String, String> {
        let segments = expr::parse(template).map_err(|e| e.message)?;
        let mut out = String::with_capacity(template.len());
        for seg in segments {
            match seg {
                Segment::Text(t) | Segment::Verbatim(t) | Segment::Unclosed(t) => out.push_str(&t),
                Segment::Ref(r) => out.push_str(&self.reference(&r)?),
            }
        }
        Ok(out)
    }

    fn reference(&mut self, r: &Reference) -> Result<String, String> {
        Ok(match r {
            Reference::Variable(n) => self.values.get(n).cloned().ok_or_else(|| format!("`{n}` has no value"))?,
            Reference::Loop { name, field } => match &self.looping {
                Some(l) if name.is_none() || name == &l.name => match field {
                    LoopField::Index => l.index.to_string(),
                    LoopField::Value => l.value.to_string(),
                },
                _ => format!("{{{{ {r} }}}}"),
            },
            Reference::Chain { phase, step, io, index, key } => {
                let entry = self.chain.get(&format!("{phase}.{step}"));
                let list = entry.map(|e| if *io == Io::Inputs { &e.inputs } else { &e.outputs });
                match list.and_then(|l| l.get(*index)).and_then(|o| o.get(key)) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => {
                        self.warnings.push(format!("`{r}` has no value (the step was skipped or produced no such output); using an empty string"));
                        String::new()
                    }
                    Some(other) => other.to_string(),
                }
            }
            Reference::Env(n) => std::env::var(n).map_err(|_| format!("environment variable `{n}` is not set"))?,
            Reference::Ssm(name) => self.ssm(name)?,
            Reference::SsmResolve(var) => {
                let name = self.values.get(var).cloned().ok_or_else(|| format!("`{var}` has no value"))?;
                self.ssm(&name)?
            }
            Reference::Imds(path) => actions::imds_get(path)?,
            Reference::Context(key) => match key.as_str() {
                "executionId" => self.execution_id.to_string(),
                "phase" => self.phase.to_string(),
                "step" => self.step.to_string(),
                "osPlatform" => "linux".to_string(),
                "osName" => os_release("NAME"),
                "osVersion" => os_release("VERSION_ID"),
                "date" => jiff::Timestamp::now().strftime("%Y-%m-%d").to_string(),
                "dateTime" => jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "uuid" => uuid::Uuid::new_v4().to_string(),
                "hostname" => {
                    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
                }
                "accountId" | "region" => {
                    let doc = actions::imds_get("/latest/dynamic/instance-identity/document")?;
                    let v: Value =
                        serde_json::from_str(&doc).map_err(|e| format!("instance identity document: {e}"))?;
                    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
                }
                other => return Err(format!("unknown context key `{other}`")),
            },
        })
    }

    fn ssm(&self, name: &str) -> Result<String, String> {
        match self.ssm {
            Some(store) => store.get(name),
            None => Err(format!("`aws:ssm:{name}` needs an SSM parameter store, and none is configured for this run")),
        }
    }

    fn resolve_value(&mut self, v: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => Value::String(self.resolve(s)?),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.resolve_value(i)).collect::<Result<_, _>>()?),
            Value::Object(m) => Value::Object(
                m.iter().map(|(k, v)| Ok((k.clone(), self.resolve_value(v)?))).collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

struct ScopeProbe<'a, 's> {
    scope: &'a mut Scope<'s>,
    error: Option<String>,
}

impl Probe for ScopeProbe<'_, '_> {
    fn resolve(&mut self, template: &str) -> String {
        match self.scope.resolve(template) {
            Ok(s) => s,
            Err(e) => {
                self.error.get_or_insert(e);
                String::new()
            }
        }
    }
    fn binary_exists(&self, name: &str) -> bool {
        actions::which(name).is_some()
    }
}

fn os_release(key: &str) -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// Successful loop iterations' outputs, joined per key with newlines.
/// Keeps the last `kept` bytes of `s`, from a line start (so no fragment of a line — of a
/// secret — is left at the front).
pub(crate) fn keep_tail(s: &mut String, kept: usize) {
    if s.len() <= kept {
        return;
    }
    let mut cut = s.len() - kept;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let cut = s[cut..].find('\n').map_or(s.len(), |i| cut + i + 1);
    s.drain(..cut);
}

fn consolidate(acc: &mut Vec<Map<String, Value>>, outputs: Vec<Map<String, Value>>) {
    for (i, out) in outputs.into_iter().enumerate() {
        if acc.len() <= i {
            acc.push(out);
            continue;
        }
        for (k, v) in out {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            match acc[i].get_mut(&k) {
                Some(Value::String(prev)) => {
                    prev.push('\n');
                    prev.push_str(&text);
                    keep_tail(prev, CONSOLIDATED_KEPT);
                }
                _ => {
                    acc[i].insert(k, Value::String(text));
                }
            }
        }
    }
}

struct AttemptOk {
    inputs: Vec<Value>,
    outputs: Vec<Map<String, Value>>,
    loop_info: Option<Value>,
}

struct AttemptFail {
    message: String,
    reboot: Option<bool>,
    inputs: Vec<Value>,
    loop_info: Option<Value>,
}

impl Runner<'_> {
    fn values(&self, doc: &Document, overrides: &[(String, String)]) -> HashMap<String, String> {
        let mut values = HashMap::new();
        for p in &doc.parameters {
            let v = overrides
                .iter()
                .rev()
                .find(|(n, _)| n == &p.name)
                .map(|(_, v)| v.clone())
                .or_else(|| p.default.clone());
            if let Some(v) = v {
                values.insert(p.name.clone(), v);
            }
        }
        for c in &doc.constants {
            values.insert(c.name.clone(), c.value.clone());
        }
        values
    }

    fn run_document(
        &mut self,
        doc: &Document,
        dr: &mut DocRun,
        values: &HashMap<String, String>,
        phases: Option<&[String]>,
        doc_index: usize,
    ) -> DocEnd {
        while dr.phase < doc.phases.len() {
            let phase = &doc.phases[dr.phase];
            if phases.is_some_and(|sel| !sel.iter().any(|p| p == &phase.name)) {
                dr.phase += 1;
                continue;
            }
            if !dr.in_phase {
                dr.record.phases.push(PhaseRecord {
                    name: phase.name.clone(),
                    status: Status::Success,
                    start_time: now_rfc3339(),
                    end_time: String::new(),
                    failure_message: String::new(),
                    steps: Vec::new(),
                });
                dr.in_phase = true;
                dr.step = 0;
                self.log.app(&format!("document {} phase {} started", doc.file, phase.name));
            }
            while dr.step < phase.steps.len() {
                let step = &phase.steps[dr.step];
                self.observer.step_started(&doc.file, &phase.name, &step.name);
                let (record, end) = self.run_step(doc, &phase.name, step, dr, values, doc_index);
                if let StepEnd::Reboot { rerun: true } = end {
                    return DocEnd::Reboot;
                }
                let mut shown = record.clone();
                shown.failure_message = self.log.mask(&shown.failure_message);
                self.observer.step_finished(&doc.file, &phase.name, &shown);
                let status = record.status;
                match status {
                    Status::Skipped => {}
                    Status::Failed => {
                        dr.counts.executed_step_count += 1;
                        dr.counts.failed_step_count += 1;
                    }
                    Status::IgnoredFailure => {
                        dr.counts.executed_step_count += 1;
                        dr.counts.ignored_failed_step_count += 1;
                    }
                    _ => dr.counts.executed_step_count += 1,
                }
                let phase_rec = dr.record.phases.last_mut().expect("a phase record is open");
                phase_rec.status = phase_rec.status.fold(status);
                if status == Status::Failed && phase_rec.failure_message.is_empty() {
                    phase_rec.failure_message = format!("step {} failed: {}", record.name, record.failure_message);
                }
                phase_rec.steps.push(record);
                dr.pending_if = None;
                dr.step += 1;
                if let StepEnd::Reboot { rerun: false } = end {
                    return DocEnd::Reboot;
                }
                if status == Status::Failed && step.on_failure == OnFailure::Abort {
                    self.close_phase(dr);
                    self.close_document(dr);
                    return DocEnd::Aborted;
                }
            }
            self.close_phase(dr);
        }
        self.close_document(dr);
        DocEnd::Completed
    }

    fn close_phase(&mut self, dr: &mut DocRun) {
        if let Some(p) = dr.record.phases.last_mut() {
            p.end_time = now_rfc3339();
            dr.record.status = dr.record.status.fold(p.status);
            if dr.record.failure_message.is_empty() && !p.failure_message.is_empty() {
                dr.record.failure_message = format!("phase {}: {}", p.name, p.failure_message);
            }
            self.log.app(&format!("phase {} finished: {:?}", p.name, p.status));
        }
        dr.in_phase = false;
        dr.phase += 1;
        dr.step = 0;
    }

    fn close_document(&mut self, dr: &mut DocRun) {
        dr.record.end_time = now_rfc3339();
    }

    fn run_step(
        &mut self,
        doc: &Document,
        phase: &str,
        step: &Step,
        dr: &mut DocRun,
        values: &HashMap<String, String>,
        doc_index: usize,
    ) -> (StepRecord, StepEnd) {
        let start_time = now_rfc3339();
        self.step_seq += 1;
        let mut record = StepRecord {
            name: step.name.clone(),
            status: Status::Success,
            failure_message: String::new(),
            timeout_seconds: step.timeout_seconds,
            on_failure: format!("{:?}", step.on_failure),
            max_attempts: step.max_attempts,
            attempts: 0,
            action: step.module.name.to_string(),
            start_time,
            end_time: String::new(),
            inputs: "[]".into(),
            outputs: "[]".into(),
            looping: None,
            detailed_output: None,
        };
        let execution_id = self.execution_id.clone();
        let mut finished: Option<ChainEntry> = None;
        let mut scope = Scope {
            values,
            chain: &dr.chain,
            looping: None,
            phase,
            step: &step.name,
            execution_id: &execution_id,
            ssm: self.opts.parameter_store.as_deref(),
            warnings: Vec::new(),
        };

        let decision = match &step.condition {
            None => StepAction::Execute,
            Some(clause) => {
                let holds = match dr.pending_if {
                    Some(v) => v,
                    None => {
                        let mut probe = ScopeProbe { scope: &mut scope, error: None };
                        let v = clause.condition.evaluate(&mut probe);
                        if let Some(e) = probe.error {
                            self.log.app(&format!("step {}: condition could not be fully resolved: {e}", step.name));
                        }
                        v
                    }
                };
                dr.pending_if = Some(holds);
                if holds { clause.then } else { clause.otherwise }
            }
        };
        let mut end = StepEnd::Done;
        match decision {
            StepAction::Skip => {
                record.status = Status::Skipped;
                self.log.app(&format!("step {phase}.{} skipped by its condition", step.name));
            }
            StepAction::Abort => {
                record.status = Status::Failed;
                record.failure_message = "the step's `if` condition chose Abort".into();
            }
            StepAction::Execute => {
                let mut last_fail = None;
                for attempt in 1..=step.max_attempts {
                    record.attempts = attempt;
                    let deadline = (step.timeout_seconds > 0 && step.module.name != "Reboot")
                        .then(|| Instant::now() + Duration::from_secs(step.timeout_seconds as u64));
                    match self.attempt(doc, phase, step, &mut scope, deadline, doc_index) {
                        Ok(ok) => {
                            if !step.disable_logging {
                                record.inputs = serde_json::to_string(&ok.inputs).unwrap_or_default();
                                record.outputs = serde_json::to_string(&ok.outputs).unwrap_or_default();
                            }
                            record.looping = ok.loop_info;
                            if step.disable_logging {
                                let outputs: Vec<Value> = ok.outputs.iter().cloned().map(Value::Object).collect();
                                mask_outputs(&mut self.log, &outputs);
                            }
                            finished = Some(ChainEntry {
                                inputs: ok.inputs,
                                outputs: ok.outputs.into_iter().map(Value::Object).collect(),
                                secret: step.disable_logging,
                            });
                            last_fail = None;
                            if step.module.name == "Reboot" {
                                end = StepEnd::Reboot { rerun: false };
                            }
                            break;
                        }
                        Err(fail) => {
                            if !step.disable_logging {
                                record.inputs = serde_json::to_string(&fail.inputs).unwrap_or_default();
                            }
                            record.looping = fail.loop_info.clone();
                            if let Some(rerun) = fail.reboot {
                                if self.reboots >= MAX_REBOOTS {
                                    last_fail = Some(format!(
                                        "reboot requested but the run already rebooted {MAX_REBOOTS} times"
                                    ));
                                    break;
                                }
                                if self.depth > 0 {
                                    last_fail = Some("a reboot inside ExecuteDocument is not supported".into());
                                    break;
                                }
                                end = StepEnd::Reboot { rerun };
                                last_fail = None;
                                break;
                            }
                            self.log.app(&format!(
                                "step {phase}.{} attempt {attempt}/{} failed: {}",
                                step.name, step.max_attempts, fail.message
                            ));
                            last_fail = Some(fail.message);
                        }
                    }
                }
                if let Some(message) = last_fail {
                    record.failure_message = message;
                    record.status =
                        if step.on_failure == OnFailure::Ignore { Status::IgnoredFailure } else { Status::Failed };
                }
            }
        }
        record.detailed_output = self.nested_detail.take();
        for w in std::mem::take(&mut scope.warnings) {
            self.log.app(&format!("step {phase}.{}: {w}", step.name));
        }
        drop(scope);
        if let Some(entry) = finished {
            dr.chain.insert(format!("{phase}.{}", step.name), entry);
        }
        record.end_time = now_rfc3339();
        (record, end)
    }

    fn attempt(
        &mut self,
        doc: &Document,
        phase: &str,
        step: &Step,
        scope: &mut Scope<'_>,
        deadline: Option<Instant>,
        doc_index: usize,
    ) -> Result<AttemptOk, Box<AttemptFail>> {
        let fail = |message: String, inputs: Vec<Value>, loop_info: Option<Value>| {
            Box::new(AttemptFail { message, reboot: None, inputs, loop_info })
        };
        let Some(looping) = &step.looping else {
            let inputs = match step.inputs.iter().map(|i| scope.resolve_value(i)).collect::<Result<Vec<_>, _>>() {
                Ok(i) => i,
                Err(e) => {
                    return Err(fail(format!("cannot resolve inputs: {e}"), Vec::new(), None));
                }
            };
            return match self.execute(doc, phase, step, scope, &inputs, deadline, doc_index, None) {
                Ok(outputs) => Ok(AttemptOk { inputs, outputs, loop_info: None }),
                Err(ActionError::Reboot { rerun }) => {
                    Err(Box::new(AttemptFail { message: String::new(), reboot: Some(rerun), inputs, loop_info: None }))
                }
                Err(e) => Err(fail(e.to_string(), inputs, None)),
            };
        };
        let values: Vec<String> = match &looping.kind {
            LoopKind::For { start, end, update_by } => {
                let count = crate::document::iterations(*start, *end, *update_by);
                if count > crate::document::MAX_LOOP_ITERATIONS {
                    return Err(fail(
                        format!(
                            "the loop has {count} iterations, more than the {} amictl runs",
                            crate::document::MAX_LOOP_ITERATIONS
                        ),
                        Vec::new(),
                        None,
                    ));
                }
                (0..count).map(|n| (i128::from(*start) + n * i128::from(*update_by)).to_string()).collect()
            }
            LoopKind::List(items) => match items.iter().map(|i| scope.resolve(i)).collect::<Result<Vec<_>, _>>() {
                Ok(v) => v,
                Err(e) => {
                    return Err(fail(format!("cannot resolve the loop list: {e}"), Vec::new(), None));
                }
            },
            LoopKind::Delimited { list, delimiter } => match scope.resolve(list) {
                Ok(s) => {
                    let pieces: Vec<String> = s.split(*delimiter).map(str::to_string).collect();
                    // Pieces of a secret are secret too.
                    if self.log.mask(&s) != s {
                        for p in &pieces {
                            self.log.add_secret(p);
                        }
                    }
                    pieces
                }
                Err(e) => {
                    return Err(fail(format!("cannot resolve the loop list: {e}"), Vec::new(), None));
                }
            },
        };
        if values.len() as i128 > crate::document::MAX_LOOP_ITERATIONS {
            let message = format!(
                "the loop has {} iterations, more than the {} amictl runs",
                values.len(),
                crate::document::MAX_LOOP_ITERATIONS
            );
            return Err(fail(message, Vec::new(), None));
        }
        let mut outputs: Vec<Map<String, Value>> = Vec::new();
        let mut last_inputs = Vec::new();
        for (index, value) in values.iter().enumerate() {
            let loop_info = Some(
                serde_json::json!({"name": looping.name.clone().unwrap_or_default(), "index": index, "value": value}),
            );
            scope.looping = Some(LoopVar { name: looping.name.clone(), index, value: value.clone() });
            let resolved = step.inputs.iter().map(|i| scope.resolve_value(i)).collect::<Result<Vec<_>, _>>();
            scope.looping = None;
            let inputs = match resolved {
                Ok(i) => i,
                Err(e) => {
                    return Err(fail(
                        format!("loop iteration {index}: cannot resolve inputs: {e}"),
                        last_inputs,
                        loop_info,
                    ));
                }
            };
            let loop_var = (looping.name.as_deref(), index, value.as_str());
            match self.execute(doc, phase, step, scope, &inputs, deadline, doc_index, Some(loop_var)) {
                Ok(out) => consolidate(&mut outputs, out),
                Err(ActionError::TimedOut(_)) => {
                    return Err(fail(
                        format!("the loop timed out after {}s (iteration {index})", step.timeout_seconds),
                        inputs,
                        loop_info,
                    ));
                }
                Err(ActionError::Reboot { .. }) => {
                    return Err(fail(
                        format!("loop iteration {index} asked for a reboot, which is not supported inside a loop"),
                        inputs,
                        loop_info,
                    ));
                }
                Err(e) => {
                    return Err(fail(format!("loop iteration(s) [{index}] failed: {e}"), inputs, loop_info));
                }
            }
            last_inputs = inputs;
        }
        Ok(AttemptOk { inputs: last_inputs, outputs, loop_info: None })
    }

    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        doc: &Document,
        phase: &str,
        step: &Step,
        scope: &mut Scope<'_>,
        inputs: &[Value],
        deadline: Option<Instant>,
        doc_index: usize,
        loop_var: Option<(Option<&str>, usize, &str)>,
    ) -> Result<Vec<Map<String, Value>>, ActionError> {
        match step.module.name {
            "Assert" => {
                let cond =
                    step.assert.as_ref().ok_or_else(|| ActionError::Failed("Assert has no expression".into()))?;
                if let Some((name, index, value)) = loop_var {
                    scope.looping = Some(LoopVar { name: name.map(str::to_string), index, value: value.to_string() });
                }
                let mut probe = ScopeProbe { scope, error: None };
                let holds = cond.evaluate(&mut probe);
                let error = probe.error;
                scope.looping = None;
                match (holds, error) {
                    (_, Some(e)) => Err(ActionError::Failed(format!("cannot resolve the assertion: {e}"))),
                    (true, None) => Ok(Vec::new()),
                    (false, None) => Err(ActionError::Failed(format!("assertion failed: {}", describe(cond)))),
                }
            }
            "ExecuteDocument" => self.execute_document(doc, inputs.first().cloned().unwrap_or_default()),
            _ => {
                let step_dir = self
                    .log
                    .path
                    .join("steps")
                    .join(format!("{}-{}", doc_index + 1, sanitize(file_name(&doc.file))))
                    .join(sanitize(phase));
                let mut ctx = ActionCtx {
                    deadline,
                    timeout_seconds: step.timeout_seconds,
                    log: &mut self.log,
                    observer: &mut *self.observer,
                    step_dir,
                    step_stem: format!("{:03}-{}", self.step_seq, sanitize(&step.name)),
                    secret: step.disable_logging,
                    scratch: self.opts.state_directory.join("scratch"),
                    object_store: self.opts.object_store.as_deref(),
                };
                actions::execute(step.module.name, inputs, &mut ctx)
            }
        }
    }

    fn execute_document(&mut self, parent: &Document, input: Value) -> Result<Vec<Map<String, Value>>, ActionError> {
        let failed = |m: String| Err(ActionError::Failed(m));
        let path_text = input.get("document").and_then(Value::as_str).unwrap_or_default().to_string();
        if self.depth >= MAX_DOCUMENT_DEPTH {
            return failed(format!(
                "cannot run {path_text}: documents nest at most {MAX_DOCUMENT_DEPTH} levels below the top document"
            ));
        }
        let loaded = if crate::component::ComponentArn::looks_like(&path_text) {
            let Some(source) = self.opts.components.as_deref() else {
                return failed(format!("{path_text}: no component source is configured for documents named by ARN"));
            };
            let arn = path_text.trim();
            if self.stack.iter().any(|p| p.as_os_str() == arn) {
                return failed(format!("{path_text} is already being executed higher in the call chain (cycle)"));
            }
            let fetched = source.fetch(arn).map_err(|e| ActionError::Failed(e.message))?;
            if let Some(why) = &fetched.stale {
                self.log.app(&format!("{arn}: using the cached version {} ({why})", fetched.version));
            }
            self.log.app(&format!("{arn} resolved to {} (sha256 {})", fetched.arn, fetched.sha256));
            (PathBuf::from(arn), fetched.document(self.opts.state_directory.join("scratch"), false))
        } else {
            let path = if let Some((bucket, key)) = crate::objstore::parse_uri(&path_text) {
                let Some(store) = self.opts.object_store.as_deref() else {
                    return failed(format!("{path_text}: no object store is configured for s3:// documents"));
                };
                let scratch = self.opts.state_directory.join("scratch");
                std::fs::create_dir_all(&scratch).map_err(|e| ActionError::Failed(e.to_string()))?;
                let local = scratch.join(format!("{}-{}", uuid::Uuid::new_v4(), file_name(key)));
                let owner = input.get("document-s3-bucket-owner").and_then(Value::as_str);
                store.get(bucket, key, owner, &local).map_err(|e| ActionError::Failed(e.to_string()))?;
                local
            } else if Path::new(&path_text).is_absolute() {
                PathBuf::from(&path_text)
            } else {
                parent.dir.join(&path_text)
            };
            let canon = canonical(&path);
            if self.stack.contains(&canon) {
                return failed(format!("{path_text} is already being executed higher in the call chain (cycle)"));
            }
            (canon, Document::load(&path))
        };
        let (canon, (child, warnings)) = match loaded {
            (canon, Ok(d)) => (canon, d),
            (_, Err(diags)) => {
                let text: Vec<String> = diags
                    .iter()
                    .filter(|d| d.severity == crate::diag::Severity::Error)
                    .map(ToString::to_string)
                    .collect();
                return failed(format!("{path_text} is not a valid document:\n{}", text.join("\n")));
            }
        };
        for w in warnings {
            self.log.app(&w.to_string());
        }
        let overrides: Vec<(String, String)> = input
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p.get("name")?.as_str()?.to_string(), p.get("value")?.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        for p in &child.parameters {
            if p.default.is_none() && !overrides.iter().any(|(n, _)| n == &p.name) {
                return failed(format!("{path_text}: parameter `{}` has no default and no value", p.name));
            }
        }
        let phases: Option<Vec<String>> = input
            .get("phases")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
        let values = self.values(&child, &overrides);
        let mut dr = DocRun::new(&child);
        self.depth += 1;
        self.stack.push(canon);
        self.log.app(&format!("ExecuteDocument {path_text} (depth {})", self.depth));
        let end = self.run_document(&child, &mut dr, &values, phases.as_deref(), self.depth * 1000);
        self.stack.pop();
        self.depth -= 1;
        if matches!(end, DocEnd::Reboot) {
            return failed("a reboot inside ExecuteDocument is not supported".into());
        }
        let exec = ExecutionRecord {
            execution_id: uuid::Uuid::new_v4().to_string(),
            status: dr.record.status,
            start_time: dr.record.start_time.clone(),
            end_time: dr.record.end_time.clone(),
            failure_message: dr.record.failure_message.clone(),
            documents: vec![dr.record],
        };
        let summary = serde_json::json!({
            "executedStepCount": dr.counts.executed_step_count,
            "executionId": exec.execution_id,
            "failedStepCount": dr.counts.failed_step_count,
            "failureMessage": exec.failure_message,
            "ignoredFailedStepCount": dr.counts.ignored_failed_step_count,
            "logUrl": "",
            "status": exec.status,
        });
        let ok = exec.status.is_success();
        let message = exec.failure_message.clone();
        self.nested_detail = Some(vec![exec]);
        if !ok {
            return failed(format!("nested document {path_text} failed: {message}"));
        }
        Ok(vec![summary.as_object().cloned().unwrap_or_default()])
    }
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::And(items) => format!("and({})", items.iter().map(describe).collect::<Vec<_>>().join(", ")),
        Condition::Or(items) => format!("or({})", items.iter().map(describe).collect::<Vec<_>>().join(", ")),
        Condition::Not(inner) => format!("not({})", describe(inner)),
        Condition::Compare { op, baseline, operand } => match operand {
            Some(v) => format!("{} `{baseline}` against `{v}`", op.name()),
            None => format!("{} `{baseline}`", op.name()),
        },
    }
}

/// A file-name-safe version of a step or phase name.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}
