//! Turning manifest text into a `Manifest`, checking everything in one pass.
//!
//! Every problem is collected (never first-error-wins) with a span into the
//! text. The wording of the original driver's checks is kept where users and
//! scripts know it (`Duplicate node name: 'x'`, ...).
//!
//! This module holds the entry point ([`load()`]), the `Checker` that collects
//! the problems, and its readers of typed fields. The conversion of the
//! top level (name, pattern, settings, execution) is in `document`, the
//! schema v2 node list in `nodes` (a node's `features:` in `features`), the schema v1 `levels` in `v1`, and the
//! checks across nodes (names, vmids, parents, depends_on) in `graph`.

mod document;
mod features;
mod graph;
mod nodes;
mod v1;

pub use document::ACCEPTED_KEYS;

use super::problem::{did_you_mean, InvalidManifest, Problem, Problems, Source};
use super::*;
use crate::yaml::{self, Node, Span, Value};
use std::fmt::Display;

/// User text quoted in a message: a key or a name can be 65k characters.
fn short(s: &str) -> std::borrow::Cow<'_, str> {
    yaml::shorten(s, 64)
}

/// A manifest that passed validation, with what is needed to point into it later.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub locations: Vec<NodeLocation>,
    pub source: Source,
    /// The schema version as written (1 means it was converted).
    pub source_version: u32,
    /// Notes for the user (stderr), e.g. the v1 deprecation.
    pub warnings: Vec<String>,
}

/// Parses and validates a manifest, reporting every problem found.
pub fn load(source: Source) -> Result<Loaded, InvalidManifest> {
    // A v2 manifest's nodes are checked and converted one by one while the
    // YAML is parsed, so the whole list is never held as YAML (a 100k-node
    // manifest's tree took 105 MB), by a checker of their own whose
    // problems are reported where the list's would be.
    let mut streamed = Streamed {
        parsed: Vec::new(),
        count: 0,
        problems: Problems::default(),
        warnings: Vec::new(),
    };
    let mut nodes = Checker::new(&source);
    let v2 = |entries: &[(Node, Node)]| {
        entries
            .iter()
            .any(|(k, v)| k.as_str() == Some("schema_version") && v.value == Value::Int(2))
    };
    let mut item = |i: usize, n: Node| {
        if i == 0 {
            // Read again from the start (see `yaml::Stream`).
            streamed.parsed.clear();
            nodes = Checker::new(&source);
        }
        streamed.count = i + 1;
        streamed.parsed.extend(nodes.node(i, n));
    };
    let parsed = yaml::parse_streaming(
        &source.text,
        yaml::Stream {
            key: "nodes",
            ready: &v2,
            item: &mut item,
        },
    );
    streamed.problems = nodes.problems;
    streamed.warnings = nodes.warnings;
    let mut c = Checker::new(&source);
    c.streamed = Some(streamed);
    let result = match parsed {
        Ok(root) => c.manifest(root),
        Err(e) => {
            let problem = match e.first {
                Some(first) => Problem::new(
                    &source,
                    format!("YAML syntax error: {}", e.message),
                    Some(e.span),
                    "defined again here",
                    None,
                )
                .with_label(first, "first defined here"),
                None => Problem::new(
                    &source,
                    format!("YAML syntax error: {}", e.message),
                    Some(e.span),
                    "here",
                    None,
                ),
            };
            c.problems.push(problem);
            None
        }
    };
    match result {
        Some((manifest, locations, source_version)) if c.problems.is_empty() => {
            let warnings = c.warnings;
            Ok(Loaded {
                manifest,
                locations,
                source,
                source_version,
                warnings,
            })
        }
        _ => Err(c.problems.into_invalid(&source)),
    }
}

/// Whom a message is about: `node 'web'`, `node 3`; written out only when there is a
/// problem to report (100k nodes each formatting their own took a tenth of `validate`).
#[derive(Clone, Copy)]
enum Who<'s> {
    /// `node 'NAME'`, `level 'NAME'`.
    Named(&'static str, &'s str),
    /// `Node 3`, `Level 3`.
    Nth(&'static str, usize),
}

impl Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Named(what, name) => write!(f, "{what} '{}'", short(name)),
            Who::Nth(what, i) => write!(f, "{what} {i}"),
        }
    }
}

struct Checker<'a> {
    src: &'a Source,
    problems: Problems,
    warnings: Vec<String>,
    /// The v2 nodes, when converted while parsing.
    streamed: Option<Streamed>,
}

/// Nodes converted while the YAML was parsed (see `load`), with what was
/// found in them.
struct Streamed {
    parsed: Vec<Parsed>,
    /// Items the list had.
    count: usize,
    problems: Problems,
    warnings: Vec<String>,
}

/// A node as parsed, before the graph checks.
struct Parsed {
    spec: NodeSpec,
    /// `None` when `type` was missing or wrong (then `spec.kind` is a placeholder).
    kind: Option<NodeKind>,
    loc: NodeLocation,
    parent_span: Option<Span>,
    depends_spans: Vec<Span>,
}

impl<'a> Checker<'a> {
    fn new(src: &'a Source) -> Self {
        Checker {
            src,
            problems: Problems::default(),
            warnings: Vec::new(),
            streamed: None,
        }
    }

    fn problem(&mut self, msg: String, span: Span, label: &str, help: Option<String>) {
        let src = self.src;
        self.problems
            .push_with(|| Problem::new(src, msg, Some(span), label, help));
    }

