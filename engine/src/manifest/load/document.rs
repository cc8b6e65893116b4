//! The top level of a manifest: the schema version, its keys, name, pattern,
//! `settings` and `execution`, and the assembly of the `Manifest` from the
//! converted nodes once they have been checked. Which node list is read (v2
//! `nodes` or v1 `levels`) is decided here.

use super::Checker;
use crate::manifest::{
    ExecMode, Manifest, ManifestExecution, NodeLocation, OnError, Pattern, Problem, Settings,
    SUPPORTED_SCHEMA_VERSIONS,
};
use crate::yaml::{Node, Span, Value};

const TOP_KEYS_V2: [&str; 7] = [
    "schema_version",
    "name",
    "description",
    "pattern",
    "execution",
    "nodes",
    "settings",
];
const TOP_KEYS_V1: [&str; 5] = [
    "schema_version",
    "name",
    "description",
    "levels",
    "settings",
];
const EXECUTION_KEYS: [&str; 1] = ["default_mode"];
const SETTINGS_KEYS: [&str; 4] = [
    "verify_ssh",
    "cleanup_on_failure",
    "timeout_buffer",
    "on_error",
];

/// The keys a schema v2 manifest may have, by where they are: what the
/// loader accepts (anything else is refused with a hint), for tests that
/// check that each one acts.
pub const ACCEPTED_KEYS: [(&str, &[&str]); 5] = [
    ("manifest", &TOP_KEYS_V2),
    ("settings", &SETTINGS_KEYS),
    ("execution", &EXECUTION_KEYS),
    ("node", &super::nodes::NODE_KEYS),
    ("node.execution", &super::nodes::NODE_EXECUTION_KEYS),
];

impl<'a> Checker<'a> {
    pub(super) fn manifest(
        &mut self,
        mut root: Node,
    ) -> Option<(Manifest, Vec<NodeLocation>, u32)> {
        let Some(top) = root.as_map() else {
            let span = if root.span.is_empty() {
                Span::new(0, self.src.text.len().min(1))
            } else {
                root.span
            };
            self.problem(
                format!(
                    "Manifest must be a YAML mapping (object), found {}",
                    root.kind()
                ),
                span,
                "expected a mapping",
                Some("a manifest starts with `schema_version: 2`, `name:` and `nodes:`".into()),
            );
            return None;
        };

        // A file with none of a manifest's keys (a wrong path: a config
        // file, /etc/shadow) is one problem, not one per line of the file.
        let known = |k: &Node| {
            k.as_str()
                .is_some_and(|k| TOP_KEYS_V2.contains(&k) || TOP_KEYS_V1.contains(&k))
        };
        if !top.is_empty() && !top.iter().any(|(k, _)| known(k)) {
            self.problem(
                "Not a manifest: none of its top-level keys is a manifest's".into(),
                top[0].0.span,
                "not a manifest key",
                Some("a manifest starts with `schema_version: 2`, `name:` and `nodes:`".into()),
            );
            return None;
        }

        let version = match root.get("schema_version") {
            None => {
                self.problems.push(Problem::new(
                    self.src,
                    "Manifest missing required field: schema_version".into(),
                    Some(Span::new(root.span.offset(), 0)),
                    "expected here",
                    Some("add `schema_version: 2` at the top".into()),
                ));
                // Keep checking the rest as the version it looks like.
                if root.get("levels").is_some() {
                    1
                } else {
                    2
                }
            }
            Some(v) => {
                match v.value {
                    Value::Int(i) if SUPPORTED_SCHEMA_VERSIONS.contains(&i) => i,
                    Value::Int(i) => {
                        self.problem(
                        format!("Unsupported manifest schema version: {i}. Supported versions: [1, 2]"),
                        v.span,
                        "unsupported",
                        None,
                    );
                        return None;
                    }
                    _ => {
                        self.wrong_type("schema_version", "an integer", v);
                        return None;
                    }
                }
            }
        };

        let keys: &[&str] = if version == 1 {
            &TOP_KEYS_V1
        } else {
            &TOP_KEYS_V2
        };
        self.check_keys(top, keys, "manifest");
        let root = &mut root;

        let name = match self.string(root, "name", "manifest") {
            Some((n, span)) if n.trim().is_empty() => {
                self.problem("Manifest name is empty".into(), span, "empty", None);
                None
            }
            Some((n, _)) => Some(n),
            None => {
                if root.get("name").is_none() {
                    self.problem(
                        "Manifest missing required field: name".into(),
                        Span::new(root.span.offset(), 0),
                        "expected here",
                        None,
                    );
                }
                None
            }
        };
        let description = self.string(root, "description", "manifest").map(|d| d.0);
        let settings = self.settings(root);

        let (parsed, pattern, execution) = if version == 1 {
            let levels = self.levels(root);
            let pattern = if levels.len() > 1 {
                Pattern::Tiered
            } else {
                Pattern::Flat
            };
            self.warnings.push(format!(
                "{}: manifest schema v1 (`levels`) is deprecated; it was converted to schema v2 \
                 (`nodes`). `driver validate --to-v2` prints the converted manifest.",
                self.src.origin
            ));
            (levels, pattern, ManifestExecution::default())
        } else {
            let given = self.choice(root, "pattern", "manifest", &Pattern::NAMES, |s| match s {
                "flat" => Some(Pattern::Flat),
                "tiered" => Some(Pattern::Tiered),
                _ => None,
            });
            let pattern_span = root.get("pattern").map(|p| p.span);
            let execution = self.execution(root);
            let nodes = self.nodes(root);
            let pattern = self.pattern(given, pattern_span, &nodes);
            (nodes, pattern, execution)
        };

        self.graph_checks(&parsed);

        let name = name?;
        // The specs are collected in place, into the list's own buffer: no
        // second copy of 100k nodes while the first is still there.
        let locations = parsed.iter().map(|p| p.loc.clone()).collect();
        let mut nodes: Vec<crate::manifest::NodeSpec> =
            parsed.into_iter().map(|p| p.spec).collect();
        nodes.shrink_to_fit();
        Some((
            Manifest {
                schema_version: 2,
                name,
                description,
                pattern,
                execution,
                settings,
                nodes,
            },
            locations,
            version as u32,
        ))
    }

