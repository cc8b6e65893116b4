//! The fast reader against yaml-rust2 (`parse_events`): wherever the fast
//! reader takes a document, both give the same tree, spans included; where
//! yaml-rust2 finds an error, the fast reader gives up. Over the
//! repository's YAML files, generated documents of the subset and their
//! mutants. Each group also checks that the fast reader took a share of
//! its documents, so that "gave up on everything" cannot pass.

use std::path::{Path, PathBuf};

use super::*;

/// Compares both readers on `src`; whether the fast one took it.
fn same(src: &str, what: &str) -> bool {
    let slow = parse_events(src, None);
    match fast::parse(src, None) {
        Ok(tree) => {
            assert_eq!(
                slow.as_ref(),
                Ok(&tree),
                "{what}: the readers differ on\n{src}"
            );
            true
        }
        Err(_) => false,
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() && !name.starts_with('.') && name != "target" && name != "bench-out" {
            yaml_files(&p, out);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(p);
        }
    }
}

#[test]
fn the_repositorys_yaml_files_read_alike() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() > 30, "found {} YAML files", files.len());
    let mut taken = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        taken += usize::from(same(&text, &f.display().to_string()));
    }
    // Most of them are in the subset (the rest use flow lists, block
    // scalars or non-ASCII comments).
    assert!(taken * 2 > files.len(), "{taken} of {} taken", files.len());
}

#[test]
fn the_subsets_shapes_read_alike() {
    let cases = [
        "a: 1\n",
        "a: 1",
        "---\na: 1\n",
        "# c\n---  # c\n\na: 1\n",
        "a:\n  b: x\n  c: 'y'\nd: \"z\"\n",
        "a:\n- 1\n- 2\nb: 3\n",
        "a:\n  - 1\n  -\n  - x: 1\n    y: 2\n  -  # c\n  - 3\n",
        "- a: 1\n  b:\n  - x\n- c:\n    d: 1\n",
        "-\n  a: 1\n-\n- x\n",
        "a:\nb:\n  # c\nc:\n",
        "a: 'it''s'\nb: ''\nc: \"\"\n",
        "a: b #c\nd: e#f\ng: http://h:1/p\n",
        "1: a\ntrue: b\nnull: c\n'1': d\n",
        "a: -1\nb: 0x1F\nc: 1.5\nd: 1e3\ne: ~\nf: True\ng: .inf\n",
        "a:\n  b:\n    c:\n      - d\n# end\n",
        "a: 1   \nb:   \n  c: 2   # x\n",
        "  a: 1\n  b: 2\n",
        "a: --- x\nb: - x\n",
        "a:\n  --- x: 1\n",
        "- - 3\n",
        "-\n  # c\n- x # c",
        "a:\n- # c\n- b",
    ];
    for c in cases {
        same(c, "case");
    }
    // The subset proper: each of these must be taken.
    for c in &cases[..17] {
        assert!(fast::parse(c, None).is_ok(), "not taken:\n{c}");
    }
}

#[test]
fn errors_and_the_rest_of_yaml_are_left_to_yaml_rust2() {
    for c in [
        "a: 1\na: 2\n",
        "a: [1, 2]\n",
        "a: {b: 1}\n",
        "a: &x 1\nb: *x\n",
        "a: !t 1\n",
        "a: |\n  x\n",
        "a: b\n  c\n",
        "a: \"x\\ny\"\n",
        "a:\tb\n",
        "a: é\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\n...\n",
        "a: b: c\n",
        "a: 1\n- x\n",
        "a:\n  - x\n  b: 1\n",
        "a : 1\n",
        "? a\n: 1\n",
        "x\n",
        "",
        "# only\n",
        "a: 'x\n  y'\n",
    ] {
        assert!(fast::parse(c, None).is_err(), "taken:\n{c}");
    }
}

/// xorshift64*: deterministic documents.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const KEYS: &[&str] = &[
    "name", "type", "vmid", "a", "b-c", "x_y", "'q k'", "\"dq\"", "1", "true", "-k", "k#1",
];
const SCALARS: &[&str] = &[
    "vm",
    "debian-12",
    "a b",
    "x:y",
    "http://h:1/p",
    "-5",
    "1.5",
    "0x1F",
    "1e3",
    "true",
    "False",
    "null",
    "~",
    "'it''s'",
    "'s'",
    "\"d q\"",
    "''",
    "\"\"",
    "a#b",
];
/// Outside the subset: picked now and then.
const TROUBLE: &[&str] = &["- x", "[a]", "é", "a: b", "&x y", "|"];

fn filler(rng: &mut Rng, out: &mut String) {
    match rng.below(8) {
        0 => out.push('\n'),
        1 => {
            out.push_str(&" ".repeat(rng.below(6)));
            out.push_str("# note\n");
        }
        _ => {}
    }
}