    /// "did you mean" among `names`, unless the problem will only be counted
    /// (a suggestion looks at every name).
    fn suggest(&self, word: &str, names: &[&str]) -> Option<String> {
        if self.problems.full() {
            return None;
        }
        did_you_mean(word, names).map(|m| format!("did you mean '{m}'?"))
    }

    fn wrong_type(&mut self, what: &str, expected: &str, node: &Node) {
        self.problem(
            format!("{what} must be {expected}, found {}", node.kind()),
            node.span,
            &format!("expected {expected}"),
            None,
        );
    }

    /// Reports keys that are not in `allowed`, with a suggestion.
    fn check_keys(&mut self, map: &[(Node, Node)], allowed: &[&str], what: impl Display) {
        for (k, _) in map {
            match k.as_str() {
                Some(key) if allowed.contains(&key) => {}
                Some(key) => {
                    // Described only while problems are kept: a file of
                    // 16k unknown keys spent most of its time on suggestions.
                    let src = self.src;
                    self.problems.push_with(|| {
                        let help = match did_you_mean(key, allowed) {
                            Some(s) => format!("did you mean '{s}'?"),
                            None => format!("allowed keys: {}", allowed.join(", ")),
                        };
                        Problem::new(
                            src,
                            format!("Unknown key '{}' in {what}", short(key)),
                            Some(k.span),
                            "unknown key",
                            Some(help),
                        )
                    });
                }
                None => self.wrong_type(&format!("a key in {what}"), "a string", k),
            }
        }
    }

    /// A string field, moved out of the tree (an empty string is left in its place: the
    /// key is still there, its value still a string).
    fn string(
        &mut self,
        parent: &mut Node,
        key: &str,
        what: impl Display,
    ) -> Option<(String, Span)> {
        let v = parent.get_mut(key)?;
        match &mut v.value {
            Value::Str(s) => Some((std::mem::take(s), v.span)),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "a string", v);
                None
            }
        }
    }

    /// A string field, borrowed.
    fn str_ref<'n>(
        &mut self,
        parent: &'n Node,
        key: &str,
        what: impl Display,
    ) -> Option<(&'n str, Span)> {
        let v = parent.get(key)?;
        match &v.value {
            Value::Str(s) => Some((s, v.span)),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "a string", v);
                None
            }
        }
    }

    fn int(&mut self, parent: &Node, key: &str, what: impl Display) -> Option<(i64, Span)> {
        let v = parent.get(key)?;
        match v.value {
            Value::Int(i) => Some((i, v.span)),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "an integer", v);
                None
            }
        }
    }

    fn boolean(&mut self, parent: &Node, key: &str, what: impl Display) -> Option<bool> {
        let v = parent.get(key)?;
        match v.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "true or false", v);
                None
            }
        }
    }

    /// A string field that must be one of `names`.
    fn choice<T>(
        &mut self,
        parent: &Node,
        key: &str,
        what: impl Display + Copy,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let (s, span) = self.str_ref(parent, key, what)?;
        let parsed = parse(s);
        if parsed.is_none() {
            let help = did_you_mean(s, names).map(|m| format!("did you mean '{m}'?"));
            self.problem(
                format!(
                    "Invalid {key} '{}' in {what}: expected one of {}",
                    short(s),
                    names.join(", ")
                ),
                span,
                "not allowed here",
                help,
            );
        }
        parsed
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: impl Display) -> Option<&'n [(Node, Node)]> {
        match node.as_map() {
            Some(m) => Some(m),
            None => {
                self.wrong_type(&what.to_string(), "a mapping", node);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(yaml: &str) -> (Vec<String>, usize) {
        match load(Source::new("m.yaml", yaml)) {
            Ok(_) => (Vec::new(), 0),
            Err(e) => (e.problems.into_iter().map(|p| p.message).collect(), e.total),
        }
    }

    const NODES: &str = "nodes:
  - {name: a, type: vm, colour: red}
  - {name: a, type: vx}
  - [not, a, mapping]
  - {type: vm}
  - {name: b, type: vm, parent: nowhere}
";

    /// Nodes converted while parsing (`schema_version: 2` before `nodes`)
    /// report the same problems, in the same order, as nodes converted from
    /// the whole tree (`schema_version` after `nodes`: not streamed).
    #[test]
    fn streamed_nodes_report_what_the_tree_would() {
        let streamed = format!("schema_version: 2\nbogus: 1\n{NODES}");
        let whole = format!("bogus: 1\n{NODES}schema_version: 2\n");
        let (a, n) = messages(&streamed);
        let (b, m) = messages(&whole);
        assert!(a.len() >= 6, "{a:#?}");
        assert_eq!(a, b);
        assert_eq!(n, m);
        // Both name the missing `name`, then the manifest-wide checks.
        assert!(
            a.iter().any(|p| p.contains("Duplicate node name")),
            "{a:#?}"
        );
    }

    #[test]
    fn a_streamed_list_loads_whole() {
        let yaml = "schema_version: 2\nname: t\nnodes:\n  - {name: a, type: vm}\n  - {name: b, type: vm, depends_on: [a]}\n";
        let l = load(Source::new("m.yaml", yaml)).unwrap();
        let names: Vec<&str> = l.manifest.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.locations.len(), 2);
        assert_eq!(
            messages("schema_version: 2\nname: t\nnodes: []\n").0,
            ["Manifest v2 must have at least one node"]
        );
    }
}