    /// The manifest's pattern: as given, which must fit its nodes (a flat
    /// manifest nests nothing), or what its nodes make it.
    fn pattern(
        &mut self,
        given: Option<Pattern>,
        span: Option<Span>,
        nodes: &[super::Parsed],
    ) -> Pattern {
        let nested = nodes.iter().find(|p| p.spec.parent.is_some());
        match (given, nested, span) {
            (Some(Pattern::Flat), Some(n), Some(span)) => {
                self.problem(
                    format!(
                        "pattern: flat, but node '{}' is nested (it has a parent)",
                        super::short(&n.spec.name)
                    ),
                    span,
                    "flat",
                    Some(
                        "say `pattern: tiered`, or leave `pattern` out: it follows from the nodes"
                            .into(),
                    ),
                );
                Pattern::Flat
            }
            (Some(p), _, _) => p,
            (None, Some(_), _) => Pattern::Tiered,
            (None, None, _) => Pattern::Flat,
        }
    }

    fn settings(&mut self, root: &Node) -> Settings {
        let mut s = Settings::default();
        let Some(node) = root.get("settings") else {
            return s;
        };
        let Some(map) = self.mapping(node, "settings") else {
            return s;
        };
        self.check_keys(map, &SETTINGS_KEYS, "settings");
        if let Some(b) = self.boolean(node, "verify_ssh", "settings") {
            s.verify_ssh = b;
        }
        if let Some(b) = self.boolean(node, "cleanup_on_failure", "settings") {
            s.cleanup_on_failure = b;
        }
        if let Some((t, span)) = self.int(node, "timeout_buffer", "settings") {
            match u64::try_from(t) {
                Ok(t) => s.timeout_buffer = t,
                Err(_) => self.problem(
                    format!("timeout_buffer must be 0 or more seconds, found {t}"),
                    span,
                    "negative",
                    None,
                ),
            }
        }
        if let Some(e) = self.choice(
            node,
            "on_error",
            "settings",
            &OnError::NAMES,
            OnError::parse,
        ) {
            s.on_error = e;
        }
        s
    }

    pub(super) fn exec_mode(&mut self, parent: &Node, key: &str, what: &str) -> Option<ExecMode> {
        self.choice(parent, key, what, &ExecMode::NAMES, |s| match s {
            "push" => Some(ExecMode::Push),
            "pull" => Some(ExecMode::Pull),
            _ => None,
        })
    }

    fn execution(&mut self, root: &Node) -> ManifestExecution {
        let mut e = ManifestExecution::default();
        if let Some(node) = root.get("execution") {
            if let Some(map) = self.mapping(node, "execution") {
                self.check_keys(map, &EXECUTION_KEYS, "execution");
                if let Some(m) = self.exec_mode(node, "default_mode", "execution") {
                    e.default_mode = m;
                }
            }
        }
        e
    }
}
