//! `if` conditions and the Assert module: comparison, file and logical operators.
//!
//! Comparisons compute `value OP baseline`, as every AWSTOE example does (the prose says the
//! opposite). String comparisons ignore case; number comparisons are exact decimal
//! comparisons, and a value that is not a number makes the comparison false, not an error.

use std::cmp::Ordering;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    StringIsEmpty,
    StringIsWhitespace,
    StringEquals,
    StringLessThan,
    StringLessThanEquals,
    StringGreaterThan,
    StringGreaterThanEquals,
    PatternMatches,
    NumberEquals,
    NumberLessThan,
    NumberLessThanEquals,
    NumberGreaterThan,
    NumberGreaterThanEquals,
    BinaryExists,
    FileExists,
    FolderExists,
    FileMd5Equals,
    FileSha1Equals,
    FileSha256Equals,
    FileSha512Equals,
}

/// What an operator needs besides its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    None,
    Value,
    Path,
}

impl CompareOp {
    pub const ALL: [(&'static str, CompareOp); 20] = [
        ("stringIsEmpty", CompareOp::StringIsEmpty),
        ("stringIsWhitespace", CompareOp::StringIsWhitespace),
        ("stringEquals", CompareOp::StringEquals),
        ("stringLessThan", CompareOp::StringLessThan),
        ("stringLessThanEquals", CompareOp::StringLessThanEquals),
        ("stringGreaterThan", CompareOp::StringGreaterThan),
        ("stringGreaterThanEquals", CompareOp::StringGreaterThanEquals),
        ("patternMatches", CompareOp::PatternMatches),
        ("numberEquals", CompareOp::NumberEquals),
        ("numberLessThan", CompareOp::NumberLessThan),
        ("numberLessThanEquals", CompareOp::NumberLessThanEquals),
        ("numberGreaterThan", CompareOp::NumberGreaterThan),
        ("numberGreaterThanEquals", CompareOp::NumberGreaterThanEquals),
        ("binaryExists", CompareOp::BinaryExists),
        ("fileExists", CompareOp::FileExists),
        ("folderExists", CompareOp::FolderExists),
        ("fileMD5Equals", CompareOp::FileMd5Equals),
        ("fileSHA1Equals", CompareOp::FileSha1Equals),
        ("fileSHA256Equals", CompareOp::FileSha256Equals),
        ("fileSHA512Equals", CompareOp::FileSha512Equals),
    ];

    pub fn from_name(name: &str) -> Option<CompareOp> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, op)| *op == self).map(|(n, _)| *n).unwrap_or("?")
    }

    pub fn operand(self) -> Operand {
        use CompareOp::*;
        match self {
            StringIsEmpty | StringIsWhitespace | BinaryExists | FileExists | FolderExists => Operand::None,
            FileMd5Equals | FileSha1Equals | FileSha256Equals | FileSha512Equals => Operand::Path,
            _ => Operand::Value,
        }
    }

    pub fn is_numeric(self) -> bool {
        use CompareOp::*;
        matches!(
            self,
            NumberEquals | NumberLessThan | NumberLessThanEquals | NumberGreaterThan | NumberGreaterThanEquals
        )
    }
}

/// A condition tree. Strings are templates; the engine resolves them before evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare { op: CompareOp, baseline: String, operand: Option<String> },
}

/// What `then`/`else` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StepAction {
    Execute,
    Skip,
    Abort,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IfClause {
    pub condition: Condition,
    pub then: StepAction,
    pub otherwise: StepAction,
}

/// The host facts comparisons may ask about. The engine resolves templates before calling.
pub trait Probe {
    fn resolve(&mut self, template: &str) -> String;
    fn binary_exists(&self, name: &str) -> bool;
}

impl Condition {
    /// Evaluates with `and`/`or` short-circuiting in document order.
    pub fn evaluate(&self, probe: &mut dyn Probe) -> bool {
        match self {
            Condition::And(items) => items.iter().all(|c| c.evaluate(probe)),
            Condition::Or(items) => items.iter().any(|c| c.evaluate(probe)),
            Condition::Not(inner) => !inner.evaluate(probe),
            Condition::Compare { op, baseline, operand } => {
                let baseline = probe.resolve(baseline);
                let operand = operand.as_deref().map(|o| probe.resolve(o));
                compare(*op, &baseline, operand.as_deref().unwrap_or(""), probe)
            }
        }
    }
}

