//! Writing a `Tree` as block-style YAML, the way sops lays files out:
//! ordered keys, sequences indented under their key, multi-line strings as
//! literal blocks, and quotes wherever a plain scalar would read back as
//! something else (a number, a boolean, null, a date, ...).

use std::fmt::Write;

use yaml_rust2::Yaml;

use super::tree::{Kind, Leaf, Tree};

/// Renders `tree` with `indent` spaces per level (sops writes 4; 2 is the
/// site-config's own style).
pub fn to_yaml(tree: &Tree, indent: usize) -> String {
    let mut out = String::new();
    match tree {
        Tree::Map(m) if !m.is_empty() => map(&mut out, m, 0, indent),
        Tree::Seq(s) if !s.is_empty() => seq(&mut out, s, 0, indent),
        other => {
            inline(&mut out, other, 0, indent);
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes `key: value` lines of a block mapping, each starting at `col`
/// (the first line's padding is the caller's when it follows `- `).
fn map(out: &mut String, m: &[(String, Tree)], col: usize, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            pad(out, col);
        }
        scalar_str(out, k, col, indent, true);
        out.push(':');
        value_after_key(out, v, col, indent);
    }
}

fn value_after_key(out: &mut String, v: &Tree, col: usize, indent: usize) {
    match v {
        Tree::Map(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, col + indent);
            map(out, m, col + indent, indent);
        }
        Tree::Seq(s) if !s.is_empty() => {
            out.push('\n');
            pad(out, col + indent);
            seq(out, s, col + indent, indent);
        }
        other => {
            out.push(' ');
            inline(out, other, col, indent);
            out.push('\n');
        }
    }
}

fn seq(out: &mut String, s: &[Tree], col: usize, indent: usize) {
    for (i, item) in s.iter().enumerate() {
        if i > 0 {
            pad(out, col);
        }
        out.push_str("- ");
        match item {
            Tree::Map(m) if !m.is_empty() => map(out, m, col + 2, indent),
            Tree::Seq(s) if !s.is_empty() => seq(out, s, col + 2, indent),
            other => {
                inline(out, other, col, indent);
                out.push('\n');
            }
        }
    }
}

/// A value that fits after `key: ` or `- ` (a scalar, `{}` or `[]`, or a literal block).
fn inline(out: &mut String, v: &Tree, col: usize, indent: usize) {
    match v {
        Tree::Null => out.push_str("null"),
        Tree::Map(_) => out.push_str("{}"),
        Tree::Seq(_) => out.push_str("[]"),
        Tree::Leaf(l) => leaf(out, l, col, indent),
    }
}

fn leaf(out: &mut String, l: &Leaf, col: usize, indent: usize) {
    let t = l.text.expose();
    match l.kind {
        Kind::Str => scalar_str(out, t, col, indent, false),
        Kind::Int | Kind::Bool => out.push_str(t),
        Kind::Float => {
            let f = match t.as_str() {
                "NaN" => ".nan".to_string(),
                "+Inf" => ".inf".to_string(),
                "-Inf" => "-.inf".to_string(),
                // Keep it a float when read back.
                t if !t.contains(['.', 'e', 'E']) => format!("{t}.0"),
                t => t.to_string(),
            };
            out.push_str(&f);
        }
    }
}

fn scalar_str(out: &mut String, s: &str, col: usize, indent: usize, is_key: bool) {
    if !is_key && literal_ok(s) {
        literal(out, s, col + indent);
    } else if needs_quotes(s) {
        double_quoted(out, s);
    } else {
        out.push_str(s);
    }
}

/// Can `s` be a literal block (`|`)? Multi-line, printable, no trailing blanks
/// on its lines, and not starting with a space (which would need an indent indicator).
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.lines().all(|l| !l.ends_with([' ', '\t']))
        && !s.contains('\u{feff}')
}

fn literal(out: &mut String, s: &str, content_col: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(out, content_col);
            out.push_str(line);
        }
    }
    // `|+` keeps the extra newlines as empty lines.
    for _ in 1..trailing.max(1) {
        out.push('\n');
    }
}

fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']) {
        return true;
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}'))
    {
        return true;
    }
    // Indicators at the start, and anything that begins like a number, a date
    // or `.inf`: quoting those is always safe, guessing is not.
    if "-?:,[]{}#&*!|>'\"%@`+.".contains(first) || first.is_ascii_digit() {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return true;
    }
    const WORDS: [&str; 22] = [
        "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", "null", "Null", "NULL", "~", "true", "false",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    !matches!(Yaml::from_str(s), Yaml::String(_))
}

fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn round_trip(src: &str, indent: usize) -> String {
        let t = Tree::from_node(&yaml::parse(src).unwrap()).unwrap();
        let out = to_yaml(&t, indent);
        let back = Tree::from_node(&yaml::parse(&out).unwrap()).unwrap();
        assert_eq!(back, t, "emitted:\n{out}");
        out
    }

    #[test]
    fn values_read_back_the_same() {
        let src = r#"
plain: hello world
num_like: "0x1F"
int: 31
neg: -4
float: 1.5
whole_float: 2.0
bool: true
str_true: "true"
str_yes: "yes"
empty: ""
nul: ~
date: "2024-01-02"
colon: "a: b"
hash: "a #b"
lead: " x"
quote: 'say "hi"'
tab: "a\tb"
multi: "line one\nline two\n"
multi_no_nl: "a\nb"
multi_keep: "a\n\n"
unicode: "héllo"
"key with: colon": v
list: [a, 1, [b, c], {k: v}, []]
nested:
  deeper:
    - x: 1
      y: [2]
  empty_map: {}
"#;
        round_trip(src, 2);
        let out = round_trip(src, 4);
        assert!(out.contains("\nlist:\n    - a\n"), "{out}");
        assert!(
            out.contains("multi: |\n    line one\n    line two\n"),
            "{out}"
        );
    }

    #[test]
    fn matches_the_sops_vector_plaintext_layout() {
        let src = "secrets:\n  SOME SECRET: \"0x629A673A8242c2AC4B7B8C5D8735fbeac21A6205\"\n";
        assert_eq!(round_trip(src, 2), src);
    }
}
