//! A YAML tree that remembers where every value came from.
//!
//! Validation reports point into the user's file, so we cannot use a plain
//! `serde` deserializer: this module builds a small tree from yaml-rust2's
//! marked event stream, with a byte span on every node. JSON is YAML, so the
//! same parser handles `--manifest-json`.

use foldhash::HashMap;

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

    /// Looks a key up in a mapping (keys are unique: `parse` refuses duplicates).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Looks a key up in a mapping, to change its value.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        let Value::Map(entries) = &mut self.value else {
            return None;
        };
        entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Moves a value out of a mapping (leaving null in its place), so big
    /// subtrees can be consumed and freed piece by piece.
    pub fn take(&mut self, key: &str) -> Option<Node> {
        let Value::Map(entries) = &mut self.value else {
            return None;
        };
        let (_, v) = entries.iter_mut().find(|(k, _)| k.as_str() == Some(key))?;
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
    /// For a duplicate key, where it was first defined.
    pub first: Option<Span>,
}

/// At most `max` characters of `s`, with `…` when cut: user text quoted in
/// a message (a key, a name) can be arbitrarily long.
pub fn shorten(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((cut, _)) => format!("{}…", &s[..cut]).into(),
    }
}

/// A scalar mapping key as compared for duplicates (`1` and `"1"` differ).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

impl KeyId {
    fn of(v: &Value) -> Option<KeyId> {
        Some(match v {
            Value::Null => KeyId::Null,
            Value::Bool(b) => KeyId::Bool(*b),
            Value::Int(i) => KeyId::Int(*i),
            Value::Float(f) => KeyId::Float(f.to_bits()),
            Value::Str(s) => KeyId::Str(s.clone()),
            // Lists and mappings as keys are never looked up: not compared.
            Value::Seq(_) | Value::Map(_) => return None,
        })
    }
}

/// Above this many entries a mapping keeps a hash index of its keys, so
/// that checking for duplicates stays linear in the mapping's size.
const INDEX_KEYS_ABOVE: usize = 16;

/// The span of an earlier key of `entries` equal to `key`.
fn earlier_key(
    entries: &[(Node, Node)],
    index: &Option<HashMap<KeyId, Span>>,
    key: &Value,
) -> Option<Span> {
    match index {
        Some(index) => index.get(&KeyId::of(key)?).copied(),
        None => entries
            .iter()
            .find(|(k, _)| same_key(&k.value, key))
            .map(|(k, _)| k.span),
    }
}

/// `KeyId::of(a) == KeyId::of(b)`, without copying the strings.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Str(x), Value::Str(y)) => x == y,
        _ => false,
    }
}

/// Nodes that anchors and aliases may copy in one document, per byte of
/// the document on top of a fixed allowance. A few nested aliases can
/// otherwise expand exponentially ("billion laughs": 9 levels of 9 aliases
/// in 500 bytes are 387 million strings); real files copy a small multiple
/// of their own size at most.
const ALIAS_NODES_PER_BYTE: usize = 16;
const ALIAS_NODES_MIN: usize = 10_000;
/// The fixed ceiling, whatever the size: about 100 MB of tree.
const ALIAS_NODES_MAX: usize = 1_000_000;

/// Deepest nesting of lists and mappings. Manifests and site-config files
/// nest a few levels; a tree thousands deep would overflow the stack when
/// dropped or walked recursively.
const MAX_NESTING: usize = 256;

/// How many nodes anchors and aliases may copy in a document of `len` bytes.
fn alias_budget(len: usize) -> usize {
    len.saturating_mul(ALIAS_NODES_PER_BYTE)
        .saturating_add(ALIAS_NODES_MIN)
        .min(ALIAS_NODES_MAX)
}

/// Parses one YAML document. An empty document is `Value::Null`.
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    parse_inner(src, None)
}

/// Whether the top-level mapping's entries so far let a list stream.
pub type Ready = dyn Fn(&[(Node, Node)]) -> bool;

/// Hands the items of one big list on as soon as each is parsed, instead
/// of keeping them in the tree: the list under `key` in the top-level
/// mapping, when `ready` accepts the entries before it. The list stays in
/// the tree, empty. So a 100k-node manifest is never held whole as YAML.
pub struct Stream<'f> {
    pub key: &'f str,
    pub ready: &'f Ready,
    /// Each item with its index in the list. Index 0 a second time means
    /// the list is read again from its start (the fast reader gave up on
    /// the document): forget the items handed on before.
    pub item: &'f mut dyn FnMut(usize, Node),
}

/// [`parse`], with the items of one list handed to `stream` (see [`Stream`]).
pub fn parse_streaming(src: &str, stream: Stream<'_>) -> Result<Node, SyntaxError> {
    parse_inner(src, Some(stream))
}

fn parse_inner(src: &str, mut stream: Option<Stream<'_>>) -> Result<Node, SyntaxError> {
    match fast::parse(src, stream.as_mut()) {
        Ok(root) => Ok(root),
        Err(fast::Unsupported) => parse_events(src, stream),
    }
}

/// The whole of YAML, through yaml-rust2's events (see `builder`).
fn parse_events(src: &str, stream: Option<Stream<'_>>) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        stream,
        stack: Vec::new(),
        root: None,
        anchors: HashMap::default(),
        copied: 0,
        budget: alias_budget(src.len()),
        error: None,
        offsets: Offsets::new(src),
    };
    let mut parser = Parser::new_from_str(src);
    let mut documents = 0;
    // Events are pulled one by one (not `Parser::load`, which recurses per
    // nesting level) so that a problem found by the builder ends the parse.
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let m = e.marker();
            SyntaxError {
                message: e.info().to_string(),
                span: Span::new(builder.offsets.byte(m.index()), 0),
                line: m.line(),
                col: m.col() + 1,
                first: None,
            }
        })?;
        match ev {
            Event::StreamEnd => break,
            // What follows a second `---` was ignored, even when broken.
            Event::DocumentStart if documents > 0 => {
                return Err(SyntaxError {
                    message: "a second YAML document starts here; driver reads one document \
                              per file"
                        .into(),
                    span: Span::new(builder.offsets.byte(mark.index()), 3),
                    line: mark.line(),
                    col: mark.col() + 1,
                    first: None,
                })
            }
            Event::DocumentStart => documents += 1,
            _ => {}
        }
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        span: Span::default(),
    }))
}

mod builder;
mod fast;

use builder::{Builder, Offsets};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fast;
