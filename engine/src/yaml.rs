//! A YAML tree that remembers where every value came from.
//!
//! Validation reports point into the user's file, so we cannot use a plain
//! `serde` deserializer: this module builds a small tree from yaml-rust2's
//! marked event stream, with a byte span on every node. JSON is YAML, so the
//! same parser handles `--manifest-json`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// A byte range in the source text. 32-bit, because a 100k-node manifest
/// has over a million of them (sources over 4 GiB are clamped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    offset: u32,
    len: u32,
}

impl Span {
    pub fn new(offset: usize, len: usize) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span {
            offset: clamp(offset),
            len: clamp(len),
        }
    }

    pub fn offset(self) -> usize {
        self.offset as usize
    }

    pub fn len(self) -> usize {
        self.len as usize
    }

    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.offset(), s.len()).into()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own spans so "unknown key" can point at the key.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    /// What kind of value this is, in the words a user would use.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries of a mapping, or `None` for anything else.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks a key up in a mapping (last one wins, as in most YAML loaders).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Moves a value out of a mapping (leaving null in its place), so big
    /// subtrees can be consumed and freed piece by piece.
    pub fn take(&mut self, key: &str) -> Option<Node> {
        let Value::Map(entries) = &mut self.value else {
            return None;
        };
        let (_, v) = entries
            .iter_mut()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))?;
        let span = v.span;
        Some(std::mem::replace(
            v,
            Node {
                value: Value::Null,
                span,
            },
        ))
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    pub line: usize,
    pub col: usize,
}

/// Parses one YAML document. An empty document is `Value::Null`.
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        error: None,
        offsets: Offsets::new(src),
    };
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, false).map_err(|e| {
        let m = e.marker();
        SyntaxError {
            message: e.info().to_string(),
            span: Span::new(builder.offsets.byte(m.index()), 0),
            line: m.line(),
            col: m.col() + 1,
        }
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        span: Span::default(),
    }))
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// yaml-rust2 marks positions in characters; miette wants bytes. Events
/// arrive in source order, so a forward-moving cursor makes this O(n) overall.
struct Offsets<'s> {
    src: &'s str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl<'s> Offsets<'s> {
    fn new(src: &'s str) -> Self {
        Offsets {
            src,
            ascii: src.is_ascii(),
            chars: 0,
            bytes: 0,
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.src.len());
        }
        if char_index < self.chars {
            self.chars = 0;
            self.bytes = 0;
        }
        for c in self.src[self.bytes..].chars() {
            if self.chars == char_index {
                break;
            }
            self.chars += 1;
            self.bytes += c.len_utf8();
        }
        self.bytes
    }

    /// Byte length of `n` characters starting at byte `at`.
    fn byte_len(&self, at: usize, n: usize) -> usize {
        if self.ascii {
            return n.min(self.src.len().saturating_sub(at));
        }
        self.src[at..].chars().take(n).map(char::len_utf8).sum()
    }
}

struct Builder<'s> {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
    offsets: Offsets<'s>,
}

impl Builder<'_> {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => Value::Int(i),
        Yaml::Real(r) => r.parse().map(Value::Float).unwrap_or(Value::Str(r)),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::Str(text),
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = self.offsets.byte(mark.index());
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                let chars = text.chars().count() + if quoted { 2 } else { 0 };
                let len = self.offsets.byte_len(at, chars);
                let node = Node {
                    value: scalar(text, style),
                    span: Span::new(at, len.max(1)),
                };
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                start: at,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: at,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        start,
                        anchor,
                        mut items,
                    }) => {
                        items.shrink_to_fit();
                        (
                            Node {
                                value: Value::Seq(items),
                                span: Span::new(start, at.saturating_sub(start).max(1)),
                            },
                            anchor,
                        )
                    }
                    Some(Frame::Map {
                        start,
                        anchor,
                        mut entries,
                        ..
                    }) => {
                        entries.shrink_to_fit();
                        // A block mapping's start mark lands after its first
                        // key; the key itself is where a reader looks.
                        let start = entries
                            .first()
                            .map_or(start, |(k, _)| k.span.offset().min(start));
                        (
                            Node {
                                value: Value::Map(entries),
                                span: Span::new(start, at.saturating_sub(start).max(1)),
                            },
                            anchor,
                        )
                    }
                    None => return,
                };
                self.push_value(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let mut n = n.clone();
                    n.span = Span::new(at, 1);
                    self.push_value(n, 0);
                }
                None => {
                    self.error.get_or_insert(SyntaxError {
                        message: "alias refers to an unknown anchor".into(),
                        span: Span::new(at, 1),
                        line: mark.line(),
                        col: mark.col() + 1,
                    });
                }
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values() {
        let src = "a: 1\nb:\n  - x\n  - 'y'\nc: true\n";
        let n = parse(src).unwrap();
        let b = n.get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("b is {:?}", b.value)
        };
        let text = |n: &Node| &src[n.span.offset()..][..n.span.len()];
        assert_eq!(text(&items[0]), "x");
        assert_eq!(text(&items[1]), "'y'");
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn json_is_yaml() {
        let n = parse(r#"{"name": "x", "nodes": [{"vmid": 100}]}"#).unwrap();
        assert_eq!(n.get("name").unwrap().as_str(), Some("x"));
    }

    #[test]
    fn non_ascii_offsets_are_bytes() {
        let src = "d: \"héllo wörld\"\nname: zz\n";
        let n = parse(src).unwrap();
        let s = n.get("name").unwrap().span;
        assert_eq!(&src[s.offset()..s.offset() + s.len()], "zz");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn aliases_resolve() {
        let n = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(n.get("b").unwrap().get("k").unwrap().value, Value::Int(1));
    }
}
