//! What a run leaves behind: the `detailedoutput.json` tree, the console summary and the
//! `TOE_<time>_UTC-0_<id>` log folder, shaped like awstoe's so existing tooling reads them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Success,
    Failed,
    IgnoredFailure,
    SuccessWithIgnoredFailure,
    Skipped,
}

impl Status {
    /// Folds a child status into a parent's: failed beats ignored failures beats success.
    pub fn fold(self, child: Status) -> Status {
        match (self, child) {
            (Status::Failed, _) | (_, Status::Failed) => Status::Failed,
            (Status::SuccessWithIgnoredFailure, _)
            | (_, Status::IgnoredFailure)
            | (_, Status::SuccessWithIgnoredFailure) => Status::SuccessWithIgnoredFailure,
            _ => Status::Success,
        }
    }

    pub fn is_success(self) -> bool {
        !matches!(self, Status::Failed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub execution_id: String,
    pub status: Status,
    pub start_time: String,
    pub end_time: String,
    pub failure_message: String,
    pub documents: Vec<DocumentRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentRecord {
    pub name: String,
    pub file_path: String,
    pub status: Status,
    pub description: String,
    pub start_time: String,
    pub end_time: String,
    pub failure_message: String,
    pub phases: Vec<PhaseRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    pub name: String,
    pub status: Status,
    pub start_time: String,
    pub end_time: String,
    pub failure_message: String,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub name: String,
    pub status: Status,
    pub failure_message: String,
    pub timeout_seconds: i64,
    pub on_failure: String,
    pub max_attempts: u32,
    /// How many attempts ran (an amictl addition).
    pub attempts: u32,
    pub action: String,
    pub start_time: String,
    pub end_time: String,
    /// JSON-encoded array of the resolved inputs, as awstoe writes it.
    pub inputs: String,
    /// JSON-encoded array of the outputs.
    pub outputs: String,
    #[serde(rename = "loop")]
    pub looping: Option<serde_json::Value>,
    pub detailed_output: Option<Vec<ExecutionRecord>>,
}

/// Counts over a whole run, the fields of awstoe's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub executed_step_count: u32,
    pub failed_step_count: u32,
    pub ignored_failed_step_count: u32,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.executed_step_count += other.executed_step_count;
        self.failed_step_count += other.failed_step_count;
        self.ignored_failed_step_count += other.ignored_failed_step_count;
    }
}

/// The JSON printed on stdout when a run ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub execution_id: String,
    pub status: Status,
    pub failed_step_count: u32,
    pub executed_step_count: u32,
    pub ignored_failed_step_count: u32,
    pub failure_message: String,
    pub log_url: String,
}

/// RFC 3339 with the local offset, as awstoe writes times.
pub fn now_rfc3339() -> String {
    let now = jiff::ZonedDateTime::now();
    now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `TOE_<YYYY-MM-DD_HH-MM-SS>_UTC-0_<executionId>`
pub fn log_folder_name(execution_id: &str) -> String {
    let now = jiff::Timestamp::now();
    format!("TOE_{}_UTC-0_{execution_id}", now.strftime("%Y-%m-%d_%H-%M-%S"))
}

/// Secret text shorter than this is not masked (it would mask ordinary words and digits).
pub const MIN_SECRET: usize = 4;

/// The open log folder: `console.log` (what the steps printed) and `application.log`
/// (what the engine did), appended across reboots. Every write is masked: secret
/// parameter values and the outputs of `disableLogging` steps never reach a file, however
/// they flow (chained into a logged step, echoed, in a failure message).
pub struct LogFolder {
    pub path: PathBuf,
    console: BufWriter<File>,
    application: BufWriter<File>,
    secrets: Secrets,
    /// Bytes each step (by its log file) has written to `console.log`.
    console_used: std::collections::HashMap<PathBuf, u64>,
}

/// The values to mask, in every form they are written in: as they are, each of their
/// lines, and JSON-escaped once and twice (a quote or backslash in a secret is `\"` in
/// `detailedoutput.json`, and `\\\"` where an output is JSON inside JSON). Matching is one
/// Aho-Corasick pass (leftmost-longest, so a secret inside another is masked whole), so a
/// thousand-line secret costs no more per byte than a short one.
#[derive(Default, Clone)]
pub struct Secrets {
    list: Vec<String>,
    matcher: Option<std::sync::Arc<aho_corasick::AhoCorasick>>,
}

impl Secrets {
    /// The forms of `secret` that are masked.
    pub fn forms(secret: &str) -> Vec<String> {
        let mut out = Vec::new();
        let escape = |t: &str| {
            let q = serde_json::to_string(t).unwrap_or_default();
            q.get(1..q.len().saturating_sub(1)).unwrap_or_default().to_string()
        };
        for part in std::iter::once(secret.trim_end_matches('\n')).chain(secret.lines()) {
            let once = escape(part);
            let twice = escape(&once);
            for form in [part.to_string(), once, twice] {
                if form.len() >= MIN_SECRET && !out.contains(&form) {
                    out.push(form);
                }
            }
        }
        out
    }

    /// Masks `secret` (all its forms) from now on.
    pub fn add(&mut self, secret: &str) {
        let before = self.list.len();
        for form in Secrets::forms(secret) {
            if !self.list.contains(&form) {
                self.list.push(form);
            }
        }
        if self.list.len() != before {
            self.matcher = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&self.list)
                .ok()
                .map(std::sync::Arc::new);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The longest form, in bytes.
    fn longest(&self) -> usize {
        self.list.iter().map(String::len).max().unwrap_or(0)
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &vec!["***"; self.list.len()]),
            None => text.to_string(),
        }
    }

    /// [`Secrets::mask`] for bytes that may not be UTF-8.
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Some(m) => m.replace_all_bytes(bytes, &vec![&b"***"[..]; self.list.len()]),
            None => bytes.to_vec(),
        }
    }

    /// Whether `text` holds a secret.
    pub fn found_in(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }
}

