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
    let id = KeyId::of(key)?;
    match index {
        Some(index) => index.get(&id).copied(),
        None => entries
            .iter()
            .find(|(k, _)| KeyId::of(&k.value).as_ref() == Some(&id))
            .map(|(k, _)| k.span),
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
    /// Each item with its index in the list.
    pub item: &'f mut dyn FnMut(usize, Node),
}

/// [`parse`], with the items of one list handed to `stream` (see [`Stream`]).
pub fn parse_streaming(src: &str, stream: Stream<'_>) -> Result<Node, SyntaxError> {
    parse_inner(src, Some(stream))
}

fn parse_inner(src: &str, stream: Option<Stream<'_>>) -> Result<Node, SyntaxError> {
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

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
        /// Nodes in this subtree so far, itself included.
        nodes: usize,
        /// Items handed to the stream so far, if this is its list.
        streamed: Option<usize>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        nodes: usize,
        /// The keys' spans, once there are more than `INDEX_KEYS_ABOVE`.
        index: Option<HashMap<KeyId, Span>>,
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

struct Builder<'s, 'f> {
    stream: Option<Stream<'f>>,
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Each anchored node with its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied so far for anchors and aliases, and the limit.
    copied: usize,
    budget: usize,
    error: Option<SyntaxError>,
    offsets: Offsets<'s>,
}

impl Builder<'_, '_> {
    /// Whether a list opening now is the stream's: the value of its key in
    /// the top-level mapping, once `ready` accepts what came before.
    fn streams_here(&self) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        match self.stack.as_slice() {
            [Frame::Map {
                entries,
                key: Some(k),
                ..
            }] => k.as_str() == Some(stream.key) && (stream.ready)(entries),
            _ => false,
        }
    }

    /// `size` is the number of nodes in `node` (itself included).
    fn push_value(&mut self, node: Node, size: usize, anchor: usize, mark: Marker) {
        if anchor > 0 {
            // The copy kept for later aliases costs as much as one alias:
            // nested anchors would otherwise copy a big tree once per level.
            if !self.copy(size, mark) {
                return;
            }
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq {
                items,
                nodes,
                streamed,
                ..
            }) => {
                *nodes += size;
                match (streamed, &mut self.stream) {
                    (Some(i), Some(stream)) => {
                        (stream.item)(*i, node);
                        *i += 1;
                    }
                    _ => items.push(node),
                }
            }
            Some(Frame::Map {
                entries,
                key,
                nodes,
                index,
                ..
            }) => {
                *nodes += size;
                match key.take() {
                    None => {
                        if let Some(first) = earlier_key(entries, index, &node.value) {
                            let name = match &node.value {
                                Value::Str(s) => shorten(s, 60).into_owned(),
                                Value::Int(i) => i.to_string(),
                                Value::Float(f) => f.to_string(),
                                Value::Bool(b) => b.to_string(),
                                _ => "null".into(),
                            };
                            self.duplicate(name, first, node.span, mark);
                            return;
                        }
                        *key = Some(node);
                    }
                    Some(k) => {
                        if let Some(index) = index {
                            if let Some(id) = KeyId::of(&k.value) {
                                index.insert(id, k.span);
                            }
                        }
                        entries.push((k, node));
                        if index.is_none() && entries.len() > INDEX_KEYS_ABOVE {
                            *index = Some(
                                entries
                                    .iter()
                                    .filter_map(|(k, _)| Some((KeyId::of(&k.value)?, k.span)))
                                    .collect(),
                            );
                        }
                    }
                }
            }
        }
    }

    /// A key defined twice in one mapping: both places are reported (YAML
    /// loaders differ on which one wins, and `type: vm` silently becoming
    /// `type: ct` is worse than an error).
    fn duplicate(&mut self, name: String, first: Span, again: Span, mark: Marker) {
        let before = &self.offsets.src[..first.offset().min(self.offsets.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.fail(
            format!("duplicate key '{name}' (first defined at line {line}, column {col})"),
            again,
            mark,
        );
        if let Some(e) = &mut self.error {
            e.first = Some(first);
        }
    }

    /// Counts `size` copied nodes against the budget; false (and an error)
    /// when that goes over it.
    fn copy(&mut self, size: usize, mark: Marker) -> bool {
        self.copied = self.copied.saturating_add(size);
        if self.copied <= self.budget {
            return true;
        }
        let span = Span::new(self.offsets.byte(mark.index()), 1);
        self.fail(
            format!(
                "anchors and aliases expand to more than {} values, the limit for a document of \
                 {} bytes (is this a \"billion laughs\" file?)",
                self.budget,
                self.offsets.src.len()
            ),
            span,
            mark,
        );
        false
    }

    /// Records the first problem; the parse stops after this event.
    fn fail(&mut self, message: String, span: Span, mark: Marker) {
        self.error.get_or_insert(SyntaxError {
            message,
            span,
            line: mark.line(),
            col: mark.col() + 1,
            first: None,
        });
    }

    /// A node's span: at least one byte (miette underlines it), but never
    /// past the end of the text (an empty value at the very end).
    fn span(&self, start: usize, len: usize) -> Span {
        let end = start.saturating_add(len.max(1)).min(self.offsets.src.len());
        Span::new(start, end.saturating_sub(start))
    }

    fn open(&mut self, frame: Frame, at: usize, mark: Marker) {
        if self.stack.len() >= MAX_NESTING {
            self.fail(
                format!("lists and mappings nest more than {MAX_NESTING} levels deep"),
                Span::new(at, 1),
                mark,
            );
            return;
        }
        self.stack.push(frame);
    }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    // Most plain scalars are names and words: one starting with a letter is
    // a string unless it is a boolean or null (yaml-rust2's resolution,
    // which would copy the text to say so; numbers start otherwise).
    if text.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return match text.as_str() {
            "null" => Value::Null,
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ => Value::Str(text),
        };
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => Value::Int(i),
        Yaml::Real(r) => r.parse().map(Value::Float).unwrap_or(Value::Str(r)),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::Str(text),
    }
}

