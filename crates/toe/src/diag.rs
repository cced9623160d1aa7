//! Diagnostics: every problem found in a document, with where it is and how to fix it.

use std::fmt;

use serde::Serialize;

use crate::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding. `code` is stable across releases so scripts and docs can refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}[{}]: {}", self.file, self.line, self.column, self.code, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Sink {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl Sink {
    pub fn new(file: impl Into<String>) -> Sink {
        Sink { file: file.into(), items: Vec::new() }
    }

    pub fn error(&mut self, pos: Pos, code: &'static str, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Error, pos, code, message.into(), hint.into());
    }

    pub fn warning(&mut self, pos: Pos, code: &'static str, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Warning, pos, code, message.into(), hint.into());
    }

    fn push(&mut self, severity: Severity, pos: Pos, code: &'static str, message: String, hint: String) {
        self.items.push(Diagnostic {
            severity,
            code,
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message,
            hint,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
}
