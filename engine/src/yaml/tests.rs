//! Tests for the spanned YAML tree: spans, aliases and their expansion budget,
//! nesting depth, duplicate keys and multi-document input.

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

/// `levels` levels of `width` aliases, each to the level before.
fn laughs(levels: usize, width: usize) -> String {
    let mut s = format!("l0: &l0 [{}]\n", vec!["lol"; width].join(","));
    for i in 1..levels {
        let refs = vec![format!("*l{}", i - 1); width].join(",");
        s.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    s
}

#[test]
fn alias_expansion_is_capped() {
    // 10^6 strings from 300 bytes: small enough to expand without the
    // cap (so the test fails cleanly without it), far over the budget.
    let src = laughs(6, 10);
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("aliases expand to more than"), "{e:?}");
    // Points at the alias (or the end of the anchored list) where the
    // budget ran out.
    assert!(["*", "]"].contains(&&src[e.span.offset()..][..1]), "{e:?}");
    assert_eq!(e.line, src[..e.span.offset()].matches('\n').count() + 1);
    // The real thing (9 levels of 9, 387 million strings) stops as early.
    let e = parse(&laughs(9, 9)).unwrap_err();
    assert!(e.message.contains("billion laughs"), "{e:?}");
}

#[test]
fn nested_anchors_count_their_copies() {
    // No alias at all, but every level's anchor keeps a copy of a big
    // subtree: 200 levels around 20k values would copy 4 million nodes.
    let mut src = String::new();
    for i in 0..200 {
        src.push_str(&format!("&a{i} ["));
    }
    src.push_str(&vec!["1"; 20_000].join(","));
    src.push_str(&"]".repeat(200));
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("aliases expand to more than"), "{e:?}");
}

#[test]
fn ordinary_aliases_fit_the_budget() {
    // 2000 nodes each reusing a 5-value mapping: 10k copies, well in budget.
    let mut src = String::from("defaults: &d {a: 1, b: 2}\nnodes:\n");
    for i in 0..2000 {
        src.push_str(&format!("  - {{name: n{i}, settings: *d}}\n"));
    }
    let n = parse(&src).unwrap();
    let Value::Seq(items) = &n.get("nodes").unwrap().value else {
        panic!()
    };
    assert_eq!(
        items[1999].get("settings").unwrap().get("b").unwrap().value,
        Value::Int(2)
    );
}

#[test]
fn nesting_is_capped() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(parse(&deep).is_ok());
    // Compact block lists nest one level per two bytes, with no limit of
    // the scanner's; dropping a tree a million deep overflows the stack.
    let src = "- ".repeat(1_000_000) + "x\n";
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("nest more than 256 levels"), "{e:?}");
    assert_eq!(e.line, 1);
}

