//! The component document model and its validating loader.
//!
//! Loading never stops at the first problem: every error in a document is collected with
//! its line, column, a stable code and a fix hint, and a document is only returned when it
//! has no errors — so nothing can run from a document `validate` would reject.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::condition::{CompareOp, Condition, IfClause, Operand, StepAction};
use crate::diag::{Diagnostic, Sink};
use crate::expr::{self, Io, Reference, Segment};
use crate::modules::{self, Field, ModuleSpec, Shape, Ty};
use crate::yaml::{self, Kind, Node, Pos, Scalar};

/// The default step timeout: two hours.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 7200;
/// `and`/`or`/`not` may nest at most this deep.
pub const MAX_LOGICAL_DEPTH: usize = 4;
/// The phases Image Builder runs; a document needs at least one of them.
pub const STANDARD_PHASES: &[&str] = &["build", "validate", "test"];
const DELIMITERS: &[char] = &['.', ',', ';', ':', '\n', '\t', ' ', '-', '_'];

#[derive(Debug, Clone)]
pub struct Document {
    /// The path as the user gave it, for messages and `detailedoutput.json`.
    pub file: String,
    /// Folder that relative `ExecuteDocument` paths resolve against.
    pub dir: PathBuf,
    pub source: String,
    pub name: String,
    pub description: String,
    pub parameters: Vec<Parameter>,
    pub constants: Vec<Constant>,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub default: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct Constant {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnFailure {
    Abort,
    Continue,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub module: &'static ModuleSpec,
    /// Inputs as a list of objects (a map-shaped input is one element), strings unresolved.
    pub inputs: Vec<Value>,
    /// The expression of an `Assert` step.
    pub assert: Option<Condition>,
    /// Seconds, or -1 for none.
    pub timeout_seconds: i64,
    pub on_failure: OnFailure,
    pub max_attempts: u32,
    pub condition: Option<IfClause>,
    pub looping: Option<Loop>,
    pub disable_logging: bool,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub name: Option<String>,
    pub kind: LoopKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoopKind {
    For { start: i64, end: i64, update_by: i64 },
    List(Vec<String>),
    Delimited { list: String, delimiter: char },
}

/// The most iterations one loop runs: each is a process at least, and their values and
/// outputs are kept.
pub const MAX_LOOP_ITERATIONS: i128 = 100_000;

/// How many iterations a `for` loop runs (0 when it never reaches its end), without
/// overflow at the ends of the i64 range.
pub fn iterations(start: i64, end: i64, update_by: i64) -> i128 {
    let (start, end, by) = (i128::from(start), i128::from(end), i128::from(update_by));
    if by == 0 || (by > 0 && start > end) || (by < 0 && start < end) { 0 } else { (end - start) / by + 1 }
}

impl Document {
    /// Reads and validates a document file. `Err` holds every diagnostic; `Ok` may carry
    /// warnings.
    pub fn load(path: &Path) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
        Document::load_with(path, false)
    }

    /// [`Document::load`]; with `strict`, unknown keys are errors rather than warnings.
    pub fn load_with(path: &Path, strict: bool) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
        let file = path.display().to_string();
        let source = match crate::input::read_text(path, crate::input::DOCUMENT_LIMIT) {
            Ok(s) => s,
            Err(e) => {
                let mut sink = Sink::new(&file);
                let (pos, code, hint) = match &e {
                    crate::input::InputError::NotUtf8 { line, column, .. } => {
                        (Pos { line: *line, column: *column }, "not-utf8", "save the document as UTF-8")
                    }
                    crate::input::InputError::TooLarge(..) => (
                        Pos { line: 1, column: 1 },
                        "document-too-large",
                        "split the document or fetch its payload at run time",
                    ),
                    _ => {
                        (Pos { line: 1, column: 1 }, "unreadable-document", "check the path: it must be a regular file")
                    }
                };
                sink.error(pos, code, e.to_string(), hint);
                return Err(sink.items);
            }
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Document::parse_with(&file, dir, source, strict)
    }

    /// Validates a document held in memory.
    pub fn parse(file: &str, dir: PathBuf, source: String) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
        Document::parse_with(file, dir, source, false)
    }

    /// [`Document::parse`]; with `strict`, unknown keys are errors rather than warnings.
    pub fn parse_with(
        file: &str,
        dir: PathBuf,
        source: String,
        strict: bool,
    ) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut sink = Sink::new(file);
        let doc = Loader { sink: &mut sink, strict }.document(file, dir, &source);
        match doc {
            Some(mut doc) if !sink.has_errors() => {
                doc.source = source;
                Ok((doc, sink.items))
            }
            _ => Err(sink.items),
        }
    }

    pub fn step_index(&self, phase: &str, step: &str) -> Option<(usize, usize)> {
        let p = self.phases.iter().position(|p| p.name == phase)?;
        let s = self.phases[p].steps.iter().position(|s| s.name == step)?;
        Some((p, s))
    }
}

struct Loader<'s> {
    sink: &'s mut Sink,
    /// Unknown keys are errors (`--strict`); otherwise warnings, as awstoe ignores keys
    /// AWS's own published documents carry (`allowedValues`, DeleteFile's `force`).
    strict: bool,
}

/// A template string met while loading, checked once every step is known.
struct Use {
    /// The scalar it came from, to place an error at its line and column.
    node: Node,
    text: String,
    chaining_allowed: bool,
}

impl Use {
    fn at(&self, offset: usize) -> Pos {
        self.node.pos_at(offset)
    }
}

