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
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
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
            secrets: Vec::new(),
        })
    }

    /// Masks `secret` (and each of its lines) in everything written from now on.
    pub fn add_secret(&mut self, secret: &str) {
        let parts = std::iter::once(secret.trim_end_matches('\n')).chain(secret.lines());
        for part in parts {
            if part.len() >= MIN_SECRET && !self.secrets.iter().any(|s| s == part) {
                self.secrets.push(part.to_string());
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// A masker for one stream of output (a step's), which also catches a secret split
    /// across two chunks.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(&self.secrets)
    }

    pub fn console(&mut self, bytes: &[u8]) {
        if self.secrets.is_empty() {
            let _ = self.console.write_all(bytes);
        } else {
            let text = self.mask(&String::from_utf8_lossy(bytes));
            let _ = self.console.write_all(text.as_bytes());
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
            serde_json::Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
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
    secrets: Vec<Vec<u8>>,
    keep: usize,
    carry: Vec<u8>,
}

fn replace_all(haystack: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(b"***");
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

impl Redactor {
    /// A masker for `secrets` (longest first, so a secret inside another is not half-masked).
    pub fn new(secrets: &[String]) -> Redactor {
        let mut secrets: Vec<Vec<u8>> =
            secrets.iter().filter(|s| s.len() >= MIN_SECRET).map(|s| s.as_bytes().to_vec()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let keep = secrets.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
        Redactor { secrets, keep, carry: Vec::new() }
    }

    /// The part of `bytes` (with what waited) that is safe to write now.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return bytes.to_vec();
        }
        self.carry.extend_from_slice(bytes);
        let mut buf = std::mem::take(&mut self.carry);
        for s in &self.secrets {
            if buf.windows(s.len()).any(|w| w == s.as_slice()) {
                buf = replace_all(&buf, s);
            }
        }
        let split = buf.len().saturating_sub(self.keep);
        self.carry = buf.split_off(split);
        buf
    }

    /// What still waits, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        for s in &self.secrets {
            buf = replace_all(&buf, s);
        }
        buf
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
