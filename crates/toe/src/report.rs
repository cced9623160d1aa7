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

/// The open log folder: `console.log` (everything the steps printed) and
/// `application.log` (what the engine did), appended across reboots.
pub struct LogFolder {
    pub path: PathBuf,
    console: BufWriter<File>,
    application: BufWriter<File>,
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
        })
    }

    pub fn console(&mut self, bytes: &[u8]) {
        let _ = self.console.write_all(bytes);
    }

    pub fn app(&mut self, line: &str) {
        let _ = writeln!(self.application, "{} {line}", jiff::Timestamp::now());
    }

    pub fn flush(&mut self) {
        let _ = self.console.flush();
        let _ = self.application.flush();
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> std::io::Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut f = BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, value)?;
        f.flush()?;
        drop(f);
        std::fs::rename(tmp, self.path.join(name))
    }
}