fn compare(op: CompareOp, baseline: &str, value: &str, probe: &dyn Probe) -> bool {
    use CompareOp::*;
    let ci = || caseless_cmp(value, baseline);
    match op {
        StringIsEmpty => baseline.is_empty(),
        StringIsWhitespace => !baseline.is_empty() && baseline.chars().all(char::is_whitespace),
        StringEquals => ci() == Ordering::Equal,
        StringLessThan => ci() == Ordering::Less,
        StringLessThanEquals => ci() != Ordering::Greater,
        StringGreaterThan => ci() == Ordering::Greater,
        StringGreaterThanEquals => ci() != Ordering::Less,
        PatternMatches => regex::Regex::new(&format!("(?i){baseline}")).is_ok_and(|re| re.is_match(value)),
        NumberEquals | NumberLessThan | NumberLessThanEquals | NumberGreaterThan | NumberGreaterThanEquals => {
            let (Some(v), Some(b)) = (Decimal::parse(value), Decimal::parse(baseline)) else {
                return false;
            };
            let ord = v.cmp(&b);
            match op {
                NumberEquals => ord == Ordering::Equal,
                NumberLessThan => ord == Ordering::Less,
                NumberLessThanEquals => ord != Ordering::Greater,
                NumberGreaterThan => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
        BinaryExists => probe.binary_exists(baseline),
        FileExists => Path::new(baseline).is_file(),
        FolderExists => Path::new(baseline).is_dir(),
        FileMd5Equals | FileSha1Equals | FileSha256Equals | FileSha512Equals => {
            let algorithm = match op {
                FileMd5Equals => crate::digest::Algorithm::Md5,
                FileSha1Equals => crate::digest::Algorithm::Sha1,
                FileSha256Equals => crate::digest::Algorithm::Sha256,
                _ => crate::digest::Algorithm::Sha512,
            };
            crate::digest::file_hex(algorithm, Path::new(value)).is_ok_and(|h| h.eq_ignore_ascii_case(baseline.trim()))
        }
    }
}

fn caseless_cmp(a: &str, b: &str) -> Ordering {
    a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
}

/// An exact decimal for `^[-+]?([0-9]+[.])?[0-9]+$`, compared like Go's `big.Float.Cmp`.
#[derive(Debug, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

impl Decimal {
    pub fn parse(s: &str) -> Option<Decimal> {
        let (negative, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) if !i.is_empty() => (i, f),
            Some(_) => return None,
            None => (body, ""),
        };
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (body.contains('.') && frac.is_empty()) {
            return None;
        }
        let int = int.trim_start_matches('0').to_string();
        let frac = frac.trim_end_matches('0').to_string();
        let zero = int.is_empty() && frac.is_empty();
        Some(Decimal { negative: negative && !zero, int, frac })
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let magnitude = self
            .int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac));
        match (self.negative, other.negative) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl Probe for Plain {
        fn resolve(&mut self, t: &str) -> String {
            t.to_string()
        }
        fn binary_exists(&self, name: &str) -> bool {
            name == "sh"
        }
    }

    fn cmp(op: &str, baseline: &str, value: &str) -> bool {
        Condition::Compare {
            op: CompareOp::from_name(op).unwrap(),
            baseline: baseline.into(),
            operand: Some(value.into()),
        }
        .evaluate(&mut Plain)
    }

    #[test]
    fn comparison_semantics_follow_the_documented_examples() {
        assert!(cmp("numberLessThan", "2", "1"));
        assert!(cmp("numberEquals", "1", "1.0"));
        assert!(!cmp("numberGreaterThan", "1", "abc"));
        assert!(cmp("numberLessThanEquals", "2", "2"));
        assert!(!cmp("numberGreaterThan", "1", "1"));
        assert!(cmp("numberGreaterThan", "-3", "-2.5"));
        assert!(cmp("stringEquals", "Abc", "aBC"));
        assert!(!cmp("stringIsEmpty", " ", ""));
        assert!(!cmp("stringIsWhitespace", "", ""));
        assert!(cmp("stringIsWhitespace", "  ", ""));
        assert!(cmp("stringLessThan", "a", "0"));
        assert!(cmp("patternMatches", "^[a-z]+$", "ThisIsValue"));
        assert!(!cmp("patternMatches", "^[0-9]+$", "x1"));
    }

    #[test]
    fn decimals_compare_exactly() {
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(d("007.500"), d("7.5"));
        assert!(d("10") > d("9.999999999999999999999"));
        assert_eq!(d("-0"), d("0"));
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse(".5").is_none());
        assert!(Decimal::parse("1e3").is_none());
    }

    #[test]
    fn and_short_circuits() {
        struct Counting(usize);
        impl Probe for Counting {
            fn resolve(&mut self, t: &str) -> String {
                self.0 += 1;
                t.to_string()
            }
            fn binary_exists(&self, _: &str) -> bool {
                false
            }
        }
        let c = Condition::And(vec![
            Condition::Compare { op: CompareOp::StringEquals, baseline: "a".into(), operand: Some("b".into()) },
            Condition::Compare { op: CompareOp::NumberEquals, baseline: "1".into(), operand: Some("a10".into()) },
        ]);
        let mut p = Counting(0);
        assert!(!c.evaluate(&mut p));
        assert_eq!(p.0, 2, "only the first comparison's two operands were resolved");
    }
}
