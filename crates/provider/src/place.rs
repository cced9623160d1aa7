//! Where things are: an account and region, an AMI in one, a version of a line.
//!
//! Each has one text form, used in plans, the catalog and the audit trail, and one parser;
//! nothing else splits these strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One account (by its config name) in one region: `workflow/eu-west-2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// The account's name in the config (`[accounts.<name>]`).
    pub account: String,
    /// The AWS region.
    pub region: String,
}

impl Target {
    /// A target from its parts.
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Target {
        Target { account: account.into(), region: region.into() }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// A text that is not the form a place type prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not {expected}")]
pub struct ParseError {
    text: String,
    expected: &'static str,
}

impl FromStr for Target {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Target, ParseError> {
        match s.split_once('/') {
            Some((a, r)) if !a.is_empty() && !r.is_empty() && !r.contains('/') => Ok(Target::new(a, r)),
            _ => Err(ParseError { text: s.into(), expected: "account/region" }),
        }
    }
}

/// An AMI in one account and region: `platform/eu-west-1/ami-0abc…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmiRef {
    /// Where the AMI is registered (its owner).
    pub target: Target,
    /// `ami-…`.
    pub image_id: String,
}

impl AmiRef {
    /// An AMI reference from its parts.
    pub fn new(account: impl Into<String>, region: impl Into<String>, image_id: impl Into<String>) -> AmiRef {
        AmiRef { target: Target::new(account, region), image_id: image_id.into() }
    }
}

impl fmt::Display for AmiRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.target, self.image_id)
    }
}

impl FromStr for AmiRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<AmiRef, ParseError> {
        let bad = || ParseError { text: s.into(), expected: "account/region/ami-id" };
        let mut parts = s.splitn(3, '/');
        let (Some(a), Some(r), Some(id)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        if a.is_empty() || r.is_empty() || !id.starts_with("ami-") || id.contains('/') {
            return Err(bad());
        }
        Ok(AmiRef::new(a, r, id))
    }
}

/// A version of an image line: `weco-amzn2-hvm-x86_64-gp2@2026.12.01.1` (audit subjects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionRef {
    /// The image line.
    pub image: String,
    /// `YYYY.MM.DD.N`.
    pub version: String,
}

impl VersionRef {
    /// A version reference from its parts.
    pub fn new(image: impl Into<String>, version: impl Into<String>) -> VersionRef {
        VersionRef { image: image.into(), version: version.into() }
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.image, self.version)
    }
}

macro_rules! as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
as_text!(Target);
as_text!(AmiRef);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_print_and_parse_one_way() {
        let t: Target = "workflow/eu-west-2".parse().unwrap();
        assert_eq!(t, Target::new("workflow", "eu-west-2"));
        assert_eq!(t.to_string(), "workflow/eu-west-2");
        assert!("workflow".parse::<Target>().is_err());
        assert!("a/b/c".parse::<Target>().is_err());
        let a: AmiRef = "platform/eu-west-1/ami-0abc".parse().unwrap();
        assert_eq!(a.image_id, "ami-0abc");
        assert_eq!(a.to_string(), "platform/eu-west-1/ami-0abc");
        assert!("platform/eu-west-1/snap-1".parse::<AmiRef>().is_err());
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"workflow/eu-west-2\"");
        assert_eq!(serde_json::from_str::<AmiRef>("\"platform/eu-west-1/ami-0abc\"").unwrap(), a);
        assert_eq!(VersionRef::new("host", "2026.12.01.1").to_string(), "host@2026.12.01.1");
    }
}
