//! What of a manifest's text a diagnostic shows: a few lines around each
//! problem, never the whole file, and never a whole very long line.
//!
//! miette's own `SourceCode` for strings scans from the start of the text
//! for every label (quadratic with thousands of problems), shows every line
//! a label spans (a label over a whole `/etc/shadow`-like file echoes it),
//! and its renderer panics when a label starts past column 65535 (a
//! formatting width is 16 bits). `Excerpt` reads through a line index and
//! hands miette bounded windows instead; `clip_label` keeps each label on
//! one line and short.

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::problem::Source;
use crate::yaml::Span;

/// Lines longer than this (in bytes) are shown as a window around the
/// label, without context lines.
const MAX_LINE: usize = 240;
/// Bytes shown on each side of a label in a long line.
const WINDOW: usize = 80;
/// Longest label underline, in bytes.
const MAX_LABEL: usize = 120;
/// Most lines one snippet may show (miette joins the contexts of labels on
/// neighbouring lines into one snippet).
const MAX_SNIPPET_LINES: usize = 12;

/// Byte offsets of line starts, built once per source when first needed.
#[derive(Debug)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// 0-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    pub(crate) fn start(&self, line: usize) -> usize {
        self.starts[line]
    }

    /// Where `line` ends: before its newline (`\r\n` too), or at the end.
    fn end(&self, line: usize, text: &str) -> usize {
        let end = self
            .starts
            .get(line + 1)
            .map_or(text.len(), |&next| next - 1);
        if end > self.starts[line] && text.as_bytes()[end - 1] == b'\r' {
            end - 1
        } else {
            end
        }
    }

    /// Where the data of a snippet ending with `line` ends: after its newline.
    fn end_with_newline(&self, line: usize, text: &str) -> usize {
        self.starts.get(line + 1).copied().unwrap_or(text.len())
    }

    fn lines(&self) -> usize {
        self.starts.len()
    }
}

impl Source {
    pub(crate) fn index(&self) -> &LineIndex {
        self.index.get_or_init(|| LineIndex::new(&self.text))
    }

