//! `{{ }}` expressions: parameters, constants, step-output chaining, loop variables and the
//! `env:` / `aws:ssm:` / `aws:imds:` / `context:` namespaces.
//!
//! Strings are parsed after YAML, so an expression only ever lives inside a string value.
//! Text between braces that starts with `.` (a Go template such as `docker inspect -f
//! '{{.Id}}'`) is not an AWSTOE reference; it is kept verbatim and validation warns.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Ref(Reference),
    /// `{{…}}` that is not an AWSTOE expression, kept as written.
    Verbatim(String),
    /// A `{{` with no `}}` after it, kept as written to the end of the string (AWS's own
    /// `aws-cli-version-2-linux` component has one in a script line).
    Unclosed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Inputs,
    Outputs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopField {
    Index,
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A parameter or constant.
    Variable(String),
    /// `phase.step.inputs[i].key` / `phase.step.outputs[i].key`.
    Chain {
        phase: String,
        step: String,
        io: Io,
        index: usize,
        key: String,
    },
    /// `loop.x` (name `None`) or `<loopName>.x`.
    Loop {
        name: Option<String>,
        field: LoopField,
    },
    Env(String),
    Ssm(String),
    /// `aws:ssm:resolve(name)`: the parameter's name comes from a variable.
    SsmResolve(String),
    Imds(String),
    Context(String),
}

pub const CONTEXT_KEYS: &[&str] = &[
    "executionId",
    "accountId",
    "region",
    "osPlatform",
    "osName",
    "osVersion",
    "date",
    "dateTime",
    "uuid",
    "hostname",
    "phase",
    "step",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset of the expression's `{{` in the string.
    pub offset: usize,
    pub message: String,
    pub hint: &'static str,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Variable(n) => write!(f, "{n}"),
            Reference::Chain { phase, step, io, index, key } => {
                let io = if *io == Io::Inputs { "inputs" } else { "outputs" };
                write!(f, "{phase}.{step}.{io}[{index}].{key}")
            }
            Reference::Loop { name, field } => {
                let field = if *field == LoopField::Index { "index" } else { "value" };
                write!(f, "{}.{field}", name.as_deref().unwrap_or("loop"))
            }
            Reference::Env(n) => write!(f, "env:{n}"),
            Reference::Ssm(n) => write!(f, "aws:ssm:{n}"),
            Reference::SsmResolve(n) => write!(f, "aws:ssm:resolve({n})"),
            Reference::Imds(n) => write!(f, "aws:imds:{n}"),
            Reference::Context(n) => write!(f, "context:{n}"),
        }
    }
}

/// Splits a string into text and references. Never panics, whatever the input.
pub fn parse(s: &str) -> Result<Vec<Segment>, ExprError> {
    Ok(parse_spanned(s)?.into_iter().map(|(_, seg)| seg).collect())
}

/// [`parse`], with each segment's byte offset in `s` (for error positions).
pub fn parse_spanned(s: &str) -> Result<Vec<(usize, Segment)>, ExprError> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut base = 0;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push((base, Segment::Text(rest[..start].to_string())));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push((base + start, Segment::Unclosed(rest[start..].to_string())));
            return Ok(out);
        };
        let inner = &after[..end];
        let trimmed = inner.trim();
        if trimmed.starts_with('.') || trimmed.starts_with('-') || trimmed.starts_with('$') {
            out.push((base + start, Segment::Verbatim(format!("{{{{{inner}}}}}"))));
        } else {
            let r = parse_reference(trimmed).map_err(|(message, hint)| ExprError {
                offset: base + start,
                message,
                hint,
            })?;
            out.push((base + start, Segment::Ref(r)));
        }
        let consumed = start + 2 + end + 2;
        base += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        out.push((base, Segment::Text(rest.to_string())));
    }
    Ok(out)
}

/// True when the string contains at least one reference (not counting verbatim braces).
pub fn has_references(s: &str) -> bool {
    parse(s).map(|segs| segs.iter().any(|s| matches!(s, Segment::Ref(_)))).unwrap_or(true)
}