impl MarkedEventReceiver for Builder<'_, '_> {
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
                    span: self.span(at, len),
                };
                self.push_value(node, 1, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => {
                // An anchored list is copied whole for its aliases: kept.
                let streamed = (anchor == 0 && self.streams_here()).then_some(0);
                self.open(
                    Frame::Seq {
                        start: at,
                        anchor,
                        items: Vec::new(),
                        nodes: 1,
                        streamed,
                    },
                    at,
                    mark,
                )
            }
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    start: at,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    nodes: 1,
                    index: None,
                },
                at,
                mark,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, size) = match self.stack.pop() {
                    Some(Frame::Seq {
                        start,
                        anchor,
                        mut items,
                        nodes,
                        ..
                    }) => {
                        items.shrink_to_fit();
                        (
                            Node {
                                value: Value::Seq(items),
                                span: self.span(start, at.saturating_sub(start)),
                            },
                            anchor,
                            nodes,
                        )
                    }
                    Some(Frame::Map {
                        start,
                        anchor,
                        mut entries,
                        nodes,
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
                                span: self.span(start, at.saturating_sub(start)),
                            },
                            anchor,
                            nodes,
                        )
                    }
                    None => return,
                };
                self.push_value(node, size, anchor, mark);
            }
            Event::Alias(id) => {
                let span = Span::new(at, 1);
                let Some(&(_, size)) = self.anchors.get(&id) else {
                    self.fail("alias refers to an unknown anchor".into(), span, mark);
                    return;
                };
                // Counted before the copy is made.
                if !self.copy(size, mark) {
                    return;
                }
                if let Some((n, _)) = self.anchors.get(&id) {
                    let mut n = n.clone();
                    n.span = span;
                    self.push_value(n, size, 0, mark);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