    /// A label's span, kept on its first line and at most `MAX_LABEL` bytes.
    pub(crate) fn clip_label(&self, span: Span) -> Span {
        let text = self.text.as_str();
        let start = floor_boundary(text, span.offset().min(text.len()));
        let idx = self.index();
        let line_end = idx.end(idx.line_of(start), text);
        let end = (start + span.len())
            .min(line_end.max(start))
            .min(start + MAX_LABEL);
        Span::new(start, floor_boundary(text, end) - start)
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The source of a `Problem`'s snippet, from which miette only ever gets
/// bounded windows.
#[derive(Clone)]
pub(super) struct Excerpt(pub(super) Source);

/// Not derived: a problem's `{:?}` must not print the whole file.
impl std::fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Excerpt({}, {} bytes)", self.0.origin, self.0.text.len())
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text = self.0.text.as_str();
        let idx = self.0.index();
        let start = span.offset();
        let end = start.saturating_add(span.len());
        if end > text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let l0 = idx.line_of(start);
        let l1 = idx.line_of(end.saturating_sub(1).max(start));
        if l1 - l0 >= MAX_SNIPPET_LINES {
            return Err(MietteError::OutOfBounds);
        }
        let first = l0.saturating_sub(before);
        let last = (l1 + after).min(idx.lines() - 1);
        let short = (first..=last).all(|l| idx.end(l, text) - idx.start(l) <= MAX_LINE);
        let (from, to, line) = if short {
            // As miette's own reader: whole lines, or from the span's start
            // when no context is asked for (that gives the header's column).
            let from = if before == 0 { start } else { idx.start(first) };
            (from, idx.end_with_newline(last, text), first)
        } else if l1 == l0 && end - start <= MAX_LINE {
            // One long line: a window around the span, no context lines.
            let (ls, le) = (idx.start(l0), idx.end(l0, text));
            let from = if before == 0 {
                start
            } else {
                floor_boundary(text, start.saturating_sub(WINDOW).max(ls))
            };
            let to = ceil_boundary(text, (end.max(start + 1) + WINDOW).min(le).max(start));
            (from, to, l0)
        } else {
            // Two labels far apart on a long line: miette shows them apart.
            return Err(MietteError::OutOfBounds);
        };
        // Without context after, miette's reader stops at the span's end.
        let to = if after == 0 {
            ceil_boundary(text, end.max(start + 1).min(text.len()))
        } else {
            to
        };
        let column = from - idx.start(line);
        let lines = idx.line_of(to.saturating_sub(1).max(from)) - line + 1;
        Ok(Box::new(MietteSpanContents::new_named(
            self.0.origin.clone(),
            &text.as_bytes()[from..to],
            (from, to - from).into(),
            line,
            column,
            lines,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excerpt(text: &str) -> Excerpt {
        Excerpt(Source::new("t", text))
    }

    fn read(e: &Excerpt, offset: usize, len: usize, ctx: usize) -> (String, usize, usize) {
        let c = e.read_span(&(offset, len).into(), ctx, ctx).unwrap();
        (
            String::from_utf8(c.data().to_vec()).unwrap(),
            c.line(),
            c.column(),
        )
    }

    #[test]
    fn short_lines_read_like_miette() {
        let text = "a: 1\nb: 2\nc: 3\nd: 4\n";
        let e = excerpt(text);
        assert_eq!(read(&e, 5, 1, 1), ("a: 1\nb: 2\nc: 3\n".into(), 0, 0));
        assert_eq!(read(&e, 13, 1, 0), ("3".into(), 2, 3));
        // Where miette's own reader agrees, so do we.
        for (off, len, ctx) in [(5, 1, 1), (13, 1, 0), (0, 4, 1), (15, 4, 1)] {
            let ours = e.read_span(&(off, len).into(), ctx, ctx).unwrap();
            let theirs = text.read_span(&(off, len).into(), ctx, ctx).unwrap();
            assert_eq!(ours.data(), theirs.data(), "{off} {len} {ctx}");
            assert_eq!(ours.line(), theirs.line());
            assert_eq!(ours.column(), theirs.column());
        }
    }

    #[test]
    fn long_lines_are_windows() {
        let line = format!("k: {}X{}", "a".repeat(100_000), "b".repeat(100_000));
        let text = format!("top: 1\n{line}\nend: 1\n");
        let e = excerpt(&text);
        let x = text.find('X').unwrap();
        let (data, line_no, col) = read(&e, x, 1, 1);
        assert!(data.len() <= 2 * WINDOW + 1, "{}", data.len());
        assert!(data.contains('X'));
        assert_eq!(line_no, 1);
        assert_eq!(col, x - 7 - WINDOW);
        // The header's column is the label's.
        assert_eq!(read(&e, x, 1, 0).2, x - 7);
    }

    #[test]
    fn labels_stay_on_one_short_line() {
        let text = "x: ".to_string() + &"é".repeat(500) + "\nnext\n";
        let e = excerpt(&text);
        let s = e.0.clip_label(Span::new(0, text.len()));
        assert_eq!(s.offset(), 0);
        assert!(s.len() <= MAX_LABEL && text.is_char_boundary(s.len()));
        let s = e.0.clip_label(Span::new(0, 2));
        assert_eq!(s.len(), 2);
        // A label that starts at a line's end is an empty (point) label.
        let s = e.0.clip_label(Span::new(text.find('\n').unwrap(), 5));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn snippets_never_span_many_lines() {
        let text = "a\n".repeat(100);
        let e = excerpt(&text);
        assert!(e.read_span(&(0, 100).into(), 1, 1).is_err());
        assert!(e.read_span(&(0, 10).into(), 1, 1).is_ok());
    }
}
