//! A seeded mutation fuzzer for the YAML loader and the manifest validator.
//!
//! Deterministic (fixed seed, fixed iteration count): it takes the
//! repository's manifests and site-config files, mutates them with YAML's
//! own tokens (anchors, aliases, document markers, flow brackets, long
//! runs, multi-byte characters, ...) and checks, for every mutant, that
//! - `yaml::parse` returns (no panic) and every node's span is inside the text;
//! - `manifest::load` returns, and every problem's labels are inside the
//!   text on character boundaries, with the line:column of its own span;
//! - the report renders (miette's graphical handler, as the binary prints
//!   it) without panicking, in bounded size.

use std::path::Path;

use engine::catalog;
use engine::manifest::{self, InvalidManifest, Source, MAX_PROBLEMS};
use engine::yaml::{self, Node, Value};
use miette::Diagnostic;

const SEED: u64 = 0x5eed_d71e_7a11_0012;
const ITERATIONS: usize = 4_000;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Pieces of YAML syntax (and trouble) to splice in.
const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "? ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "[*a, *a, *a]",
    "---\n",
    "...\n",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "  ",
    "    ",
    "\t",
    "'",
    "\"",
    "#",
    "|\n",
    ">-\n",
    "!!str ",
    "!x ",
    "~",
    "null",
    "true",
    "1e999",
    "0x1F",
    "-0",
    "99999999999999999999",
    "é",
    "→",
    "\u{feff}",
    "\r\n",
    "\\",
    "%YAML 1.2\n",
    "<<: *a\n",
    "name: ",
    "type: vm",
    "type: ct",
    "parent: ",
    "nodes:\n",
    "schema_version: 2\n",
    "levels:\n",
    "vmid: 100",
    "depends_on: [",
    "- {name: x}\n",
];

fn corpus() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out: Vec<(String, String)> = catalog::BUILTIN
        .iter()
        .map(|(n, t)| (format!("builtin:{n}"), t.to_string()))
        .collect();
    let mut stack = vec![
        root.join("tests/fixtures/reference-manifests"),
        root.join("tests/fixtures/site-config"),
    ];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.display().to_string(), text));
            }
        }
    }
    assert!(out.len() > 20, "{} files", out.len());
    out
}

fn char_floor(s: &[u8], mut i: usize) -> usize {
    // Mutations work on bytes; cut only between characters so that most
    // mutants stay UTF-8 (the rest go through from_utf8_lossy).
    while i > 0 && i < s.len() && (s[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = char_floor(&b, rng.below(b.len() + 1));
        match rng.below(8) {
            0 | 1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
            2 => {
                let end = char_floor(&b, (at + rng.below(40)).min(b.len()));
                b.drain(at..end.max(at));
            }
            3 => {
                // Repeat a piece: long lines, many keys, deep nesting.
                let end = char_floor(&b, (at + 1 + rng.below(20)).min(b.len()));
                let piece = b[at..end.max(at)].to_vec();
                let times = [2, 10, 100, 1_000][rng.below(4)];
                let rep: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                b.splice(at..at, rep);
            }
            4 => b.truncate(at),
            5 => {
                // A line somewhere else again (duplicate keys, nodes).
                let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                b.splice(at..at, line.into_iter().chain(std::iter::once(b'\n')));
            }
            6 => {
                if at < b.len() {
                    const SIGILS: &[u8] = b" :-[]{}&*!|>'\"#\n\t,?%@`";
                    b[at] = SIGILS[rng.below(SIGILS.len())];
                }
            }
            _ if rng.below(3) == 0 => {
                // A long run: past column 65535 now and then.
                let n = [80, 300, 5_000, 66_000][rng.below(4)];
                b.splice(at..at, std::iter::repeat_n(b'x', n));
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn check_spans(node: &Node, len: usize, path: &str) {
    let s = node.span;
    assert!(s.offset() + s.len() <= len, "{path}: span {s:?} past {len}");
    match &node.value {
        Value::Seq(items) => items.iter().for_each(|n| check_spans(n, len, path)),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            check_spans(k, len, path);
            check_spans(v, len, path);
        }),
        _ => {}
    }
}

fn check_problems(e: &InvalidManifest, src: &Source, what: &str) {
    assert!(e.total >= e.problems.len().min(MAX_PROBLEMS), "{what}");
    assert!(e.problems.len() <= MAX_PROBLEMS + 1, "{what}");
    let text = src.text.as_str();
    for p in &e.problems {
        let Some(labels) = p.labels() else { continue };
        for (i, l) in labels.enumerate() {
            let (off, len) = (l.offset(), l.len());
            assert!(
                off + len <= text.len(),
                "{what}: {:?} label past the end",
                p.message
            );
            assert!(
                text.is_char_boundary(off) && text.is_char_boundary(off + len),
                "{what}: {:?} label not on a character boundary",
                p.message
            );
            assert!(
                !text[off..off + len].contains('\n'),
                "{what}: label over lines"
            );
            if i == 0 {
                assert_eq!(
                    (p.line, p.column),
                    {
                        let (l, c) = src.line_col(off);
                        (Some(l), Some(c))
                    },
                    "{what}: {:?}",
                    p.message
                );
            }
        }
    }
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, e)
        .unwrap();
    // A hundred problems of a few bounded lines each, whatever the input.
    assert!(out.len() < 400_000, "{what}: {} bytes of report", out.len());
}

#[test]
fn mutated_yaml_never_panics_and_points_inside_the_text() {
    let corpus = corpus();
    let mut rng = Rng(SEED);
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..ITERATIONS {
        let (name, text) = &corpus[rng.below(corpus.len())];
        let mutant = mutate(&mut rng, text);
        let what = format!("iteration {i} ({name})");
        match yaml::parse(&mutant) {
            Ok(root) => {
                parsed += 1;
                check_spans(&root, mutant.len(), &what);
            }
            Err(e) => {
                refused += 1;
                assert!(
                    e.span.offset() + e.span.len() <= mutant.len(),
                    "{what}: {e:?}"
                );
                assert!(!e.message.is_empty(), "{what}");
            }
        }
        let src = Source::new(name.clone(), mutant);
        if let Err(e) = manifest::load(src.clone()) {
            check_problems(&e, &src, &what);
        }
    }
    // The mutations must exercise both sides.
    assert!(
        parsed > ITERATIONS / 10 && refused > ITERATIONS / 10,
        "{parsed} parsed, {refused} refused"
    );
}
