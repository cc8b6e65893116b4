//! Diagnostics for manifests: one `Problem` per thing wrong, all of them
//! gathered into one `InvalidManifest` so a user fixes everything in one go.

use std::sync::{Arc, OnceLock};

use miette::{Diagnostic, LabeledSpan, SourceSpan};

use super::excerpt::{Excerpt, LineIndex};
use crate::yaml::Span;

/// Where a manifest's text came from, shared by every problem that points into it.
#[derive(Clone, Debug)]
pub struct Source {
    /// A path, `builtin:NAME`, or `--manifest-json`.
    pub origin: String,
    pub text: Arc<String>,
    /// Line starts, built on the first problem (a valid manifest never needs them).
    pub(super) index: Arc<OnceLock<LineIndex>>,
}

impl Source {
    pub fn new(origin: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            origin: origin.into(),
            text: Arc::new(text.into()),
            index: Arc::new(OnceLock::new()),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let idx = self.index();
        let line = idx.line_of(offset);
        let line_start = idx.start(line);
        let col = match self.text.get(line_start..offset) {
            Some(s) => s.chars().count(),
            // Not on a character boundary: count the characters started before it.
            None => self.text.as_bytes()[line_start..offset]
                .iter()
                .filter(|&&b| b & 0xC0 != 0x80)
                .count(),
        };
        (line + 1, col + 1)
    }
}

/// One thing wrong with a manifest, pointing at the YAML it is about.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Problem {
    pub message: String,
    /// Where the problem is, 1-based; `None` when it is about the whole document.
    pub line: Option<usize>,
    pub column: Option<usize>,
    #[help]
    pub help: Option<String>,
    #[source_code]
    source_code: Excerpt,
    #[label(collection)]
    labels: Vec<LabeledSpan>,
}

impl Problem {
    pub fn new(
        src: &Source,
        message: String,
        span: Option<Span>,
        label: &str,
        help: Option<String>,
    ) -> Self {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = src.line_col(s.offset());
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        // Primary: the header's file:line:col is this one, not an earlier
        // "first defined here".
        let labels = span
            .map(|s| {
                LabeledSpan::new_primary_with_span(
                    Some(label.to_string()),
                    SourceSpan::from(src.clip_label(s)),
                )
            })
            .into_iter()
            .collect();
        Problem {
            message,
            line,
            column,
            help,
            source_code: Excerpt(src.clone()),
            labels,
        }
    }

    /// Adds a second pointer, e.g. "first defined here".
    pub(crate) fn with_label(mut self, span: Span, label: &str) -> Self {
        self.labels.push(LabeledSpan::new_with_span(
            Some(label.to_string()),
            SourceSpan::from(self.source_code.0.clip_label(span)),
        ));
        self
    }

    /// `file:line:col: message`, the one-line form for logs and plain terminals.
    pub fn short(&self, origin: &str) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{origin}:{l}:{c}: {}", self.message),
            _ => format!("{origin}: {}", self.message),
        }
    }
}

/// Most problems reported for one manifest; the rest are only counted.
/// Past a hundred, more of the same helps nobody, and each one costs time
/// to describe and render (16k unknown keys took 49 s to report).
pub const MAX_PROBLEMS: usize = 100;

/// The problems found in one manifest: all counted, the first
/// `MAX_PROBLEMS` kept.
#[derive(Debug, Default)]
pub struct Problems {
    kept: Vec<Problem>,
    total: usize,
}

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.push_with(|| p);
    }

    /// Counts a problem, and describes it only while there is room.
    pub fn push_with(&mut self, p: impl FnOnce() -> Problem) {
        self.total += 1;
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(p());
        }
    }

    /// Adds `other`'s, after these (keeping the first `MAX_PROBLEMS` of all).
    pub fn extend(&mut self, other: Problems) {
        self.total += other.total;
        let room = MAX_PROBLEMS.saturating_sub(self.kept.len());
        self.kept.extend(other.kept.into_iter().take(room));
    }

    /// True when further problems are only counted: callers can skip the
    /// work of describing them (suggestions, say).
    pub fn full(&self) -> bool {
        self.kept.len() >= MAX_PROBLEMS
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The ones kept, in the order found.
    pub fn shown(&self) -> &[Problem] {
        &self.kept
    }

    /// The error for the manifest in `src`, ending with a line that counts
    /// the problems not shown.
    pub fn into_invalid(self, src: &Source) -> InvalidManifest {
        let mut problems = self.kept;
        let more = self.total - problems.len();
        if more > 0 {
            problems.push(Problem::new(
                src,
                format!(
                    "and {more} more problem{}, not shown (driver reports the first {MAX_PROBLEMS})",
                    if more == 1 { "" } else { "s" }
                ),
                None,
                "",
                None,
            ));
        }
        InvalidManifest {
            origin: src.origin.clone(),
            problems,
            total: self.total,
        }
    }
}

/// A manifest that failed validation, with every problem found.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error(
    "{origin}: invalid manifest ({total} problem{}{})",
    if *total == 1 { "" } else { "s" },
    if *total > MAX_PROBLEMS { format!(", the first {MAX_PROBLEMS} shown") } else { String::new() }
)]
#[diagnostic(code(driver::manifest::invalid))]
pub struct InvalidManifest {
    pub origin: String,
    /// The first `MAX_PROBLEMS` problems, then (when there were more) one
    /// that counts the rest.
    #[related]
    pub problems: Vec<Problem>,
    /// How many problems were found.
    pub total: usize,
}

/// Suggests the closest of `candidates` to a misspelt `word`.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Edit distance is quadratic in the words' lengths (two 20k-character
    // names took 30 s); nobody misspells a name this long.
    const LONGEST: usize = 64;
    if word.len() > LONGEST {
        return None;
    }
    // Short words need the edit distance (jaro-winkler scores "vn"/"vm" low);
    // long ones the similarity score.
    let close = |c: &str| {
        strsim::damerau_levenshtein(word, c) <= 1 + word.len() / 5
            || strsim::jaro_winkler(word, c) > 0.85
    };
    candidates
        .iter()
        .filter(|c| c.len() <= LONGEST && close(c))
        .max_by(|a, b| strsim::jaro_winkler(word, a).total_cmp(&strsim::jaro_winkler(word, b)))
        .copied()
}