impl LogFolder {
    pub fn open(path: &Path) -> std::io::Result<LogFolder> {
        std::fs::create_dir_all(path)?;
        let append =
            |name: &str| OpenOptions::new().create(true).append(true).open(path.join(name)).map(BufWriter::new);
        Ok(LogFolder {
            path: path.to_path_buf(),
            console: append("console.log")?,
            application: append("application.log")?,
            secrets: Secrets::default(),
            console_used: std::collections::HashMap::new(),
        })
    }

    /// Masks `secret` (each of its lines, and their JSON-escaped forms) in everything
    /// written from now on.
    pub fn add_secret(&mut self, secret: &str) {
        self.secrets.add(secret);
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        self.secrets.mask(text)
    }

    /// A masker for one stream of output (a step's), which also catches a secret split
    /// across two chunks.
    pub fn redactor(&self) -> Redactor {
        Redactor::from_secrets(&self.secrets)
    }

    /// How much of `want` more bytes the step logging to `step_log` may still write to
    /// `console.log` within `limit` (the rest is in its step log only); counts them.
    pub fn console_room(&mut self, step_log: &Path, want: u64, limit: u64) -> u64 {
        let used = self.console_used.entry(step_log.to_path_buf()).or_default();
        let room = limit.saturating_sub(*used).min(want);
        *used += want;
        room
    }

    pub fn console(&mut self, bytes: &[u8]) {
        if self.secrets.is_empty() {
            let _ = self.console.write_all(bytes);
        } else {
            let _ = self.console.write_all(&self.secrets.mask_bytes(bytes));
        }
    }

    pub fn app(&mut self, line: &str) {
        let line = self.mask(line);
        let _ = writeln!(self.application, "{} {line}", jiff::Timestamp::now());
    }

    pub fn flush(&mut self) {
        let _ = self.console.flush();
        let _ = self.application.flush();
    }

    /// Every string in `value`, masked.
    pub fn mask_value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if self.secrets.found_in(s) => {
                *s = self.mask(s);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.mask_value(v)),
            _ => {}
        }
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> std::io::Result<()> {
        let mut value = serde_json::to_value(value)?;
        self.mask_value(&mut value);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut f = BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, &value)?;
        f.flush()?;
        drop(f);
        std::fs::rename(tmp, self.path.join(name))
    }
}

/// Masks secrets in a stream of chunks: the last few bytes of each chunk wait for the next,
/// so a secret split across two is still found.
pub struct Redactor {
    secrets: Secrets,
    /// Bytes held back: one less than the longest secret form.
    keep: usize,
    carry: Vec<u8>,
}

impl Redactor {
    /// A masker for `secrets` (each with all its forms).
    pub fn new(secrets: &[String]) -> Redactor {
        let mut all = Secrets::default();
        for s in secrets {
            all.add(s);
        }
        Redactor::from_secrets(&all)
    }

    fn from_secrets(secrets: &Secrets) -> Redactor {
        Redactor { secrets: secrets.clone(), keep: secrets.longest().saturating_sub(1), carry: Vec::new() }
    }

    /// The part of `bytes` (with what waited) that is safe to write now. A secret that
    /// starts before the held-back tail ends inside the buffer, so it is always whole.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let Some(matcher) = self.secrets.matcher.clone() else { return bytes.to_vec() };
        self.carry.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.carry);
        let safe_end = buf.len().saturating_sub(self.keep);
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        for m in matcher.find_iter(&buf) {
            if m.start() >= safe_end {
                break;
            }
            out.extend_from_slice(&buf[pos..m.start()]);
            out.extend_from_slice(b"***");
            pos = m.end();
        }
        let emit_to = pos.max(safe_end);
        out.extend_from_slice(&buf[pos..emit_to]);
        self.carry = buf[emit_to..].to_vec();
        out
    }

    /// What still waits, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.carry);
        self.secrets.mask_bytes(&buf)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn a_secret_split_across_chunks_is_masked() {
        let d = tempfile::tempdir().unwrap();
        let mut log = LogFolder::open(d.path()).unwrap();
        log.add_secret("hunter22-canary\n");
        let mut r = log.redactor();
        let mut out = r.feed(b"key=hunter");
        out.extend(r.feed(b"22-canary done"));
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "key=*** done");
        let mut v = serde_json::json!({"a": ["x hunter22-canary y"], "b": 1});
        log.mask_value(&mut v);
        assert_eq!(v["a"][0], "x *** y");
        log.add_secret("abc");
        assert_eq!(log.mask("abc"), "abc", "too short to mask");
    }
}