fn line_end(rng: &mut Rng, out: &mut String) {
    match rng.below(6) {
        0 => out.push_str("  "),
        1 => out.push_str(" # c"),
        _ => {}
    }
    out.push('\n');
    filler(rng, out);
}

/// A mapping at `indent`; `inline`: its first key goes where `out` ends.
fn mapping(rng: &mut Rng, out: &mut String, indent: usize, depth: usize, inline: bool) {
    for i in 0..1 + rng.below(4) {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(rng.pick(KEYS));
        out.push(':');
        value(rng, out, indent, depth, true);
    }
}

fn list(rng: &mut Rng, out: &mut String, indent: usize, depth: usize) {
    for _ in 0..1 + rng.below(4) {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        if depth < 4 && rng.below(3) == 0 {
            let gap = 1 + rng.below(2);
            out.push_str(&" ".repeat(gap));
            mapping(rng, out, indent + 1 + gap, depth + 1, true);
        } else {
            value(rng, out, indent, depth, false);
        }
    }
}

/// What follows a key's `:` or a `-`.
fn value(rng: &mut Rng, out: &mut String, indent: usize, depth: usize, in_map: bool) {
    match if depth < 4 { rng.below(6) } else { 0 } {
        0..=2 => {
            out.push(' ');
            let from = if rng.below(30) == 0 { TROUBLE } else { SCALARS };
            out.push_str(rng.pick(from));
            line_end(rng, out);
        }
        3 => line_end(rng, out),
        4 => {
            line_end(rng, out);
            let deeper = indent + 1 + rng.below(3);
            mapping(rng, out, deeper, depth + 1, false);
        }
        _ => {
            line_end(rng, out);
            let step = if in_map {
                rng.below(3)
            } else {
                1 + rng.below(2)
            };
            list(rng, out, indent + step, depth + 1);
        }
    }
}

fn document(rng: &mut Rng) -> String {
    let mut out = String::new();
    filler(rng, &mut out);
    if rng.below(4) == 0 {
        out.push_str("---\n");
    }
    if rng.below(4) == 0 {
        list(rng, &mut out, 0, 0);
    } else {
        mapping(rng, &mut out, 0, 0, false);
    }
    if rng.below(4) == 0 {
        out.pop();
    }
    out
}

#[test]
fn generated_documents_and_their_mutants_read_alike() {
    let mut rng = Rng(0x0fa5_7ead_e75e_ed01);
    let (mut docs, mut taken, mut mutants_taken) = (0, 0, 0);
    for _ in 0..3000 {
        let doc = document(&mut rng);
        docs += 1;
        taken += usize::from(same(&doc, "generated"));
        // A few bytes inserted or removed, the way typos go.
        let mut m = doc.into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(m.len() + 1);
            match rng.below(3) {
                0 if at < m.len() => {
                    m.remove(at);
                }
                _ => m.insert(at, *b" :-#'\"\n".get(rng.below(7)).unwrap_or(&b' ')),
            }
        }
        let m = String::from_utf8(m).unwrap_or_default();
        mutants_taken += usize::from(same(&m, "mutant"));
    }
    assert!(
        taken * 3 > docs,
        "{taken} of {docs} generated documents taken"
    );
    assert!(
        mutants_taken * 10 > docs,
        "{mutants_taken} of {docs} mutants taken"
    );
}

/// The streamed list's items arrive the same from both readers; when the
/// fast one gives up midway, the list is handed on again from index 0.
#[test]
fn streamed_items_read_alike_and_restart_from_zero() {
    let ready = |e: &[(Node, Node)]| e.iter().any(|(k, _)| k.as_str() == Some("go"));
    let run = |src: &str, fast_only: bool| {
        let mut got = Vec::new();
        let mut item = |i: usize, n: Node| got.push((i, n));
        let stream = Stream {
            key: "items",
            ready: &ready,
            item: &mut item,
        };
        let tree = if fast_only {
            fast::parse(src, Some(&mut { stream })).ok()
        } else {
            parse_streaming(src, stream).ok()
        };
        (tree, got)
    };
    let src = "go: 1\nitems:\n- a: 1\n- b\nrest: 2\n";
    let (tree, got) = run(src, true);
    assert!(tree.is_some());
    let slow = {
        let mut got = Vec::new();
        let mut item = |i: usize, n: Node| got.push((i, n));
        let tree = parse_events(
            src,
            Some(Stream {
                key: "items",
                ready: &ready,
                item: &mut item,
            }),
        )
        .ok();
        (tree, got)
    };
    assert_eq!((tree, got), slow);
    // The third item is a flow list: items 0 and 1 came twice, then 2.
    let (tree, got) = run("go: 1\nitems:\n  - a\n  - b\n  - [c]\n", false);
    assert!(tree.is_some());
    let idx: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, [0, 1, 0, 1, 2]);
}
