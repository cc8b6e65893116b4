//! Building the spanned tree from yaml-rust2's events: frames for open
//! lists and mappings, duplicate keys, the alias budget, the nesting cap,
//! character-to-byte offsets, scalar resolution, and the streamed list
//! (see [`super::Stream`]).

use super::*;

pub(super) enum Frame {
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
pub(super) struct Offsets<'s> {
    src: &'s str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl<'s> Offsets<'s> {
    pub(super) fn new(src: &'s str) -> Self {
        Offsets {
            src,
            ascii: src.is_ascii(),
            chars: 0,
            bytes: 0,
        }
    }

    pub(super) fn byte(&mut self, char_index: usize) -> usize {
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

pub(super) struct Builder<'s, 'f> {
    pub(super) stream: Option<Stream<'f>>,
    pub(super) stack: Vec<Frame>,
    pub(super) root: Option<Node>,
    /// Each anchored node with its size in nodes.
    pub(super) anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied so far for anchors and aliases, and the limit.
    pub(super) copied: usize,
    pub(super) budget: usize,
    pub(super) error: Option<SyntaxError>,
    pub(super) offsets: Offsets<'s>,
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

pub(super) fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    plain(&text).unwrap_or(Value::Str(text))
}

/// What a plain scalar resolves to when it is not a string (null, a
/// boolean, a number), as yaml-rust2 resolves it; `None`: a string.
pub(super) fn plain(text: &str) -> Option<Value> {
    // Most plain scalars are names and words: one starting with a letter is
    // a string unless it is a boolean or null (yaml-rust2's resolution,
    // which would copy the text to say so; numbers start otherwise).
    if text.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return match text {
            "null" => Some(Value::Null),
            "true" | "True" | "TRUE" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" => Some(Value::Bool(false)),
            _ => None,
        };
    }
    // Decimal digits are what yaml-rust2 makes an integer of when they fit
    // (`str::parse`), without its copy.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse() {
            return Some(Value::Int(i));
        }
    }
    match Yaml::from_str(text) {
        Yaml::Integer(i) => Some(Value::Int(i)),
        Yaml::Real(r) => r.parse().map(Value::Float).ok(),
        Yaml::Boolean(b) => Some(Value::Bool(b)),
        Yaml::Null => Some(Value::Null),
        _ => None,
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
