//! A small YAML tree with source positions.
//!
//! Component validation must report *every* problem with its line and column, and some
//! fields (octal permissions such as `0644`) need the scalar's source text rather than its
//! core-schema value. serde-based loaders stop at the first error and resolve scalars early,
//! so documents are first loaded into this tree from the `saphyr-parser` event stream.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos { line: span.start.line(), column: span.start.col() + 1 }
    }
}

/// One node of a loaded document.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar with its source text; `quoted` is false for plain scalars, which are the
    /// only ones the core schema resolves to null, booleans and numbers.
    Scalar {
        text: String,
        quoted: bool,
        /// For a literal block scalar (`|`), where its first line of content starts: its
        /// lines are the source's lines, so an offset in `text` maps back to a position.
        block: Option<Pos>,
    },
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars (complex keys are reported by the loader).
    Map(Vec<(Node, Node)>),
}

/// A syntax error: the document is not YAML, or uses a YAML feature components do not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// True when the cause is an unquoted `{{ … }}` (YAML reads it as a nested flow map).
    pub unquoted_expression: bool,
}

impl SyntaxError {
    fn at(pos: Pos, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos,
            message: message.into(),
            hint: "fix the YAML syntax at this position".into(),
            unquoted_expression: false,
        }
    }
}

/// The core-schema reading of a plain scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// Where byte `offset` of this scalar's text is in the source: exact for single-line
    /// scalars and literal blocks, the scalar's start otherwise.
    pub fn pos_at(&self, offset: usize) -> Pos {
        let Kind::Scalar { text, quoted, block } = &self.kind else { return self.pos };
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or_default();
        match block {
            Some(first) => {
                let line = first.line + before.matches('\n').count();
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
                Pos { line, column: first.column + column }
            }
            None if !text.contains('\n') => {
                Pos { line: self.pos.line, column: self.pos.column + usize::from(*quoted) + before.chars().count() }
            }
            None => self.pos,
        }
    }

    /// How a message shows this value: a scalar quoted, anything else by its kind.
    pub fn shown(&self) -> String {
        match &self.kind {
            Kind::Scalar { .. } => format!("`{}`", self.text().unwrap_or_default()),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a map".into(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) => "null",
                Some(Scalar::Bool(_)) => "boolean",
                Some(Scalar::Int(_)) | Some(Scalar::Float(_)) => "number",
                _ => "string",
            },
            Kind::Seq(_) => "list",
            Kind::Map(_) => "map",
        }
    }

    /// The scalar resolved by the YAML 1.2 core schema (quoted scalars are always strings).
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        let Kind::Scalar { text, quoted, .. } = &self.kind else {
            return None;
        };
        if *quoted {
            return Some(Scalar::Str(text));
        }
        Some(match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            t => {
                if let Some(i) = parse_core_int(t) {
                    Scalar::Int(i)
                } else if let Some(f) = parse_core_float(t) {
                    Scalar::Float(f)
                } else {
                    Scalar::Str(t)
                }
            }
        })
    }

    /// The source text of a scalar, whatever its resolved type.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The text of a scalar that resolves to a string (quoted, or plain and not
    /// null/bool/number).
    pub fn as_str(&self) -> Option<&str> {
        match self.scalar()? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.text() == Some(key)).map(|(_, v)| v)
    }

    /// Converts to JSON the way awstoe hands values to modules: scalars keep their
    /// core-schema type.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, .. } => match self.scalar() {
                Some(Scalar::Null) => Value::Null,
                Some(Scalar::Bool(b)) => Value::Bool(b),
                Some(Scalar::Int(i)) => Value::from(i),
                Some(Scalar::Float(f)) => {
                    serde_json::Number::from_f64(f).map_or_else(|| Value::String(text.clone()), Value::Number)
                }
                _ => Value::String(text.clone()),
            },
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.text().unwrap_or_default().to_string(), v.to_json())).collect(),
            ),
        }
    }
}

fn parse_core_int(t: &str) -> Option<i64> {
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let value = if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn parse_core_float(t: &str) -> Option<f64> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // Core schema: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let re_ok = {
        let b = t.trim_start_matches(['-', '+']);
        let (mant, exp) = match b.find(['e', 'E']) {
            Some(i) => (&b[..i], Some(&b[i + 1..])),
            None => (b, None),
        };
        let mant_ok = match mant.split_once('.') {
            Some((a, f)) => {
                (a.bytes().all(|c| c.is_ascii_digit()) && f.bytes().all(|c| c.is_ascii_digit()))
                    && !(a.is_empty() && f.is_empty())
            }
            None => !mant.is_empty() && mant.bytes().all(|c| c.is_ascii_digit()),
        };
        let exp_ok = exp.is_none_or(|e| {
            let e = e.trim_start_matches(['-', '+']);
            !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
        });
        mant_ok && exp_ok && t.len() - b.len() <= 1
    };
    if re_ok { t.parse().ok() } else { None }
}

