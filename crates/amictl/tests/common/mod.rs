//! Test harness: writes documents into a temp folder, runs the real `amictl` binary on
//! them, and reads back the summary and `detailedoutput.json`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Toe {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub summary: Option<Value>,
    pub detail: Option<Value>,
    pub log_folder: Option<PathBuf>,
}

pub fn amictl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amictl"))
}

impl Toe {
    pub fn new() -> Toe {
        Toe { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a document (or any file) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn validate(&self, docs: &[&str]) -> Output {
        let list: Vec<String> = docs.iter().map(|d| self.path(d).display().to_string()).collect();
        amictl().args(["toe", "validate", "--json", "--documents", &list.join(",")]).output().unwrap()
    }

    /// Diagnostics codes reported by `validate --json`, in order.
    pub fn error_codes(&self, doc: &str) -> Vec<String> {
        let out = self.validate(&[doc]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("validate --json prints JSON");
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["severity"] == "error")
            .map(|d| d["code"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn run(&self, docs: &[&str], extra: &[&str]) -> Run {
        let list: Vec<String> = docs.iter().map(|d| self.path(d).display().to_string()).collect();
        let logs = self.path("logs");
        let mut cmd = amictl();
        cmd.args(["toe", "run", "--documents", &list.join(",")])
            .arg("--log-directory")
            .arg(&logs)
            .arg("--state-directory")
            .arg(self.path("state"))
            .args(extra)
            .current_dir(self.dir.path())
            .env("TMPDIR", self.dir.path());
        collect(cmd.output().unwrap())
    }
}

pub fn collect(out: Output) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary: Option<Value> = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok());
    let log_folder = summary.as_ref().and_then(|s| s["logUrl"].as_str()).map(PathBuf::from);
    let detail = log_folder
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f.join("detailedoutput.json")).ok())
        .map(|t| serde_json::from_str(&t).expect("detailedoutput.json is JSON"));
    Run { code: out.status.code().unwrap_or(-1), stdout, stderr, summary, detail, log_folder }
}

impl Run {
    pub fn summary(&self) -> &Value {
        self.summary.as_ref().unwrap_or_else(|| panic!("no summary; stderr:\n{}", self.stderr))
    }

    pub fn status(&self) -> &str {
        self.summary()["status"].as_str().unwrap()
    }

    pub fn count(&self, field: &str) -> u64 {
        self.summary()[field].as_u64().unwrap()
    }

    /// The step record `phase/step` of the first document.
    pub fn step(&self, phase: &str, step: &str) -> &Value {
        let detail = self.detail.as_ref().unwrap_or_else(|| panic!("no detailedoutput; stderr:\n{}", self.stderr));
        detail["documents"][0]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == phase)
            .and_then(|p| p["steps"].as_array().unwrap().iter().find(|s| s["name"] == step))
            .unwrap_or_else(|| panic!("no step {phase}/{step} in {detail:#}"))
    }

    pub fn step_status(&self, phase: &str, step: &str) -> String {
        self.step(phase, step)["status"].as_str().unwrap().to_string()
    }

    /// A step output key, decoded from the JSON-encoded `outputs` string.
    pub fn output(&self, phase: &str, step: &str, key: &str) -> String {
        let outputs: Value = serde_json::from_str(self.step(phase, step)["outputs"].as_str().unwrap()).unwrap();
        outputs[0][key].as_str().unwrap_or_else(|| panic!("no output {key} in {outputs}")).to_string()
    }

    pub fn has_step(&self, phase: &str, step: &str) -> bool {
        self.detail.as_ref().is_some_and(|d| {
            d["documents"][0]["phases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == phase && p["steps"].as_array().unwrap().iter().any(|s| s["name"] == step))
        })
    }
}

/// A document with one build phase made of `steps` (YAML, indented for the `steps:` list).
pub fn build_doc(steps: &str) -> String {
    format!("name: t\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{}", indent(steps, 6))
}

pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| if l.is_empty() { String::new() } else { format!("{pad}{l}") }).collect::<Vec<_>>().join("\n")
        + "\n"
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Serves `body` at `path` (404 elsewhere) on 127.0.0.1 for `requests` requests and
/// returns the base URL.
pub fn serve(path: &'static str, body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let found = req.starts_with(&format!("GET {path} "));
            let (status, payload): (&str, &[u8]) = if found { ("200 OK", &body) } else { ("404 Not Found", b"nope") };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", payload.len());
            let _ = s.write_all(payload);
        }
    });
    format!("http://{addr}")
}