#[test]
fn duplicate_keys_are_refused_with_both_places() {
    let src = "nodes:\n  - name: a\n    type: vm\n    type: ct\n";
    let e = parse(src).unwrap_err();
    assert_eq!(
        e.message,
        "duplicate key 'type' (first defined at line 3, column 5)"
    );
    assert_eq!((e.line, e.col), (4, 5));
    assert_eq!(&src[e.span.offset()..][..e.span.len()], "type");
    let first = e.first.unwrap();
    assert_eq!(first.offset(), src.find("type").unwrap());
    // `1` and `"1"` are different keys; the same number twice is not.
    assert!(parse("1: a\n'1': b\n").is_ok());
    assert!(parse("{1: a, 1: b}").unwrap_err().message.contains("'1'"));
    // In flow mappings and JSON too.
    assert!(parse(r#"{"a": 1, "a": 2}"#).is_err());
}

#[test]
fn duplicate_keys_in_big_mappings_are_found() {
    // Past the size where the mapping indexes its keys.
    let mut src: String = (0..1000).map(|i| format!("k{i}: 1\n")).collect();
    src.push_str("k3: 2\n");
    let e = parse(&src).unwrap_err();
    assert!(
        e.message
            .starts_with("duplicate key 'k3' (first defined at line 4,"),
        "{e:?}"
    );
    assert_eq!(e.line, 1001);
    // Keys that are themselves long are shortened in the message.
    let long = "k".repeat(10_000);
    let e = parse(&format!("{long}: 1\n{long}: 2\n")).unwrap_err();
    assert!(e.message.len() < 200, "{}", e.message.len());
}

#[test]
fn a_second_document_is_refused() {
    for src in [
        "a: 1\n---\nb: [\n",
        "a: 1\n---\nb: 2\n",
        "---\na: 1\n--- x\n",
    ] {
        let e = parse(src).unwrap_err();
        assert!(
            e.message.starts_with("a second YAML document"),
            "{src:?}: {e:?}"
        );
        let second = src.rfind("---").unwrap();
        assert_eq!(e.span.offset(), second, "{src:?}");
        assert_eq!(e.line, src[..second].matches('\n').count() + 1, "{src:?}");
    }
    // One document, explicitly started or ended, is fine.
    assert!(parse("---\na: 1\n").is_ok());
    assert!(parse("a: 1\n...\n").is_ok());
}

fn count(n: &Node) -> usize {
    1 + match &n.value {
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
        _ => 0,
    }
}

#[test]
fn any_alias_chain_fits_the_budget_or_is_refused() {
    // Every shape of nested aliases up to 9 levels of 12: the tree built
    // never holds more than the document's own nodes plus the budget.
    for levels in 1..=9 {
        for width in 1..=12 {
            let src = laughs(levels, width);
            match parse(&src) {
                Ok(n) => assert!(
                    count(&n) <= src.len() + alias_budget(src.len()),
                    "{levels}x{width}"
                ),
                Err(e) => assert!(
                    e.message.contains("aliases expand to more than"),
                    "{levels}x{width}: {e:?}"
                ),
            }
        }
    }
}

#[test]
fn spans_stay_inside_the_text() {
    // An empty value at the very end used to get a 1-byte span past it.
    for src in ["a:", "a: ", "- ", "[", "a: [1, ", "{a: "] {
        if let Ok(n) = parse(src) {
            let mut stack = vec![&n];
            while let Some(n) = stack.pop() {
                assert!(
                    n.span.offset() + n.span.len() <= src.len(),
                    "{src:?}: {n:?}"
                );
                match &n.value {
                    Value::Seq(items) => stack.extend(items),
                    Value::Map(entries) => stack.extend(entries.iter().flat_map(|(k, v)| [k, v])),
                    _ => {}
                }
            }
        }
    }
}

/// The fast path for plain scalars that start with a letter resolves them
/// as yaml-rust2 does.
#[test]
fn words_resolve_as_yaml_rust2_resolves_them() {
    use yaml_rust2::scanner::TScalarStyle;
    use yaml_rust2::Yaml;
    let words = [
        "null",
        "Null",
        "NULL",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "inf",
        "Infinity",
        "nan",
        "NaN",
        "e5",
        "E5",
        "yes",
        "no",
        "on",
        "pve0",
        "x1.5",
        "debian-12",
        "vm-small",
        "n",
        "t",
        "f",
        "y",
    ];
    for w in words {
        let expected = match Yaml::from_str(w) {
            Yaml::Integer(i) => Value::Int(i),
            Yaml::Real(r) => Value::Float(r.parse().unwrap()),
            Yaml::Boolean(b) => Value::Bool(b),
            Yaml::Null => Value::Null,
            _ => Value::Str(w.to_string()),
        };
        assert_eq!(
            super::builder::scalar(w.to_string(), TScalarStyle::Plain),
            expected,
            "{w}"
        );
    }
}

/// The items of the streamed list are handed on, in order, and left out of
/// the tree; a list that is not ready yet, or elsewhere, is kept.
#[test]
fn a_streamed_list_hands_its_items_on() {
    let ready = |e: &[(Node, Node)]| e.iter().any(|(k, _)| k.as_str() == Some("go"));
    let run = |src: &str| {
        let mut got = Vec::new();
        let mut item = |i: usize, n: Node| got.push((i, n.as_str().map(String::from)));
        let tree = parse_streaming(
            src,
            Stream {
                key: "items",
                ready: &ready,
                item: &mut item,
            },
        )
        .unwrap();
        let kept = match &tree.get("items").unwrap().value {
            Value::Seq(v) => v.len(),
            _ => usize::MAX,
        };
        (got, kept)
    };
    let (got, kept) = run("go: 1\nitems: [a, b]\nother: [c]\n");
    assert_eq!(got, [(0, Some("a".into())), (1, Some("b".into()))]);
    assert_eq!(kept, 0);
    let (got, kept) = run("items: [a, b]\ngo: 1\n");
    assert!(got.is_empty());
    assert_eq!(kept, 2, "not ready: kept");
    let (got, kept) = run("go: 1\nitems: &x [a, b]\nalso: *x\n");
    assert!(got.is_empty());
    assert_eq!(kept, 2, "anchored: kept");
}
