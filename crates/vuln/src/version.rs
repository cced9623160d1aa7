//! Version order as the package managers define it: rpm's `rpmvercmp` (with epochs, `~`
//! sorting before anything and `^` after the base version) and dpkg's (epoch, upstream,
//! revision, `~`). Both pass the upstream test vectors in `tests/fixtures/version-vectors`.
//!
//! Amazon Linux 2 ships rpm 4.11, which predates `^`; no AL2 package uses it, so one
//! ordering serves AL2 and AL2023.

use std::cmp::Ordering;

/// rpm's segment-wise comparison of a version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((_, rest)) = a.split_first().filter(|(c, _)| sep(**c)) {
            a = rest;
        }
        while let Some((_, rest)) = b.split_first().filter(|(c, _)| sep(**c)) {
            b = rest;
        }
        // Tilde sorts before everything, even the end of the string.
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Caret sorts after the end of the string but before anything else.
        match (a.first() == Some(&b'^'), b.first() == Some(&b'^')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return if b.is_empty() { Ordering::Greater } else { Ordering::Less },
            (false, true) => return if a.is_empty() { Ordering::Less } else { Ordering::Greater },
            _ => {}
        }
        if a.is_empty() || b.is_empty() {
            break;
        }
        let numeric = a[0].is_ascii_digit();
        let take = |s: &[u8]| -> usize {
            s.iter().take_while(|c| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }).count()
        };
        let (la, lb) = (take(a), take(b));
        let (sa, sb) = (&a[..la], &b[..lb]);
        if lb == 0 {
            // Different kinds of segment: numeric is newer than alphabetic.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric {
            let trim = |s: &[u8]| -> usize { s.iter().take_while(|c| **c == b'0').count() };
            let (ta, tb) = (&sa[trim(sa)..], &sb[trim(sb)..]);
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[la..];
        b = &b[lb..];
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An rpm `[epoch:]version-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr {
    pub epoch: u64,
    pub version: String,
    pub release: String,
}

impl Evr {
    pub fn new(epoch: u64, version: &str, release: &str) -> Evr {
        Evr { epoch, version: version.into(), release: release.into() }
    }

    /// `1:1.0.2k-24.amzn2.0.7`, `1.0.2k-24`, `1.0` (no release).
    pub fn parse(s: &str) -> Option<Evr> {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, s),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (!version.is_empty()).then(|| Evr::new(epoch, version, release))
    }
}

impl std::fmt::Display for Evr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}", self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// Epoch, then version, then release; a missing release matches any release (as rpm does
/// when a dependency names only a version).
pub fn rpm_evr_cmp(a: &Evr, b: &Evr) -> Ordering {
    a.epoch.cmp(&b.epoch).then_with(|| rpmvercmp(&a.version, &b.version)).then_with(|| {
        if a.release.is_empty() || b.release.is_empty() { Ordering::Equal } else { rpmvercmp(&a.release, &b.release) }
    })
}

/// dpkg's order of two full versions `[epoch:]upstream[-revision]`.
pub fn dpkg_cmp(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u.to_string(), r.to_string()),
            None => (epoch, rest.to_string(), String::new()),
        }
    };
    let (ea, ua, ra) = split(a.trim());
    let (eb, ub, rb) = split(b.trim());
    ea.cmp(&eb).then_with(|| dpkg_part(&ua, &ub)).then_with(|| dpkg_part(&ra, &rb))
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs; in non-digit runs `~` sorts
/// first, then the end, then letters, then everything else.
fn dpkg_part(a: &str, b: &str) -> Ordering {
    let order = |c: Option<u8>| -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    };
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = a[i] as i32 - b[j] as i32;
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(text: &str) -> Vec<(String, String, Ordering)> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let want = match f[2].trim() {
                    "-1" => Ordering::Less,
                    "0" => Ordering::Equal,
                    _ => Ordering::Greater,
                };
                (f[0].to_string(), f[1].to_string(), want)
            })
            .collect()
    }

    #[test]
    fn every_rpm_vector_passes() {
        let v = vectors(include_str!("../tests/fixtures/version-vectors/rpm_rpmvercmp_at.tsv"));
        assert_eq!(v.len(), 91);
        let bad: Vec<_> = v.iter().filter(|(a, b, want)| rpmvercmp(a, b) != *want).collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn every_dpkg_vector_passes() {
        let v = vectors(include_str!("../tests/fixtures/version-vectors/dpkg_Dpkg_Version_t.tsv"));
        assert_eq!(v.len(), 43);
        let bad: Vec<_> = v.iter().filter(|(a, b, want)| dpkg_cmp(a, b) != *want).collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn epochs_outrank_versions() {
        let a = Evr::parse("1:1.0.2k-24.amzn2.0.7").unwrap();
        let b = Evr::parse("1.0.2k-26.amzn2").unwrap();
        assert_eq!(a.epoch, 1);
        assert_eq!(rpm_evr_cmp(&a, &b), Ordering::Greater);
        assert_eq!(a.to_string(), "1:1.0.2k-24.amzn2.0.7");
        assert_eq!(dpkg_cmp("1:2.33.1-0.1", "2.34-1"), Ordering::Greater);
    }
}