/// Loads the first document of a YAML stream. An empty stream is an empty map at 1:1.
pub fn load(source: &str) -> Result<Node, SyntaxError> {
    let mut builder =
        Builder { source, lines: None, stack: Vec::new(), anchors: HashMap::new(), alias_nodes: 0, root: None };
    for item in Parser::new_from_str(source) {
        let (event, span) = match item {
            Ok(e) => e,
            Err(e) => {
                let at = Pos { line: e.marker().line(), column: e.marker().col() + 1 };
                return Err(builder.explain(e.info(), at));
            }
        };
        match event {
            Event::DocumentEnd if builder.root.is_some() => break,
            Event::DocumentStart(_) if builder.root.is_some() => break,
            _ => builder.event(event, &span)?,
        }
    }
    Ok(builder.root.unwrap_or(Node { pos: Pos { line: 1, column: 1 }, kind: Kind::Map(Vec::new()) }))
}

/// Aliases may copy at most this many nodes in one document, so an "alias bomb" (anchors
/// that reference each other exponentially) is an error instead of an out-of-memory.
const MAX_ALIAS_NODES: usize = 100_000;

/// An open collection: the node, its anchor, a key waiting for its value, and (for a map)
/// its keys so far with their lines.
type Open = (Node, usize, Option<Node>, HashMap<String, usize>);

struct Builder<'s> {
    source: &'s str,
    /// Byte offset of each line's start, made when first needed.
    lines: Option<Vec<usize>>,
    /// Open collections: the node, its anchor, a key waiting for its value, and (maps) the
    /// keys so far with their lines — so duplicate keys are found in linear time.
    stack: Vec<Open>,
    anchors: HashMap<usize, (Node, usize)>,
    alias_nodes: usize,
    root: Option<Node>,
}

fn node_count(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(k, v)| node_count(k) + node_count(v)).sum::<usize>(),
    }
}

