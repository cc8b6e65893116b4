//! A direct reader for the block-YAML subset that manifests are written in:
//! block mappings and lists (indentless lists and `- key: value` items
//! too), one-line plain and quoted scalars, comments, one leading `---`.
//!
//! Why: yaml-rust2 turns every scalar into tokens and events before the
//! builder sees it; for a 100k-node manifest that was most of `validate`'s
//! time. This reader builds the same [`Node`] tree straight from the bytes.
//!
//! It gives up ([`Unsupported`]) on anything else (flow collections,
//! anchors, tags, block scalars, multi-line scalars, escapes, tabs,
//! non-ASCII text, a second document) and on every error, and yaml-rust2
//! reads the document instead: so errors are worded by one parser only,
//! and the tree, spans included, is the same whichever read it (a
//! differential test in `tests_fast.rs` holds it to that).

use std::borrow::Cow;

use super::builder::plain;
use super::*;

/// The document is outside the subset (or broken): read it with yaml-rust2.
#[derive(Debug)]
pub(super) struct Unsupported;

type R<T> = Result<T, Unsupported>;

/// Reads `src`, handing the streamed list's items to `stream` (see
/// [`Stream`]). Items may have been handed on before it gives up.
pub(super) fn parse(src: &str, stream: Option<&mut Stream<'_>>) -> R<Node> {
    // One pass, so that nothing below has to think about characters. By
    // chunks without a branch per byte, which the compiler vectorises.
    let printable = |b: &u8| (*b == b'\n') | (0x20..0x7f).contains(b);
    if !src
        .as_bytes()
        .chunks(64)
        .all(|c| c.iter().fold(true, |ok, b| ok & printable(b)))
    {
        return Err(Unsupported);
    }
    let mut r = Reader {
        src: src.as_bytes(),
        text: src,
        next: None,
        depth: 0,
        stream,
    };
    r.goto(0, true)?;
    let Some(line) = r.next else {
        return Err(Unsupported);
    };
    let root = r.block(line)?;
    match r.next {
        None => Ok(root),
        Some(_) => Err(Unsupported),
    }
}

/// A line with content (not blank, not only a comment).
#[derive(Clone, Copy, Debug)]
struct Line {
    start: usize,
    indent: usize,
}

impl Line {
    fn content(self) -> usize {
        self.start + self.indent
    }
}

struct Reader<'s, 'a, 'f> {
    src: &'s [u8],
    text: &'s str,
    /// The next line with content, where reading goes on.
    next: Option<Line>,
    /// Lists and mappings open.
    depth: usize,
    stream: Option<&'a mut Stream<'f>>,
}

/// A scalar as read: its text, where it starts, and where reading stopped
/// (after a closing quote, or where a plain scalar ended, before its
/// trailing spaces).
struct Scalar<'s> {
    text: Cow<'s, str>,
    quoted: Option<TScalarStyle>,
    at: usize,
    stop: usize,
}

