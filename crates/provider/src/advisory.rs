//! Security advisories: how severe, and what an image lacks.

use serde::{Deserialize, Serialize};

/// The ALAS scale; other sources' words map onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A severity the feed gave that is none of the four (reported, never above threshold).
    Unknown,
    /// Low.
    Low,
    /// Medium (Debian "moderate").
    Medium,
    /// Important (Inspector and Debian "high").
    Important,
    /// Critical.
    Critical,
}

impl Severity {
    /// ALAS words, any case; Debian urgencies (`low**`, `high`, `unimportant` …) and
    /// Inspector's (`HIGH`) map onto the same scale.
    pub fn parse(s: &str) -> Severity {
        match s.trim().trim_end_matches('*').to_ascii_lowercase().as_str() {
            "low" | "unimportant" | "negligible" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "important" | "high" => Severity::Important,
            "critical" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }

    /// A threshold from config (`low`, `medium`, `important`, `critical`).
    pub fn threshold(s: &str) -> Option<Severity> {
        match Severity::parse(s) {
            Severity::Unknown => None,
            s => Some(s),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::Important => "important",
            Severity::Critical => "critical",
        })
    }
}

/// A fix an image is missing (or, for Debian `open` issues, a known unfixed one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory (`ALAS2-2026-001`) or vulnerability (`CVE-…`) id.
    pub advisory: String,
    /// How severe.
    pub severity: Severity,
    /// The CVEs it covers.
    pub cves: Vec<String>,
    /// The affected package (`openssl-libs.x86_64`).
    pub package: String,
    /// The version installed.
    pub installed: String,
    /// The fixed version; `None` when no fix exists yet.
    pub fixed: Option<String>,
    /// When the advisory was issued (or last updated), as the source wrote it.
    pub issued: String,
}