fn parse_reference(e: &str) -> Result<Reference, (String, &'static str)> {
    if e.is_empty() {
        return Err((
            "empty expression `{{ }}`".into(),
            "put a parameter, constant or `phase.step.outputs.key` inside",
        ));
    }
    if let Some(name) = e.strip_prefix("env:") {
        return if name.is_empty() {
            Err(("`env:` needs a variable name".into(), "write `{{ env:NAME }}`"))
        } else {
            Ok(Reference::Env(name.to_string()))
        };
    }
    if let Some(rest) = e.strip_prefix("aws:ssm:") {
        if let Some(inner) = rest.strip_prefix("resolve(").and_then(|r| r.strip_suffix(')')) {
            let inner = inner.trim();
            return if is_identifier(inner) {
                Ok(Reference::SsmResolve(inner.to_string()))
            } else {
                Err((
                    format!("`aws:ssm:resolve({inner})` needs a parameter name"),
                    "only the name of the SSM parameter can be dynamic: `aws:ssm:resolve(MyParam)`",
                ))
            };
        }
        return if rest.is_empty() {
            Err(("`aws:ssm:` needs a parameter name".into(), "write `{{ aws:ssm:/my/parameter }}`"))
        } else {
            Ok(Reference::Ssm(rest.to_string()))
        };
    }
    if let Some(path) = e.strip_prefix("aws:imds:") {
        return if path.is_empty() {
            Err(("`aws:imds:` needs a metadata path".into(), "e.g. `{{ aws:imds:instance-id }}`"))
        } else {
            Ok(Reference::Imds(path.to_string()))
        };
    }
    if let Some(key) = e.strip_prefix("context:") {
        return if CONTEXT_KEYS.contains(&key) {
            Ok(Reference::Context(key.to_string()))
        } else {
            Err((
                format!("unknown context key `{key}`"),
                "context keys: executionId, accountId, region, osPlatform, osName, osVersion, date, dateTime, uuid, hostname, phase, step",
            ))
        };
    }
    if e.contains(':') {
        return Err((format!("unknown namespace in `{e}`"), "namespaces are env:, aws:ssm:, aws:imds: and context:"));
    }
    let parts: Vec<&str> = e.split('.').collect();
    match parts.as_slice() {
        [name] => {
            if is_identifier(name) {
                Ok(Reference::Variable(name.to_string()))
            } else {
                Err((format!("`{name}` is not a parameter or constant name"), "names use letters, digits, `_` and `-`"))
            }
        }
        [name, field] => {
            let field = match *field {
                "index" => LoopField::Index,
                "value" => LoopField::Value,
                other => {
                    return Err((
                        format!("`{e}`: a loop variable is `.index` or `.value`, not `.{other}`"),
                        "chaining needs four parts: `phase.step.outputs.key`",
                    ));
                }
            };
            let name = if *name == "loop" { None } else { Some(name.to_string()) };
            Ok(Reference::Loop { name, field })
        }
        [phase, step, io, key] => {
            let (io_name, index) = match io.split_once('[') {
                Some((n, idx)) => {
                    let idx = idx
                        .strip_suffix(']')
                        .and_then(|i| i.trim().parse::<usize>().ok())
                        .ok_or((format!("bad index in `{io}`"), "indexes are whole numbers from 0: `inputs[1]`"))?;
                    (n, idx)
                }
                None => (*io, 0),
            };
            let io = match io_name {
                "inputs" => Io::Inputs,
                "outputs" => Io::Outputs,
                other => {
                    return Err((
                        format!("`{e}`: expected `inputs` or `outputs`, found `{other}`"),
                        "chaining is `phase.step.inputs.key` or `phase.step.outputs.key`",
                    ));
                }
            };
            if phase.is_empty() || step.is_empty() || key.is_empty() {
                return Err((format!("`{e}` has an empty part"), "chaining is `phase.step.outputs.key`"));
            }
            Ok(Reference::Chain { phase: phase.to_string(), step: step.to_string(), io, index, key: key.to_string() })
        }
        _ => Err((
            format!("`{e}` is not a valid reference"),
            "use `Name`, `loop.value`, `LoopName.index` or `phase.step.outputs.key` (step names cannot contain `.`)",
        )),
    }
}

/// Parameter and constant names: 3–128 of `[A-Za-z0-9_-]`.
pub fn is_valid_variable_name(n: &str) -> bool {
    (3..=128).contains(&n.len()) && is_identifier(n)
}

fn is_identifier(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Reference {
        match parse(s).unwrap().as_slice() {
            [Segment::Ref(r)] => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn references_of_every_namespace() {
        assert_eq!(one("{{ Name }}"), Reference::Variable("Name".into()));
        assert_eq!(one("{{loop.value}}"), Reference::Loop { name: None, field: LoopField::Value });
        assert_eq!(one("{{ L.index }}"), Reference::Loop { name: Some("L".into()), field: LoopField::Index });
        assert_eq!(
            one("{{ build.Dl.inputs[1].destination }}"),
            Reference::Chain {
                phase: "build".into(),
                step: "Dl".into(),
                io: Io::Inputs,
                index: 1,
                key: "destination".into()
            }
        );
        assert_eq!(one("{{ env:ProgramFiles(x86) }}"), Reference::Env("ProgramFiles(x86)".into()));
        assert_eq!(one("{{ aws:ssm:/a/b }}"), Reference::Ssm("/a/b".into()));
        assert_eq!(one("{{ aws:ssm:resolve(P1) }}"), Reference::SsmResolve("P1".into()));
        assert_eq!(one("{{ context:date }}"), Reference::Context("date".into()));
    }

    #[test]
    fn mixed_text_and_go_templates() {
        let segs = parse("a {{ X }} b {{.Id}}").unwrap();
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[3], Segment::Verbatim("{{.Id}}".into()));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(parse("{{ a.b.c }}").is_err());
        assert!(parse("{{ }}").is_err());
        assert_eq!(parse("{{ X ").unwrap(), vec![Segment::Unclosed("{{ X ".into())], "kept as written");
        assert!(parse("{{ build.s.outputs[x].k }}").is_err());
        assert!(parse("{{ context:nope }}").is_err());
        assert!(parse("{{ a.b.io.k }}").is_err());
    }

    #[test]
    fn variable_name_rules() {
        assert!(!is_valid_variable_name("ab"));
        assert!(is_valid_variable_name("abc"));
        assert!(!is_valid_variable_name("a b c"));
    }
}