impl Reader<'_, '_, '_> {
    fn byte(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(b'\n')
    }

    /// A space, a line break or the end of the text.
    fn blank(&self, i: usize) -> bool {
        matches!(self.byte(i), b' ' | b'\n')
    }

    /// Where yaml-rust2 puts the token after a value: the next content, or
    /// the end of the text. Collections end there, empty values sit there.
    fn mark(&self) -> usize {
        self.next.map_or(self.src.len(), Line::content)
    }

    fn span(&self, start: usize, len: usize) -> Span {
        let end = start.saturating_add(len.max(1)).min(self.src.len());
        Span::new(start, end.saturating_sub(start))
    }

    /// Moves to the first line with content at or after `pos` (a line's
    /// start). `first`: a `---` line may open the document.
    fn goto(&mut self, mut pos: usize, mut first: bool) -> R<()> {
        let len = self.src.len();
        self.next = loop {
            if pos >= len {
                break None;
            }
            let mut i = pos;
            while self.byte(i) == b' ' && i < len {
                i += 1;
            }
            if i >= len {
                break None;
            }
            match self.src[i] {
                b'\n' => pos = i + 1,
                b'#' => pos = self.line_end(i),
                _ if i == pos && self.document_marker(i) => {
                    if !first || !self.src[i..].starts_with(b"---") {
                        return Err(Unsupported);
                    }
                    first = false;
                    pos = self.rest_of_line(i + 3)?;
                }
                _ => {
                    break Some(Line {
                        start: pos,
                        indent: i - pos,
                    })
                }
            }
        };
        Ok(())
    }

    /// `---` or `...` at the start of a line, on their own.
    fn document_marker(&self, i: usize) -> bool {
        (self.src[i..].starts_with(b"---") || self.src[i..].starts_with(b"..."))
            && self.blank(i + 3)
    }

    /// The start of the line after the one holding `i`.
    fn line_end(&self, i: usize) -> usize {
        self.src[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.src.len(), |n| i + n + 1)
    }

    /// What follows a value on its line may only be spaces and a comment:
    /// the start of the next line.
    fn rest_of_line(&self, mut i: usize) -> R<usize> {
        while self.byte(i) == b' ' && i < self.src.len() {
            i += 1;
        }
        match self.byte(i) {
            b'\n' => Ok((i + 1).min(self.src.len())),
            // A comment needs a space before it.
            b'#' if i > 0 && self.src[i - 1] == b' ' => Ok(self.line_end(i)),
            _ => Err(Unsupported),
        }
    }

    /// Where yaml-rust2's token for the `-` at `dash` ends: after the
    /// spaces and a comment that follow it.
    fn entry_mark(&self, dash: usize) -> usize {
        let mut i = dash + 1;
        while self.byte(i) == b' ' && i < self.src.len() {
            i += 1;
        }
        if self.byte(i) == b'#' {
            i = self.line_end(i);
            if self.src.get(i.wrapping_sub(1)) == Some(&b'\n') {
                i -= 1;
            }
        }
        i.min(self.src.len())
    }

    /// `- ` (or `-` alone) at `i`: a list entry.
    fn entry(&self, i: usize) -> bool {
        self.byte(i) == b'-' && self.blank(i + 1)
    }

    /// After a value at `at`, on a line of its own: a comment and spaces,
    /// then the next line. What starts deeper than `indent` there would
    /// continue the value over lines.
    fn end_value(&mut self, stop: usize, indent: usize) -> R<()> {
        let next = self.rest_of_line(stop)?;
        self.goto(next, false)?;
        match self.next {
            Some(l) if l.indent > indent => Err(Unsupported),
            _ => Ok(()),
        }
    }

    fn scalar(&self, at: usize) -> R<Scalar<'_>> {
        match self.src[at] {
            b'\'' => {
                let mut text = Cow::Borrowed("");
                let mut from = at + 1;
                loop {
                    let close = from
                        + self.src[from..]
                            .iter()
                            .position(|&b| b == b'\'' || b == b'\n')
                            .ok_or(Unsupported)?;
                    if self.src[close] == b'\n' {
                        return Err(Unsupported);
                    }
                    let piece = &self.text[from..close];
                    if self.byte(close + 1) == b'\'' {
                        let t = text.to_mut();
                        t.push_str(piece);
                        t.push('\'');
                        from = close + 2;
                        continue;
                    }
                    match &mut text {
                        Cow::Borrowed(_) => text = Cow::Borrowed(piece),
                        Cow::Owned(t) => t.push_str(piece),
                    }
                    return Ok(Scalar {
                        text,
                        quoted: Some(TScalarStyle::SingleQuoted),
                        at,
                        stop: close + 1,
                    });
                }
            }
            b'"' => {
                let close = at
                    + 1
                    + self.src[at + 1..]
                        .iter()
                        .position(|&b| matches!(b, b'"' | b'\\' | b'\n'))
                        .ok_or(Unsupported)?;
                if self.src[close] != b'"' {
                    return Err(Unsupported);
                }
                Ok(Scalar {
                    text: Cow::Borrowed(&self.text[at + 1..close]),
                    quoted: Some(TScalarStyle::DoubleQuoted),
                    at,
                    stop: close + 1,
                })
            }
            b'-' if !self.blank(at + 1) => self.plain(at),
            b'-' | b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!'
            | b'|' | b'>' | b'%' | b'@' | b'`' | b' ' | b'\n' => Err(Unsupported),
            _ => self.plain(at),
        }
    }

    /// A plain scalar ends at `: `, at ` #` or at the end of the line.
    fn plain(&self, at: usize) -> R<Scalar<'_>> {
        let mut i = at;
        loop {
            match self.byte(i) {
                b'\n' => break,
                b':' if self.blank(i + 1) => break,
                b' ' if self.byte(i + 1) == b'#' => break,
                _ => i += 1,
            }
            if i >= self.src.len() {
                break;
            }
        }
        let mut end = i;
        while end > at && self.src[end - 1] == b' ' {
            end -= 1;
        }
        Ok(Scalar {
            text: Cow::Borrowed(&self.text[at..end]),
            quoted: None,
            at,
            stop: i,
        })
    }

    /// `s` followed by `:` and a blank: a mapping key (`key :` is left to
    /// yaml-rust2).
    fn is_key(&self, s: &Scalar<'_>) -> bool {
        self.byte(s.stop) == b':'
            && self.blank(s.stop + 1)
            && (s.quoted.is_some() || s.at + s.text.len() == s.stop)
    }

    fn node(&self, s: Scalar<'_>) -> Node {
        let (len, style) = match s.quoted {
            Some(style) => (s.text.len() + 2, style),
            None => (s.text.len(), TScalarStyle::Plain),
        };
        let span = self.span(s.at, len);
        let value = match style {
            TScalarStyle::Plain => plain(&s.text),
            _ => None,
        };
        Node {
            value: value.unwrap_or_else(|| Value::Str(s.text.into_owned())),
            span,
        }
    }

    fn open(&mut self) -> R<()> {
        self.depth += 1;
        // The builder's cap, with room: at the cap yaml-rust2 words the error.
        if self.depth >= MAX_NESTING - 1 {
            return Err(Unsupported);
        }
        Ok(())
    }

    /// The list or mapping starting on `line`.
    fn block(&mut self, line: Line) -> R<Node> {
        let at = line.content();
        if self.entry(at) {
            self.list(line.indent, at, false, false)
        } else {
            self.mapping(line.indent, at)
        }
    }

    /// A value that continues on the lines after its key or `-` (nothing
    /// else on that line), under a collection at `indent`. `as_map_value`:
    /// a list may start at `indent` itself. `streamed`: a list here is the
    /// streamed one (see [`Self::streams`]).
    fn value_below(
        &mut self,
        stop: usize,
        indent: usize,
        as_map_value: bool,
        streamed: bool,
    ) -> R<Node> {
        let next = self.rest_of_line(stop)?;
        self.goto(next, false)?;
        match self.next {
            Some(l) if l.indent > indent => {
                if streamed && self.entry(l.content()) {
                    self.list(l.indent, l.content(), false, true)
                } else {
                    self.block(l)
                }
            }
            Some(l) if as_map_value && l.indent == indent && self.entry(l.content()) => {
                self.list(l.indent, l.content(), true, streamed)
            }
            // An empty item before the next `-` of its list sits where that
            // `-` token ends; anything else after the next token's start.
            Some(l) if l.indent == indent && self.entry(l.content()) => Ok(Node {
                value: Value::Null,
                span: self.span(self.entry_mark(l.content()), 1),
            }),
            _ => Ok(Node {
                value: Value::Null,
                span: self.span(self.mark(), 1),
            }),
        }
    }

    fn mapping(&mut self, indent: usize, first: usize) -> R<Node> {
        self.open()?;
        let root = self.depth == 1;
        // Room for a manifest node's keys at once, rather than growing to it.
        let mut entries: Vec<(Node, Node)> = Vec::with_capacity(8);
        let mut index: Option<HashMap<KeyId, Span>> = None;
        let mut at = first;
        loop {
            let key = self.scalar(at)?;
            if !self.is_key(&key) {
                return Err(Unsupported);
            }
            let after = key.stop + 1;
            let key = self.node(key);
            if earlier_key(&entries, &index, &key.value).is_some() {
                return Err(Unsupported);
            }
            let mut v = after;
            while self.byte(v) == b' ' && v < self.src.len() {
                v += 1;
            }
            let value = if matches!(self.byte(v), b'\n' | b'#') {
                let streamed = root && self.streams(&entries, &key);
                self.value_below(v, indent, true, streamed)?
            } else {
                let s = self.scalar(v)?;
                if self.is_key(&s) {
                    return Err(Unsupported);
                }
                let stop = s.stop;
                let node = self.node(s);
                self.end_value(stop, indent)?;
                node
            };
            if let Some(index) = &mut index {
                if let Some(id) = KeyId::of(&key.value) {
                    index.insert(id, key.span);
                }
            }
            entries.push((key, value));
            if index.is_none() && entries.len() > INDEX_KEYS_ABOVE {
                index = Some(
                    entries
                        .iter()
                        .filter_map(|(k, _)| Some((KeyId::of(&k.value)?, k.span)))
                        .collect(),
                );
            }
            match self.next {
                Some(l) if l.indent == indent && !self.entry(l.content()) => at = l.content(),
                Some(l) if l.indent >= indent => return Err(Unsupported),
                _ => break,
            }
        }
        self.depth -= 1;
        // A few spare entries are kept: most mappings are converted and
        // freed at once, and reallocating each cost more than the room.
        if entries.capacity() - entries.len() > 4 {
            entries.shrink_to_fit();
        }
        let end = self.mark();
        Ok(Node {
            value: Value::Map(entries),
            span: self.span(first, end.saturating_sub(first)),
        })
    }

    /// Whether a list under `key` in the root mapping, after `entries`, is
    /// the streamed one (as the builder decides it).
    fn streams(&self, entries: &[(Node, Node)], key: &Node) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| key.as_str() == Some(s.key) && (s.ready)(entries))
    }

    /// A list at `indent` whose first `-` is at `first`. `indentless`: the
    /// value of a mapping's key at the same indentation (it ends at the
    /// next key). `streamed`: its items go to the stream.
    fn list(&mut self, indent: usize, first: usize, indentless: bool, streamed: bool) -> R<Node> {
        self.open()?;
        let mut items = Vec::new();
        let mut dash = first;
        let mut count = 0;
        // yaml-rust2 starts an indentless list where its first `-` token
        // ends, not at the `-`.
        let start = if indentless {
            self.entry_mark(first)
        } else {
            first
        };
        loop {
            let line_start = dash - indent;
            let mut v = dash + 1;
            while self.byte(v) == b' ' && v < self.src.len() {
                v += 1;
            }
            let item = if matches!(self.byte(v), b'\n' | b'#') {
                self.value_below(v, indent, false, false)?
            } else {
                let s = self.scalar(v)?;
                if self.is_key(&s) {
                    self.mapping(v - line_start, v)?
                } else {
                    let stop = s.stop;
                    let node = self.node(s);
                    self.end_value(stop, indent)?;
                    node
                }
            };
            match self.stream.as_mut().filter(|_| streamed) {
                Some(s) => (s.item)(count, item),
                None => items.push(item),
            }
            count += 1;
            match self.next {
                Some(l) if l.indent == indent && self.entry(l.content()) => dash = l.content(),
                Some(l) if l.indent == indent && indentless => break,
                Some(l) if l.indent >= indent => return Err(Unsupported),
                _ => break,
            }
        }
        self.depth -= 1;
        items.shrink_to_fit();
        let end = self.mark();
        Ok(Node {
            value: Value::Seq(items),
            span: self.span(start, end.saturating_sub(start)),
        })
    }
}