impl Loader<'_> {
    fn document(&mut self, file: &str, dir: PathBuf, source: &str) -> Option<Document> {
        let root = match yaml::load(source) {
            Ok(n) => n,
            Err(e) if e.unquoted_expression => {
                self.sink.error(
                    e.pos,
                    "unquoted-expression",
                    "an unquoted `{{ … }}` at the start of a value is read by YAML as a map",
                    "quote the value: '{{ Name }}'",
                );
                return None;
            }
            Err(e) => {
                self.sink.error(e.pos, "yaml-syntax", e.message, e.hint);
                return None;
            }
        };
        let Some(entries) = root.as_map() else {
            self.sink.error(
                root.pos,
                "wrong-type",
                format!("a document must be a map, found a {}", root.kind_name()),
                "start with `schemaVersion: 1.0`, `phases:` …",
            );
            return None;
        };
        self.known_keys(
            entries,
            &["name", "description", "schemaVersion", "parameters", "constants", "phases"],
            "document",
        );
        match root.get("schemaVersion") {
            None => {
                self.sink.error(root.pos, "missing-field", "`schemaVersion` is required", "add `schemaVersion: 1.0`")
            }
            Some(v) => {
                if !matches!(v.text(), Some("1.0") | Some("1")) || matches!(v.kind, Kind::Map(_) | Kind::Seq(_)) {
                    self.sink.error(
                        v.pos,
                        "bad-schema-version",
                        format!("unsupported schemaVersion `{}`", v.text().unwrap_or(v.kind_name())),
                        "the only schema version is 1.0",
                    );
                }
            }
        }
        let name = root.get("name").and_then(|n| self.string(n, "name")).unwrap_or_default();
        let description = root.get("description").and_then(|n| self.string(n, "description")).unwrap_or_default();
        let parameters = root.get("parameters").map(|n| self.parameters(n)).unwrap_or_default();
        let constants = root.get("constants").map(|n| self.constants(n, &parameters)).unwrap_or_default();
        let mut uses: Vec<(usize, usize, Vec<Use>)> = Vec::new();
        let phases = match root.get("phases") {
            None => {
                self.sink.error(
                    root.pos,
                    "missing-field",
                    "`phases` is required",
                    "add `phases:` with a `build`, `validate` or `test` phase",
                );
                Vec::new()
            }
            Some(n) => self.phases(n, &mut uses),
        };
        let doc = Document {
            file: file.to_string(),
            dir,
            source: String::new(),
            name,
            description,
            parameters,
            constants,
            phases,
        };
        // One index of step names, so checking references stays linear in the document.
        let named: HashMap<(&str, &str), (usize, usize)> = doc
            .phases
            .iter()
            .enumerate()
            .flat_map(|(p, phase)| {
                phase.steps.iter().enumerate().map(move |(s, step)| ((phase.name.as_str(), step.name.as_str()), (p, s)))
            })
            .rev()
            .collect();
        for (p, s, list) in uses {
            for u in list {
                self.check_references(&doc, &named, p, s, &u);
            }
        }
        Some(doc)
    }

    fn known_keys(&mut self, entries: &[(Node, Node)], known: &[&str], what: &str) {
        for (k, _) in entries {
            let key = k.text().unwrap_or_default();
            if !known.contains(&key) {
                const STEP_KEYS: &[&str] =
                    &["timeoutSeconds", "onFailure", "maxAttempts", "if", "loop", "disableLogging"];
                let step_key = STEP_KEYS.iter().find(|c| c.eq_ignore_ascii_case(key) || edit_distance(c, key) <= 2);
                let hint = match known.iter().find(|c| c.eq_ignore_ascii_case(key) || edit_distance(c, key) <= 2) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => match step_key {
                        Some(c) if what.ends_with("inputs") => {
                            format!("`{c}` belongs to the step, not to its inputs: move it out of `inputs`")
                        }
                        _ => format!("keys allowed in {what}: {}", known.join(", ")),
                    },
                };
                let message = format!("unknown key `{key}` in {what}");
                if self.strict {
                    self.sink.error(k.pos, "unknown-key", message, hint);
                } else {
                    self.sink.warning(
                        k.pos,
                        "unknown-key",
                        message,
                        format!("{hint} (ignored; --strict makes it an error)"),
                    );
                }
            }
        }
    }

    /// A scalar as text; maps and lists are reported (an unquoted `{{ X }}` is a flow map).
    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, .. } => {
                if node.scalar() == Some(Scalar::Null) {
                    self.sink.error(
                        node.pos,
                        "wrong-type",
                        format!("`{field}` must be a string, found null"),
                        "give it a value or remove the key",
                    );
                    None
                } else {
                    Some(text.clone())
                }
            }
            Kind::Map(entries) if looks_like_unquoted_expression(entries) => {
                self.sink.error(
                    node.pos,
                    "unquoted-expression",
                    format!("`{field}`: an unquoted `{{{{ … }}}}` at the start of a value is read by YAML as a map"),
                    "quote the value: '{{ Name }}'",
                );
                None
            }
            Kind::Map(entries) if entries.len() == 1 => {
                self.sink.error(
                    node.pos,
                    "wrong-type",
                    format!("`{field}` must be a string, but an unquoted `: ` in it made YAML read a map"),
                    "quote the whole value (for a command, the whole command)",
                );
                None
            }
            _ => {
                self.sink.error(
                    node.pos,
                    "wrong-type",
                    format!("`{field}` must be a string, found a {}", node.kind_name()),
                    "write a single value",
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, field: &str) -> &'n [Node] {
        match node.as_seq() {
            Some(items) => items,
            None => {
                self.sink.error(
                    node.pos,
                    "wrong-type",
                    format!("`{field}` must be a list, found a {}", node.kind_name()),
                    "write each item on a line starting with `- `",
                );
                &[]
            }
        }
    }

    /// One `- Name: {definition}` item of `parameters` or `constants`.
    fn named_definition<'n>(&mut self, item: &'n Node, what: &str) -> Option<(String, Pos, &'n Node)> {
        match item.as_map() {
            Some([(k, v)]) => {
                let name = k.text().unwrap_or_default().to_string();
                if !expr::is_valid_variable_name(&name) {
                    self.sink.error(
                        k.pos,
                        "bad-name",
                        format!("{what} name `{name}` is invalid"),
                        "names are 3–128 characters of letters, digits, `_` and `-`",
                    );
                }
                if v.as_map().is_none() {
                    self.sink.error(
                        v.pos,
                        "wrong-type",
                        format!("{what} `{name}` must be a map with `type`"),
                        "e.g. `- MyName: {type: string, …}`",
                    );
                    return None;
                }
                Some((name, k.pos, v))
            }
            _ => {
                self.sink.error(
                    item.pos,
                    "wrong-type",
                    format!("each {what} is a map with exactly one key, its name"),
                    "e.g. `- MyName:` followed by `type: string`",
                );
                None
            }
        }
    }

    fn type_is_string(&mut self, def: &Node, what: &str) {
        match def.get("type") {
            None => self.sink.error(def.pos, "missing-field", format!("{what} needs `type`"), "add `type: string`"),
            Some(t) if t.text() != Some("string") => self.sink.error(
                t.pos,
                "bad-type-name",
                format!("unsupported {what} type `{}`", t.text().unwrap_or("?")),
                "the only type is `string`",
            ),
            _ => {}
        }
    }

    fn parameters(&mut self, node: &Node) -> Vec<Parameter> {
        let mut out: Vec<Parameter> = Vec::new();
        for item in self.list(node, "parameters") {
            let Some((name, pos, def)) = self.named_definition(item, "parameter") else {
                continue;
            };
            self.known_keys(def.as_map().unwrap_or_default(), &["type", "default", "description"], "a parameter");
            self.type_is_string(def, "parameter");
            let default = def.get("default").and_then(|d| self.string(d, "default"));
            let description = def.get("description").and_then(|d| self.string(d, "description")).unwrap_or_default();
            if out.iter().any(|p| p.name == name) {
                self.sink.error(
                    pos,
                    "duplicate-name",
                    format!("parameter `{name}` is defined twice"),
                    "parameter names must be unique",
                );
            }
            out.push(Parameter { name, default, description });
        }
        out
    }

    fn constants(&mut self, node: &Node, parameters: &[Parameter]) -> Vec<Constant> {
        let mut out: Vec<Constant> = Vec::new();
        for item in self.list(node, "constants") {
            let Some((name, pos, def)) = self.named_definition(item, "constant") else {
                continue;
            };
            self.known_keys(def.as_map().unwrap_or_default(), &["type", "value", "description"], "a constant");
            self.type_is_string(def, "constant");
            let value = match def.get("value") {
                Some(v) => self.string(v, "value").unwrap_or_default(),
                None => {
                    self.sink.error(
                        def.pos,
                        "missing-field",
                        format!("constant `{name}` needs `value`"),
                        "add `value: …`",
                    );
                    String::new()
                }
            };
            if out.iter().any(|c| c.name == name) {
                self.sink.error(
                    pos,
                    "duplicate-name",
                    format!("constant `{name}` is defined twice"),
                    "constant names must be unique",
                );
            }
            if parameters.iter().any(|p| p.name == name) {
                self.sink.error(
                    pos,
                    "duplicate-name",
                    format!("`{name}` is both a parameter and a constant"),
                    "rename one of them",
                );
            }
            out.push(Constant { name, value });
        }
        out
    }

    fn phases(&mut self, node: &Node, uses: &mut Vec<(usize, usize, Vec<Use>)>) -> Vec<Phase> {
        let items = self.list(node, "phases");
        if items.is_empty() && node.as_seq().is_some() {
            self.sink.error(
                node.pos,
                "no-standard-phase",
                "`phases` is empty",
                "add a `build`, `validate` or `test` phase",
            );
        }
        let mut phases: Vec<Phase> = Vec::new();
        for item in items {
            let Some(entries) = item.as_map() else {
                self.sink.error(
                    item.pos,
                    "wrong-type",
                    "a phase must be a map with `name` and `steps`",
                    "e.g. `- name: build`",
                );
                continue;
            };
            self.known_keys(entries, &["name", "steps"], "a phase");
            let name = match item.get("name") {
                Some(n) => self.string(n, "name").unwrap_or_default(),
                None => {
                    self.sink.error(item.pos, "missing-field", "a phase needs `name`", "add `name: build`");
                    String::new()
                }
            };
            if !name.is_empty() && phases.iter().any(|p| p.name == name) {
                self.sink.error(
                    item.get("name").map_or(item.pos, |n| n.pos),
                    "duplicate-phase",
                    format!("phase `{name}` is defined twice"),
                    "merge the steps into one phase",
                );
            }
            let phase_index = phases.len();
            let steps = match item.get("steps") {
                Some(s) => self.steps(s, phase_index, uses),
                None => {
                    self.sink.error(
                        item.pos,
                        "missing-field",
                        format!("phase `{name}` needs `steps`"),
                        "add `steps:` with at least one step",
                    );
                    Vec::new()
                }
            };
            phases.push(Phase { name, steps });
        }
        if !items.is_empty() && !phases.iter().any(|p| STANDARD_PHASES.contains(&p.name.as_str())) {
            self.sink.error(
                node.pos,
                "no-standard-phase",
                "the document has no `build`, `validate` or `test` phase",
                "name at least one phase build, validate or test",
            );
        }
        phases
    }

    fn steps(&mut self, node: &Node, phase: usize, uses: &mut Vec<(usize, usize, Vec<Use>)>) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        // Names seen in this phase: a set, so validation stays linear in the step count.
        let mut step_names: HashSet<String> = HashSet::new();
        let mut loop_names: Vec<String> = Vec::new();
        for item in self.list(node, "steps") {
            let Some(entries) = item.as_map() else {
                self.sink.error(
                    item.pos,
                    "wrong-type",
                    "a step must be a map",
                    "e.g. `- name: Hello` / `action: ExecuteBash`",
                );
                continue;
            };
            self.known_keys(
                entries,
                &[
                    "name",
                    "action",
                    "inputs",
                    "timeoutSeconds",
                    "onFailure",
                    "maxAttempts",
                    "if",
                    "loop",
                    "disableLogging",
                ],
                "a step",
            );
            let mut step_uses = Vec::new();
            let name = match item.get("name") {
                Some(n) => self.string(n, "name").unwrap_or_default(),
                None => {
                    self.sink.error(item.pos, "missing-field", "a step needs `name`", "add `name: MyStep`");
                    String::new()
                }
            };
            if name.is_empty() && item.get("name").is_some() {
                self.sink.error(item.pos, "bad-name", "a step name cannot be empty", "give the step a name");
            }
            if !name.is_empty() && !step_names.insert(name.clone()) {
                self.sink.error(
                    item.get("name").map_or(item.pos, |n| n.pos),
                    "duplicate-step",
                    format!("step `{name}` is defined twice in this phase"),
                    "step names must be unique within a phase",
                );
            }
            let module = match item.get("action") {
                None => {
                    self.sink.error(
                        item.pos,
                        "missing-field",
                        format!("step `{name}` needs `action`"),
                        "e.g. `action: ExecuteBash`",
                    );
                    None
                }
                Some(a) => {
                    let action = self.string(a, "action").unwrap_or_default();
                    match modules::find(&action) {
                        Some(m) if m.windows_only => {
                            self.sink.error(
                                a.pos,
                                "windows-only-action",
                                format!("`{action}` runs only on Windows"),
                                "use ExecuteBash or the Linux file modules on Linux",
                            );
                            None
                        }
                        Some(m) => Some(m),
                        None => {
                            let hint = modules::suggest(&action)
                                .map(|s| format!("did you mean `{s}`? (action names are case-sensitive)"))
                                .unwrap_or_else(|| "see the action module list in the README".to_string());
                            self.sink.error(a.pos, "unknown-action", format!("unknown action `{action}`"), hint);
                            None
                        }
                    }
                }
            };
            let is_document = module.is_some_and(|m| m.name == "ExecuteDocument");
            let timeout_seconds = match item.get("timeoutSeconds") {
                None => {
                    if is_document {
                        -1
                    } else {
                        DEFAULT_TIMEOUT_SECONDS
                    }
                }
                Some(t) => match t.scalar() {
                    Some(Scalar::Int(v)) if v == -1 || v > 0 => {
                        if is_document && v != -1 {
                            self.sink.error(
                                t.pos,
                                "execute-document-override",
                                "ExecuteDocument steps cannot set timeoutSeconds",
                                "remove timeoutSeconds (it is always -1)",
                            );
                        }
                        v
                    }
                    _ => {
                        self.sink.error(
                            t.pos,
                            "bad-timeout",
                            format!("timeoutSeconds must be -1 or a positive whole number, found {}", t.shown()),
                            "use -1 for no timeout",
                        );
                        DEFAULT_TIMEOUT_SECONDS
                    }
                },
            };
            let max_attempts = match item.get("maxAttempts") {
                None => 1,
                Some(m) => match m.scalar() {
                    Some(Scalar::Int(v)) if (1..=i64::from(u32::MAX)).contains(&v) => {
                        if is_document && v != 1 {
                            self.sink.error(
                                m.pos,
                                "execute-document-override",
                                "ExecuteDocument steps cannot set maxAttempts",
                                "remove maxAttempts (it is always 1)",
                            );
                        }
                        v as u32
                    }
                    _ => {
                        self.sink.error(
                            m.pos,
                            "bad-max-attempts",
                            format!("maxAttempts must be a whole number ≥ 1, found {}", m.shown()),
                            "maxAttempts counts every attempt, the first included",
                        );
                        1
                    }
                },
            };
            let on_failure = match item.get("onFailure") {
                None => OnFailure::Abort,
                Some(o) => match o.text() {
                    Some("Abort") => OnFailure::Abort,
                    Some("Continue") => OnFailure::Continue,
                    Some("Ignore") => OnFailure::Ignore,
                    other => {
                        self.sink.error(
                            o.pos,
                            "bad-on-failure",
                            format!("onFailure `{}` is not Abort, Continue or Ignore", other.unwrap_or(o.kind_name())),
                            "use Abort (default), Continue or Ignore, spelled exactly",
                        );
                        OnFailure::Abort
                    }
                },
            };
            let disable_logging = match item.get("disableLogging") {
                None => false,
                Some(d) => match d.scalar() {
                    Some(Scalar::Bool(b)) => b,
                    _ => {
                        self.sink.error(
                            d.pos,
                            "wrong-type",
                            "disableLogging must be true or false",
                            "write `disableLogging: true`",
                        );
                        false
                    }
                },
            };
            let condition = item.get("if").and_then(|c| self.if_clause(c, &mut step_uses));
            let looping = item.get("loop").and_then(|l| self.looping(l, &mut step_uses, &mut loop_names));
            let (inputs, assert) = match module {
                Some(m) => self.inputs(m, item.get("inputs"), item.pos, &mut step_uses),
                None => (Vec::new(), None),
            };
            uses.push((phase, steps.len(), step_uses));
            if let Some(module) = module {
                steps.push(Step {
                    name,
                    module,
                    inputs,
                    assert,
                    timeout_seconds,
                    on_failure,
                    max_attempts,
                    condition,
                    looping,
                    disable_logging,
                    line: item.pos.line,
                });
            } else {
                // Keep the index aligned with `uses` by recording a placeholder that never runs.
                steps.push(Step {
                    name,
                    module: modules::find("ExecuteBash").expect("ExecuteBash is in the catalogue"),
                    inputs: Vec::new(),
                    assert: None,
                    timeout_seconds,
                    on_failure,
                    max_attempts,
                    condition: None,
                    looping: None,
                    disable_logging,
                    line: item.pos.line,
                });
            }
        }
        steps
    }

    fn inputs(
        &mut self,
        module: &'static ModuleSpec,
        node: Option<&Node>,
        step_pos: Pos,
        uses: &mut Vec<Use>,
    ) -> (Vec<Value>, Option<Condition>) {
        let required_any = module.fields.iter().any(|f| f.required);
        let Some(node) = node else {
            if required_any || module.shape == Shape::Expression {
                self.sink.error(
                    step_pos,
                    "missing-field",
                    format!("{} needs `inputs`", module.name),
                    format!("required inputs: {}", required_names(module)),
                );
            }
            return (if module.shape == Shape::Map { vec![Value::Object(Map::new())] } else { Vec::new() }, None);
        };
        match module.shape {
            Shape::Expression => {
                let cond = self.condition(node, 1, uses, &[]);
                (Vec::new(), cond)
            }
            Shape::Map => {
                if node.as_map().is_none() {
                    self.sink.error(
                        node.pos,
                        "wrong-type",
                        format!("{} inputs must be a map", module.name),
                        format!("inputs: {}", field_names(module)),
                    );
                    return (Vec::new(), None);
                }
                (vec![self.input_object(module, node, uses)], None)
            }
            Shape::List => {
                let Some(items) = node.as_seq() else {
                    self.sink.error(
                        node.pos,
                        "wrong-type",
                        format!("{} inputs must be a list of maps", module.name),
                        "start each operation with `- `",
                    );
                    return (Vec::new(), None);
                };
                if items.is_empty() {
                    self.sink.error(
                        node.pos,
                        "missing-field",
                        format!("{} needs at least one operation", module.name),
                        format!("inputs: {}", field_names(module)),
                    );
                }
                let mut out = Vec::new();
                for item in items {
                    if item.as_map().is_none() {
                        self.sink.error(
                            item.pos,
                            "wrong-type",
                            format!("each {} operation must be a map", module.name),
                            format!("inputs: {}", field_names(module)),
                        );
                        continue;
                    }
                    out.push(self.input_object(module, item, uses));
                }
                (out, None)
            }
        }
    }

    fn input_object(&mut self, module: &ModuleSpec, node: &Node, uses: &mut Vec<Use>) -> Value {
        let entries = node.as_map().unwrap_or_default();
        let known: Vec<&str> = module.fields.iter().map(|f| f.name).collect();
        self.known_keys(entries, &known, &format!("{} inputs", module.name));
        let mut obj = Map::new();
        for field in module.fields {
            match node.get(field.name) {
                None => {
                    if field.required {
                        self.sink.error(
                            node.pos,
                            "missing-field",
                            format!("{} needs `{}`", module.name, field.name),
                            format!("required inputs: {}", required_names(module)),
                        );
                    }
                }
                Some(v) => {
                    if let Some(value) = self.field_value(field, v, uses) {
                        if module.name == "ExecuteDocument"
                            && field.name == "document"
                            && let Some(text) = value.as_str()
                            && crate::component::ComponentArn::looks_like(text)
                            && !text.contains("{{")
                            && let Err(e) = crate::component::ComponentArn::parse(text.trim())
                        {
                            self.sink.error(
                                v.pos,
                                "bad-component-arn",
                                e,
                                "e.g. arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.x.x",
                            );
                        }
                        obj.insert(field.name.to_string(), value);
                    }
                }
            }
        }
        if module.name == "WebDownload" && (obj.contains_key("checksum") != obj.contains_key("algorithm")) {
            self.sink.error(
                node.pos,
                "incomplete-checksum",
                "WebDownload verifies a checksum only with both `checksum` and `algorithm`",
                "give both, e.g. `algorithm: SHA256`",
            );
        }
        Value::Object(obj)
    }

    fn template(&mut self, node: &Node, field: &str, uses: &mut Vec<Use>) -> Option<String> {
        let text = self.string(node, field)?;
        uses.push(Use { node: node.clone(), text: text.clone(), chaining_allowed: true });
        Some(text)
    }

    fn field_value(&mut self, field: &Field, v: &Node, uses: &mut Vec<Use>) -> Option<Value> {
        let name = field.name;
        match field.ty {
            Ty::Str => self.template(v, name, uses).map(Value::String),
            Ty::Mode => {
                let text = self.template(v, name, uses)?;
                if !expr::has_references(&text) && parse_mode(&text).is_none() {
                    self.sink.error(
                        v.pos,
                        "bad-permissions",
                        format!("`{text}` is not an octal permission"),
                        "write permissions as an octal string, e.g. '0644'",
                    );
                }
                Some(Value::String(text))
            }
            Ty::Encoding => {
                let text = self.template(v, name, uses)?;
                if !expr::has_references(&text) && !modules::ENCODINGS.contains(&text.to_ascii_lowercase().as_str()) {
                    self.sink.error(
                        v.pos,
                        "bad-encoding",
                        format!("unknown encoding `{text}`"),
                        "use utf8, utf16, utf16-BE, utf32 or utf32-BE",
                    );
                }
                Some(Value::String(text))
            }
            Ty::Algorithm => {
                let text = self.template(v, name, uses)?;
                if !expr::has_references(&text) && !modules::ALGORITHMS.contains(&text.to_ascii_uppercase().as_str()) {
                    self.sink.error(
                        v.pos,
                        "bad-algorithm",
                        format!("unknown hash algorithm `{text}`"),
                        "use MD5, SHA1, SHA256 or SHA512",
                    );
                }
                Some(Value::String(text))
            }
            Ty::StrList => {
                let Some(items) = v.as_seq() else {
                    self.sink.error(
                        v.pos,
                        "wrong-type",
                        format!("`{name}` must be a list of strings, found a {}", v.kind_name()),
                        format!("write `{name}:` and one `- item` per line"),
                    );
                    return None;
                };
                let list: Vec<Value> =
                    items.iter().filter_map(|i| self.template(i, name, uses)).map(Value::String).collect();
                Some(Value::Array(list))
            }
            Ty::Bool => match v.scalar() {
                Some(Scalar::Bool(b)) => Some(Value::Bool(b)),
                Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                    Some(Value::Bool(s.eq_ignore_ascii_case("true")))
                }
                Some(Scalar::Str(s)) if expr::has_references(s) => self.template(v, name, uses).map(Value::String),
                _ => {
                    self.sink.error(
                        v.pos,
                        "wrong-type",
                        format!("`{name}` must be true or false, found {}", v.shown()),
                        format!("write `{name}: true` or `{name}: false`"),
                    );
                    None
                }
            },
            Ty::Int => match v.scalar() {
                Some(Scalar::Int(i)) if i >= 0 => Some(Value::from(i)),
                Some(Scalar::Str(s)) if expr::has_references(s) => self.template(v, name, uses).map(Value::String),
                _ => {
                    self.sink.error(
                        v.pos,
                        "wrong-type",
                        format!("`{name}` must be a whole number ≥ 0, found {}", v.shown()),
                        format!("e.g. `{name}: 10`"),
                    );
                    None
                }
            },
            Ty::NameValues => {
                let Some(items) = v.as_seq() else {
                    self.sink.error(
                        v.pos,
                        "wrong-type",
                        format!("`{name}` must be a list of `{{name, value}}` maps"),
                        "e.g. `- name: P1` / `value: x`",
                    );
                    return None;
                };
                let mut out = Vec::new();
                for item in items {
                    if item.as_map().is_none() {
                        self.sink.error(
                            item.pos,
                            "wrong-type",
                            "each parameter must be a map with `name` and `value`",
                            "e.g. `- name: P1` / `value: x`",
                        );
                        continue;
                    }
                    self.known_keys(item.as_map().unwrap_or_default(), &["name", "value"], "a parameter value");
                    let n = item.get("name").and_then(|n| self.string(n, "name"));
                    let val = item.get("value").and_then(|n| self.template(n, "value", uses));
                    match (n, val) {
                        (Some(n), Some(val)) => out.push(serde_json::json!({"name": n, "value": val})),
                        _ => self.sink.error(
                            item.pos,
                            "missing-field",
                            "each parameter needs `name` and `value`",
                            "e.g. `- name: P1` / `value: x`",
                        ),
                    }
                }
                Some(Value::Array(out))
            }
        }
    }

    fn if_clause(&mut self, node: &Node, uses: &mut Vec<Use>) -> Option<IfClause> {
        let node = match node.as_seq() {
            Some([single]) => single,
            Some(_) => {
                self.sink.error(
                    node.pos,
                    "bad-condition",
                    "`if` holds exactly one expression",
                    "write `if:` followed by one operator",
                );
                return None;
            }
            None => node,
        };
        let step_action = |key: &str, default: StepAction, this: &mut Self| match node.get(key) {
            None => default,
            Some(v) => match v.text() {
                Some("Execute") => StepAction::Execute,
                Some("Skip") => StepAction::Skip,
                Some("Abort") => StepAction::Abort,
                _ => {
                    this.sink.error(
                        v.pos,
                        "bad-condition",
                        format!("`{key}` must be Execute, Skip or Abort"),
                        "e.g. `then: Skip`",
                    );
                    default
                }
            },
        };
        let then = step_action("then", StepAction::Execute, self);
        let otherwise = step_action("else", StepAction::Skip, self);
        let condition = self.condition(node, 1, uses, &["then", "else"])?;
        Some(IfClause { condition, then, otherwise })
    }

    /// One expression: a map holding one operator (plus `value`/`path` for comparisons).
    fn condition(&mut self, node: &Node, depth: usize, uses: &mut Vec<Use>, extra: &[&str]) -> Option<Condition> {
        let Some(entries) = node.as_map() else {
            self.sink.error(
                node.pos,
                "bad-condition",
                format!("an expression must be a map, found a {}", node.kind_name()),
                "e.g. `fileExists: /etc/os-release`",
            );
            return None;
        };
        let ops: Vec<&(Node, Node)> = entries
            .iter()
            .filter(|(k, _)| {
                !matches!(k.text(), Some("value") | Some("path")) && !extra.contains(&k.text().unwrap_or_default())
            })
            .collect();
        let [(key, arg)] = ops.as_slice() else {
            self.sink.error(
                node.pos,
                "bad-condition",
                format!("an expression needs exactly one operator, found {}", ops.len()),
                "use one of and, or, not, or a comparison such as stringEquals",
            );
            return None;
        };
        let op_name = key.text().unwrap_or_default();
        if matches!(op_name, "and" | "or" | "not") && depth > MAX_LOGICAL_DEPTH {
            self.sink.error(
                key.pos,
                "nesting-too-deep",
                format!("`{op_name}` is logical level {depth}; the limit is {MAX_LOGICAL_DEPTH}"),
                "flatten the expression or split the step",
            );
            return None;
        }
        match op_name {
            "and" | "or" => {
                let items = arg.as_seq().unwrap_or_default();
                if items.len() < 2 {
                    self.sink.error(
                        arg.pos,
                        "bad-condition",
                        format!("`{op_name}` needs a list of at least two expressions"),
                        format!("write `{op_name}:` followed by `- ` items"),
                    );
                    return None;
                }
                let inner: Vec<Condition> =
                    items.iter().filter_map(|i| self.condition(i, depth + 1, uses, &[])).collect();
                (inner.len() == items.len())
                    .then(|| if op_name == "and" { Condition::And(inner) } else { Condition::Or(inner) })
            }
            "not" => {
                let target = match arg.as_seq() {
                    Some([one]) => one,
                    Some(_) => {
                        self.sink.error(
                            arg.pos,
                            "bad-condition",
                            "`not` negates exactly one expression",
                            "write `not:` followed by one expression",
                        );
                        return None;
                    }
                    None => arg,
                };
                self.condition(target, depth + 1, uses, &[]).map(|c| Condition::Not(Box::new(c)))
            }
            _ => {
                let Some(op) = CompareOp::from_name(op_name) else {
                    let hint = CompareOp::ALL
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(op_name))
                        .map(|(n, _)| format!("did you mean `{n}`?"))
                        .unwrap_or_else(|| {
                            "operators: and, or, not, stringEquals, numberLessThan, fileExists, binaryExists, …".into()
                        });
                    self.sink.error(key.pos, "bad-condition", format!("unknown operator `{op_name}`"), hint);
                    return None;
                };
                let baseline = match &arg.kind {
                    Kind::Scalar { text, .. } => text.clone(),
                    _ => {
                        self.sink.error(
                            arg.pos,
                            "bad-condition",
                            format!("`{op_name}` takes a single value"),
                            "quote expressions: '{{ X }}'",
                        );
                        return None;
                    }
                };
                uses.push(Use { node: arg.clone(), text: baseline.clone(), chaining_allowed: true });
                let operand_key = match op.operand() {
                    Operand::None => None,
                    Operand::Value => Some("value"),
                    Operand::Path => Some("path"),
                };
                for other in ["value", "path"] {
                    if Some(other) != operand_key
                        && let Some(n) = node.get(other)
                    {
                        self.sink.error(
                            n.pos,
                            "bad-condition",
                            format!("`{op_name}` does not take `{other}`"),
                            "remove it",
                        );
                    }
                }
                let operand = match operand_key {
                    None => None,
                    Some(k) => match node.get(k) {
                        None => {
                            self.sink.error(
                                node.pos,
                                "bad-condition",
                                format!("`{op_name}` needs `{k}`"),
                                format!("add `{k}: …`"),
                            );
                            return None;
                        }
                        Some(v) => Some(self.template(v, k, uses)?),
                    },
                };
                if op.is_numeric()
                    && !expr::has_references(&baseline)
                    && crate::condition::Decimal::parse(&baseline).is_none()
                {
                    self.sink.error(
                        arg.pos,
                        "bad-condition",
                        format!("`{op_name}` needs a number, found `{baseline}`"),
                        "numbers look like 3, -1 or 2.5",
                    );
                }
                if op == CompareOp::PatternMatches
                    && !expr::has_references(&baseline)
                    && regex::Regex::new(&format!("(?i){baseline}")).is_err()
                {
                    self.sink.error(
                        arg.pos,
                        "bad-regex",
                        format!("`{baseline}` is not a valid regular expression"),
                        "patterns use RE2 syntax",
                    );
                }
                Some(Condition::Compare { op, baseline, operand })
            }
        }
    }

    fn looping(&mut self, node: &Node, uses: &mut Vec<Use>, loop_names: &mut Vec<String>) -> Option<Loop> {
        let Some(entries) = node.as_map() else {
            self.sink.error(
                node.pos,
                "bad-loop",
                "`loop` must be a map with `for` or `forEach`",
                "e.g. `loop: {forEach: [a, b]}`",
            );
            return None;
        };
        self.known_keys(entries, &["name", "for", "forEach"], "a loop");
        let name = node.get("name").and_then(|n| self.string(n, "name"));
        if let Some(n) = &name {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                self.sink.error(
                    node.get("name").map_or(node.pos, |x| x.pos),
                    "bad-name",
                    format!("loop name `{n}` is invalid"),
                    "use letters, digits, `_` and `-`",
                );
            } else if loop_names.contains(n) {
                self.sink.error(
                    node.get("name").map_or(node.pos, |x| x.pos),
                    "duplicate-name",
                    format!("loop name `{n}` is used twice in this phase"),
                    "loop names are unique within a phase",
                );
            }
            loop_names.push(n.clone());
        }
        let kind = match (node.get("for"), node.get("forEach")) {
            (Some(f), None) => self.for_loop(f)?,
            (None, Some(fe)) => self.for_each(fe, uses)?,
            _ => {
                self.sink.error(
                    node.pos,
                    "bad-loop",
                    "a loop needs exactly one of `for` and `forEach`",
                    "e.g. `for: {start: 1, end: 3, updateBy: 1}`",
                );
                return None;
            }
        };
        Some(Loop { name, kind })
    }

    fn for_loop(&mut self, node: &Node) -> Option<LoopKind> {
        if node.as_map().is_none() {
            self.sink.error(
                node.pos,
                "bad-loop",
                "`for` must be a map with start, end and updateBy",
                "e.g. `for: {start: 1, end: 5, updateBy: 2}`",
            );
            return None;
        }
        self.known_keys(node.as_map().unwrap_or_default(), &["start", "end", "updateBy"], "a for loop");
        let get = |key: &str, this: &mut Self| -> Option<i64> {
            match node.get(key) {
                None => {
                    this.sink.error(
                        node.pos,
                        "bad-loop",
                        format!("`for` needs `{key}`"),
                        "start, end and updateBy are all required",
                    );
                    None
                }
                Some(v) => match v.scalar() {
                    Some(Scalar::Int(i)) => Some(i),
                    Some(Scalar::Str(s)) if s.contains("{{") => {
                        this.sink.error(
                            v.pos,
                            "chaining-not-allowed",
                            format!("`{key}` cannot hold an expression"),
                            "for-loop bounds are literal whole numbers",
                        );
                        None
                    }
                    _ => {
                        this.sink.error(
                            v.pos,
                            "bad-loop",
                            format!("`{key}` must be a whole number"),
                            "e.g. `start: 1`",
                        );
                        None
                    }
                },
            }
        };
        let (start, end, update_by) = (get("start", self), get("end", self), get("updateBy", self));
        let (start, end, update_by) = (start?, end?, update_by?);
        if update_by == 0 || (update_by > 0 && start > end) || (update_by < 0 && start < end) {
            self.sink.error(
                node.pos,
                "infinite-loop",
                format!("start {start}, end {end}, updateBy {update_by} never reaches the end"),
                "step towards `end`: a positive updateBy when start ≤ end, negative otherwise",
            );
            return None;
        }
        let count = iterations(start, end, update_by);
        if count > MAX_LOOP_ITERATIONS {
            self.sink.error(
                node.pos,
                "too-many-iterations",
                format!("start {start}, end {end}, updateBy {update_by} is {count} iterations, more than the {MAX_LOOP_ITERATIONS} amictl runs"),
                "split the work, or loop over a list",
            );
            return None;
        }
        Some(LoopKind::For { start, end, update_by })
    }

    fn for_each(&mut self, node: &Node, uses: &mut Vec<Use>) -> Option<LoopKind> {
        if let Some(items) = node.as_seq() {
            let values: Vec<String> = items
                .iter()
                .filter_map(|i| {
                    if matches!(i.kind, Kind::Scalar { .. }) && i.scalar() != Some(Scalar::Null) {
                        self.template(i, "forEach", uses)
                    } else {
                        self.sink.error(
                            i.pos,
                            "bad-loop",
                            "forEach items must be strings",
                            "loops support only string values; quote expressions",
                        );
                        None
                    }
                })
                .collect();
            return (values.len() == items.len()).then_some(LoopKind::List(values));
        }
        if node.as_map().is_none() {
            self.sink.error(
                node.pos,
                "bad-loop",
                "`forEach` must be a list, or a map with `list` and `delimiter`",
                "e.g. `forEach: [a, b]`",
            );
            return None;
        }
        self.known_keys(node.as_map().unwrap_or_default(), &["list", "delimiter"], "a forEach loop");
        let list = match node.get("list") {
            Some(l) => self.template(l, "list", uses)?,
            None => {
                self.sink.error(node.pos, "bad-loop", "`forEach` needs `list`", "e.g. `list: '{{ Hosts }}'`");
                return None;
            }
        };
        let delimiter = match node.get("delimiter") {
            None => ',',
            Some(d) => {
                let text = d.text().unwrap_or_default();
                let c = match text {
                    "\\n" => Some('\n'),
                    "\\t" => Some('\t'),
                    t if t.contains("{{") => {
                        self.sink.error(
                            d.pos,
                            "chaining-not-allowed",
                            "`delimiter` cannot hold an expression",
                            "use one literal character",
                        );
                        return None;
                    }
                    t => {
                        let mut chars = t.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => Some(c),
                            _ => None,
                        }
                    }
                };
                match c {
                    Some(c) if DELIMITERS.contains(&c) => c,
                    _ => {
                        self.sink.error(
                            d.pos,
                            "bad-delimiter",
                            format!("delimiter `{}` is not allowed", text.escape_default()),
                            "use one of . , ; : - _ space \\n \\t",
                        );
                        return None;
                    }
                }
            }
        };
        Some(LoopKind::Delimited { list, delimiter })
    }

    fn check_references(
        &mut self,
        doc: &Document,
        named: &HashMap<(&str, &str), (usize, usize)>,
        phase: usize,
        step: usize,
        u: &Use,
    ) {
        let segments = match expr::parse_spanned(&u.text) {
            Ok(s) => s,
            Err(e) => {
                self.sink.error(u.at(e.offset), "bad-expression", e.message, e.hint);
                return;
            }
        };
        let this = doc.phases.get(phase).and_then(|p| p.steps.get(step));
        for (offset, seg) in segments {
            let pos = u.at(offset);
            match seg {
                Segment::Text(_) => {}
                Segment::Verbatim(v) => self.sink.warning(
                    pos,
                    "verbatim-braces",
                    format!("`{v}` is not an AWSTOE expression and is kept as written"),
                    "this is fine for Go templates such as docker's `{{.Id}}`",
                ),
                Segment::Unclosed(_) => self.sink.warning(
                    pos,
                    "unclosed-braces",
                    "`{{` without a closing `}}` is kept as written, as awstoe does",
                    "if it was meant as an expression, close it: `{{ Name }}`",
                ),
                Segment::Ref(r) => match r {
                    Reference::Variable(n) => {
                        if !doc.parameters.iter().any(|p| p.name == n) && !doc.constants.iter().any(|c| c.name == n) {
                            self.sink.error(
                                pos,
                                "unknown-reference",
                                format!("`{{{{ {n} }}}}` names no parameter or constant"),
                                "declare it under `parameters:` or `constants:`",
                            );
                        }
                    }
                    Reference::Chain { phase: ref p, step: ref s, io, index, ref key } => {
                        if !u.chaining_allowed {
                            self.sink.error(
                                pos,
                                "chaining-not-allowed",
                                "step chaining is not allowed here",
                                "chaining works in step inputs, loop lists and condition values",
                            );
                            continue;
                        }
                        match named.get(&(p.as_str(), s.as_str())).copied() {
                            None => self.sink.error(
                                pos,
                                "unknown-reference",
                                format!("`{r}` refers to no step `{s}` in phase `{p}`"),
                                "chaining is `phase.step.outputs.key` within the same document",
                            ),
                            Some((tp, ts)) => {
                                if (tp, ts) >= (phase, step) {
                                    self.sink.error(
                                        pos,
                                        "forward-reference",
                                        format!("`{r}` refers to a step that has not run yet"),
                                        "a step can read only steps that run before it",
                                    );
                                } else if io == Io::Inputs {
                                    let target = &doc.phases[tp].steps[ts];
                                    if index > 0 && index >= target.inputs.len() {
                                        self.sink.error(
                                            pos,
                                            "unknown-reference",
                                            format!("`{r}`: step `{s}` has {} input item(s)", target.inputs.len()),
                                            "indexes count from 0",
                                        );
                                    }
                                    if !target.module.fields.iter().any(|f| f.name == key) {
                                        self.sink.error(
                                            pos,
                                            "unknown-reference",
                                            format!("`{r}`: {} has no input `{key}`", target.module.name),
                                            format!("inputs: {}", field_names(target.module)),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    Reference::Loop { ref name, .. } => {
                        let owned = this.and_then(|s| s.looping.as_ref());
                        let matches = match (owned, name) {
                            (Some(_), None) => true,
                            (Some(l), Some(n)) => l.name.as_deref() == Some(n),
                            (None, _) => false,
                        };
                        if !matches {
                            self.sink.warning(
                                pos,
                                "loop-reference-outside-loop",
                                format!("`{{{{ {r} }}}}` is not this step's loop and stays literal text"),
                                "loop variables work only inside the step that owns the loop",
                            );
                        }
                    }
                    Reference::Imds(path) => {
                        let p = path.trim_start_matches('/').trim_start_matches("meta-data/");
                        if p.starts_with("iam/") || p == "iam" || p.starts_with("identity-credentials") {
                            self.sink.error(
                                pos,
                                "forbidden-imds-path",
                                format!("`aws:imds:{path}` would expose credentials"),
                                "read credentials through the SDK, never through a document",
                            );
                        }
                    }
                    Reference::Env(_) | Reference::Ssm(_) | Reference::Context(_) => {}
                    Reference::SsmResolve(n) => {
                        if !doc.parameters.iter().any(|p| p.name == n) && !doc.constants.iter().any(|c| c.name == n) {
                            self.sink.error(
                                pos,
                                "unknown-reference",
                                format!("`aws:ssm:resolve({n})` names no parameter or constant"),
                                "declare it under `parameters:`",
                            );
                        }
                    }
                },
            }
        }
    }
}

fn looks_like_unquoted_expression(entries: &[(Node, Node)]) -> bool {
    matches!(entries, [(k, v)] if matches!(k.kind, Kind::Map(_)) || v.scalar() == Some(Scalar::Null))
}

fn required_names(m: &ModuleSpec) -> String {
    m.fields.iter().filter(|f| f.required).map(|f| f.name).collect::<Vec<_>>().join(", ")
}

fn field_names(m: &ModuleSpec) -> String {
    m.fields
        .iter()
        .map(|f| if f.required { format!("{} (required)", f.name) } else { f.name.to_string() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses an octal permission string (`644`, `0644`, `'0o755'`).
pub fn parse_mode(s: &str) -> Option<u32> {
    let t = s.trim().trim_start_matches("0o");
    if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(t, 8).ok()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