impl Builder<'_> {
    /// The text of source line `line` (1-based).
    fn line(&mut self, line: usize) -> &str {
        let source = self.source;
        let starts = self
            .lines
            .get_or_insert_with(|| std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect());
        let Some(&start) = starts.get(line.wrapping_sub(1)) else { return "" };
        let end = starts.get(line).map_or(source.len(), |e| e.saturating_sub(1));
        source.get(start..end).unwrap_or_default()
    }

    /// The parser's error in plain words, at the place a person would look.
    fn explain(&mut self, info: &str, at: Pos) -> SyntaxError {
        // The innermost `[` or `{` still open, when the error is about one.
        let open_flow = |b: &mut Self, bracket: char| -> Option<Pos> {
            let positions: Vec<Pos> = b.stack.iter().rev().map(|(n, ..)| n.pos).collect();
            positions.into_iter().find(|p| b.line(p.line).chars().nth(p.column.saturating_sub(1)) == Some(bracket))
        };
        let previous_line = |b: &mut Self| -> Pos {
            let mut l = at.line.saturating_sub(1);
            while l > 1 && (b.line(l).trim().is_empty() || b.line(l).trim_start().starts_with('#')) {
                l -= 1;
            }
            let column = b.line(l).chars().take_while(|c| *c == ' ').count() + 1;
            Pos { line: l.max(1), column }
        };
        let (pos, message, hint) = if info.contains("simple key expect ':'") {
            // The key began on the least indented of the lines without `:` above the
            // error (a plain scalar runs on over more indented lines).
            let mut pos = previous_line(self);
            while pos.line > 1 {
                let above = self.line(pos.line - 1).to_string();
                let indent = above.chars().take_while(|c| *c == ' ').count() + 1;
                if above.trim().is_empty() || above.contains(':') || indent >= pos.column {
                    break;
                }
                pos = Pos { line: pos.line - 1, column: indent };
            }
            let text = self.line(pos.line).trim().to_string();
            (
                pos,
                format!("`{text}` is not `key: value`, but it is inside a map"),
                "add the `: value`, indent it as part of the line above, or make it a list item (`- …`)".to_string(),
            )
        } else if info.contains("flow sequence") || info.contains("flow mapping") {
            let (bracket, close) = if info.contains("flow sequence") { ('[', ']') } else { ('{', '}') };
            let pos = open_flow(self, bracket).unwrap_or(at);
            (
                pos,
                format!("this `{bracket}` is not closed where YAML expected `,` or `{close}`"),
                format!("close it with `{close}`, or quote the whole value if the `{bracket}` is text"),
            )
        } else if info.contains("mapping values are not allowed") {
            (
                at,
                "a `: ` inside an unquoted value makes YAML read a key and a value".to_string(),
                "quote the whole value (e.g. the whole command)".to_string(),
            )
        } else if info.contains("did not find expected key") || info.contains("did not find expected '-'") {
            (
                at,
                "this line does not line up with the keys (or list items) above it".to_string(),
                "indent it like its siblings".to_string(),
            )
        } else if info.contains("block sequence entries are not allowed") {
            (
                at,
                "a `- ` list item where a value was expected".to_string(),
                "put the list on the lines below its key, indented".to_string(),
            )
        } else if info.contains("illegal placement of ':'") {
            let pos = open_flow(self, '[').or_else(|| open_flow(self, '{')).unwrap_or(at);
            let why = if pos == at {
                "quote the value that holds the `:`"
            } else {
                "close the `[` or `{` opened here, or quote the value"
            };
            (pos, "a `:` where YAML cannot take one".to_string(), why.to_string())
        } else if info.contains("tab") {
            (at, "a tab in the indentation".to_string(), "indent with spaces".to_string())
        } else if info.contains("quoted scalar") {
            (
                at,
                "a quoted value is never closed".to_string(),
                "close the quote on the same value, or use a block (`|`) for multi-line text".to_string(),
            )
        } else {
            (at, format!("invalid YAML: {info}"), "fix the YAML syntax at this position".to_string())
        };
        SyntaxError { pos, message, hint, unquoted_expression: false }
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), SyntaxError> {
        let pos = Pos::from_span(span);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                // The event starts at the first non-blank line of content; the text's
                // leading newlines are the blank lines before it.
                let blank = text.chars().take_while(|c| *c == '\n').count();
                let block = matches!(style, ScalarStyle::Literal)
                    .then(|| Pos { line: pos.line.saturating_sub(blank), column: pos.column });
                let node = Node { pos, kind: Kind::Scalar { text: text.into_owned(), quoted, block } };
                self.push_value(node, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Node { pos, kind: Kind::Seq(Vec::new()) }, anchor, None, HashMap::new()))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node { pos, kind: Kind::Map(Vec::new()) }, anchor, None, HashMap::new()))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, anchor, pending, _)) = self.stack.pop() {
                    if let Some(key) = pending {
                        return Err(SyntaxError::at(key.pos, "mapping key without a value"));
                    }
                    self.push_value(node, anchor)?;
                }
            }
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| SyntaxError::at(pos, "alias refers to an unknown anchor"))?;
                self.alias_nodes += size;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError::at(pos, format!("aliases expand to more than {MAX_ALIAS_NODES} nodes")));
                }
                self.push_value(Node { pos, kind: node.kind }, 0)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some((parent, _, pending, keys)) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut parent.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match pending.take() {
                None => {
                    if !matches!(node.kind, Kind::Scalar { .. }) {
                        return Err(SyntaxError {
                            unquoted_expression: matches!(node.kind, Kind::Map(_)),
                            ..SyntaxError::at(node.pos, "only plain or quoted scalars may be mapping keys")
                        });
                    }
                    let key = node.text().unwrap_or_default().to_string();
                    if let Some(first) = keys.get(&key) {
                        return Err(SyntaxError {
                            hint: "set each key once".into(),
                            ..SyntaxError::at(
                                node.pos,
                                format!("duplicate key `{key}` (first defined at line {first})"),
                            )
                        });
                    }
                    keys.insert(key, node.pos.line);
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
            Kind::Scalar { .. } => unreachable!("scalars are never pushed on the stack"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = load("a:\n  b: [1, 'x']\n").unwrap();
        let b = n.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.pos, Pos { line: 2, column: 6 });
        assert_eq!(b.as_seq().unwrap()[1].as_str(), Some("x"));
        assert_eq!(b.as_seq().unwrap()[0].scalar(), Some(Scalar::Int(1)));
    }

    #[test]
    fn octal_looking_scalars_keep_their_text() {
        let n = load("permissions: 0644\n").unwrap();
        let p = n.get("permissions").unwrap();
        assert_eq!(p.text(), Some("0644"));
        assert_eq!(p.scalar(), Some(Scalar::Int(644)));
    }

    #[test]
    fn duplicate_keys_are_errors_with_position() {
        let e = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 3);
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
    }

    #[test]
    fn core_schema_scalars() {
        let n = load("[1.0, '1.0', true, ~, 0x1f, -3, 1e3, abc, .5]").unwrap();
        let s: Vec<_> = n.as_seq().unwrap().iter().map(|n| n.scalar().unwrap()).collect();
        assert_eq!(s[0], Scalar::Float(1.0));
        assert_eq!(s[1], Scalar::Str("1.0"));
        assert_eq!(s[2], Scalar::Bool(true));
        assert_eq!(s[3], Scalar::Null);
        assert_eq!(s[4], Scalar::Int(31));
        assert_eq!(s[5], Scalar::Int(-3));
        assert_eq!(s[6], Scalar::Float(1000.0));
        assert_eq!(s[7], Scalar::Str("abc"));
        assert_eq!(s[8], Scalar::Float(0.5));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = load(&doc).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = load("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.pos.line >= 1);
    }
}
