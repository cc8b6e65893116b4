//! Turning manifest text into a `Manifest`, checking everything in one pass.
//!
//! Every problem is collected (never first-error-wins) with a span into the
//! text. The wording of the original driver's checks is kept where users and
//! scripts know it (`Duplicate node name: 'x'`, ...).

use std::collections::{HashMap, VecDeque};

use super::problem::{did_you_mean, InvalidManifest, Problem, Problems, Source};
use super::*;
use crate::yaml::{self, Node, Span, Value};

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
const NODE_KEYS: [&str; 11] = [
    "name",
    "type",
    "spec",
    "preset",
    "image",
    "vmid",
    "disk",
    "parent",
    "execution",
    "depends_on",
    "provisioner",
];
const LEVEL_KEYS: [&str; 9] = [
    "name",
    "vm_preset",
    "template",
    "env",
    "vmid",
    "image",
    "vmid_offset",
    "post_scenario",
    "post_scenario_args",
];
const SETTINGS_KEYS: [&str; 4] = [
    "verify_ssh",
    "cleanup_on_failure",
    "timeout_buffer",
    "on_error",
];
const MAX_VMID: i64 = 999_999_999;

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
    let mut c = Checker {
        src: &source,
        problems: Problems::default(),
        warnings: Vec::new(),
    };
    let result = match yaml::parse(&source.text) {
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

struct Checker<'a> {
    src: &'a Source,
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
    fn check_keys(&mut self, map: &[(Node, Node)], allowed: &[&str], what: &str) {
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

    fn string(&mut self, parent: &Node, key: &str, what: &str) -> Option<(String, Span)> {
        let v = parent.get(key)?;
        match &v.value {
            Value::Str(s) => Some((s.clone(), v.span)),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "a string", v);
                None
            }
        }
    }

    fn int(&mut self, parent: &Node, key: &str, what: &str) -> Option<(i64, Span)> {
        let v = parent.get(key)?;
        match v.value {
            Value::Int(i) => Some((i, v.span)),
            _ => {
                self.wrong_type(&format!("'{key}' of {what}"), "an integer", v);
                None
            }
        }
    }

    fn boolean(&mut self, parent: &Node, key: &str, what: &str) -> Option<bool> {
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
        what: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let (s, span) = self.string(parent, key, what)?;
        let parsed = parse(&s);
        if parsed.is_none() {
            let help = did_you_mean(&s, names).map(|m| format!("did you mean '{m}'?"));
            self.problem(
                format!(
                    "Invalid {key} '{}' in {what}: expected one of {}",
                    short(&s),
                    names.join(", ")
                ),
                span,
                "not allowed here",
                help,
            );
        }
        parsed
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match node.as_map() {
            Some(m) => Some(m),
            None => {
                self.wrong_type(what, "a mapping", node);
                None
            }
        }
    }

    fn manifest(&mut self, mut root: Node) -> Option<(Manifest, Vec<NodeLocation>, u32)> {
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
            let pattern = self
                .choice(root, "pattern", "manifest", &Pattern::NAMES, |s| match s {
                    "flat" => Some(Pattern::Flat),
                    "tiered" => Some(Pattern::Tiered),
                    _ => None,
                })
                .unwrap_or_default();
            let execution = self.execution(root);
            (self.nodes(root), pattern, execution)
        };

        self.graph_checks(&parsed);

        let name = name?;
        let (nodes, locations) = parsed.into_iter().map(|p| (p.spec, p.loc)).unzip();
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

    fn exec_mode(&mut self, parent: &Node, key: &str, what: &str) -> Option<ExecMode> {
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
                self.check_keys(map, &["default_mode"], "execution");
                if let Some(m) = self.exec_mode(node, "default_mode", "execution") {
                    e.default_mode = m;
                }
            }
        }
        e
    }

    /// Takes the list under `key` out of `root` (so each item is freed once
    /// converted), or reports it missing, not a list or empty.
    fn list(&mut self, root: &mut Node, key: &str, missing: &str, empty: &str) -> Vec<Node> {
        match root.take(key) {
            None => {
                self.problem(
                    missing.into(),
                    Span::new(root.span.offset(), 0),
                    "expected here",
                    None,
                );
                Vec::new()
            }
            Some(n) => match n.value {
                Value::Seq(items) if items.is_empty() => {
                    self.problem(empty.into(), n.span, "empty", None);
                    Vec::new()
                }
                Value::Seq(items) => items,
                _ => {
                    self.wrong_type(&format!("'{key}'"), "a list", &n);
                    Vec::new()
                }
            },
        }
    }

    fn vmid(&mut self, node: &Node, key: &str, who: &str) -> Option<(u32, Span)> {
        let (v, span) = self.int(node, key, who)?;
        if v < 100 {
            self.problem(
                format!("vmid {v} of {who} is below 100"),
                span,
                "too small",
                Some("PVE reserves IDs 0-99; use 100 or more".into()),
            );
            None
        } else if v > MAX_VMID {
            self.problem(
                format!("vmid {v} of {who} is above PVE's maximum {MAX_VMID}"),
                span,
                "too large",
                None,
            );
            None
        } else {
            Some((v as u32, span))
        }
    }

    fn nodes(&mut self, root: &mut Node) -> Vec<Parsed> {
        let items = self.list(
            root,
            "nodes",
            "Manifest v2 missing required field: nodes",
            "Manifest v2 must have at least one node",
        );
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.into_iter().enumerate() {
            let n = &n;
            let Some(map) = self.mapping(n, &format!("Node {i}")) else {
                continue;
            };
            self.check_keys(map, &NODE_KEYS, &format!("node {i}"));
            let name = self.node_name(n, "name", &format!("Node {i}"));
            let who = match &name {
                Some((s, _)) => format!("node '{}'", short(s)),
                None => format!("node {i}"),
            };
            let kind = match n.get("type") {
                None => {
                    let label = name.as_ref().map_or("unnamed".into(), |(s, _)| short(s));
                    self.problem(
                        format!("Node {i} ({label}) missing required field: type"),
                        n.span,
                        "this node",
                        Some("add `type: vm`, `type: ct` or `type: pve`".into()),
                    );
                    None
                }
                Some(_) => self.choice(n, "type", &who, &NodeKind::NAMES, NodeKind::parse),
            };
            let spec = self.string(n, "spec", &who);
            let preset = self.string(n, "preset", &who);
            let image = self.string(n, "image", &who);
            let vmid = self.vmid(n, "vmid", &who);
            let disk = match self.int(n, "disk", &who) {
                Some((d, span)) if !(1..=u32::MAX as i64).contains(&d) => {
                    self.problem(
                        format!("disk of {who} must be at least 1 (GB), found {d}"),
                        span,
                        "out of range",
                        None,
                    );
                    None
                }
                d => d.map(|(d, _)| d as u32),
            };
            let parent = match n.get("parent") {
                Some(Node {
                    value: Value::Null, ..
                })
                | None => None,
                Some(_) => self.string(n, "parent", &who),
            };
            let mode = match n.get("execution") {
                Some(e) => {
                    let what = format!("execution of {who}");
                    match self.mapping(e, &what) {
                        Some(m) => {
                            self.check_keys(m, &["mode"], &what);
                            self.exec_mode(e, "mode", &what)
                        }
                        None => None,
                    }
                }
                None => None,
            };
            let (depends_on, depends_spans) = self.depends_on(n, &who);
            let provisioner = self.choice(
                n,
                "provisioner",
                &who,
                &Provisioner::NAMES,
                Provisioner::parse,
            );
            let Some((name, name_span)) = name else {
                continue;
            };
            out.push(Parsed {
                kind,
                loc: NodeLocation {
                    node: n.span,
                    name: Some(name_span),
                    spec: spec.as_ref().map(|s| s.1),
                    preset: preset.as_ref().map(|s| s.1),
                    image: image.as_ref().map(|s| s.1),
                    vmid: vmid.map(|v| v.1),
                },
                parent_span: parent.as_ref().map(|p| p.1),
                spec: NodeSpec {
                    name,
                    kind: kind.unwrap_or(NodeKind::Vm),
                    spec: spec.map(|s| s.0),
                    preset: preset.map(|s| s.0),
                    image: image.map(|s| s.0),
                    vmid: vmid.map(|v| v.0),
                    disk,
                    parent: parent.map(|p| p.0),
                    execution: mode.map(|mode| NodeExecution { mode }),
                    depends_on,
                    provisioner,
                },
                depends_spans,
            });
        }
        out
    }

    /// A required node/level name that must be a valid hostname. A name that
    /// is not a hostname is reported and still returned, so the duplicate
    /// and parent checks can use it.
    fn node_name(&mut self, n: &Node, key: &str, who: &str) -> Option<(String, Span)> {
        if n.get(key).is_none() {
            self.problem(
                format!("{who} missing required field: name"),
                n.span,
                "this entry",
                None,
            );
            return None;
        }
        let (name, span) = self.string(n, key, who)?;
        if let Some(why) = hostname_problem(&name) {
            self.problem(
                format!(
                    "Node name '{}' is not a valid hostname: {why}",
                    short(&name)
                ),
                span,
                "not a hostname",
                Some("node names become VM hostnames: use letters, digits and '-'".into()),
            );
            return Some((name, span));
        }
        Some((name, span))
    }

    fn depends_on(&mut self, n: &Node, who: &str) -> (Vec<String>, Vec<Span>) {
        let Some(d) = n.get("depends_on") else {
            return (Vec::new(), Vec::new());
        };
        let Value::Seq(items) = &d.value else {
            self.wrong_type(&format!("depends_on of {who}"), "a list of node names", d);
            return (Vec::new(), Vec::new());
        };
        let mut names = Vec::new();
        let mut spans = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) => {
                    names.push(s.to_string());
                    spans.push(item.span);
                }
                None => self.wrong_type(
                    &format!("an entry of depends_on of {who}"),
                    "a string",
                    item,
                ),
            }
        }
        (names, spans)
    }

    /// Schema v1: a chain of levels, each inside the one before.
    fn levels(&mut self, root: &mut Node) -> Vec<Parsed> {
        let items = self.list(
            root,
            "levels",
            "Manifest missing required field: levels",
            "Manifest must have at least one level",
        );
        let mut out: Vec<Parsed> = Vec::with_capacity(items.len());
        let last = items.len().saturating_sub(1);
        for (i, l) in items.into_iter().enumerate() {
            let l = &l;
            let Some(map) = self.mapping(l, &format!("Level {i}")) else {
                continue;
            };
            self.check_keys(map, &LEVEL_KEYS, &format!("level {i}"));
            let name = self.node_name(l, "name", &format!("Level {i}"));
            let label = name
                .as_ref()
                .map_or("unnamed".into(), |n| short(&n.0).into_owned());
            let who = format!("level '{label}'");
            let preset = self.string(l, "vm_preset", &who);
            let has = |k: &str| l.get(k).is_some();
            if preset.is_none() && !has("vm_preset") {
                if has("template") || has("env") {
                    let key = if has("template") { "template" } else { "env" };
                    let span = l.get(key).map_or(l.span, |n| n.span);
                    self.problem(
                        format!(
                            "Level {i} ({label}) uses '{key}' mode, which schema v2 has no field for"
                        ),
                        span,
                        "cannot convert",
                        Some("rewrite the level with `vm_preset` and `image`, or the manifest as schema v2".into()),
                    );
                } else {
                    self.problem(
                        format!("Level {i} ({label}) requires 'vm_preset', 'template', or 'env'"),
                        l.span,
                        "this level",
                        None,
                    );
                }
            }
            let image = self.string(l, "image", &who);
            let vmid = self.vmid(l, "vmid", &who);
            self.int(l, "vmid_offset", &who);
            if let Some((ps, _)) = self.string(l, "post_scenario", &who) {
                if !(i < last && ps == "pve-setup") {
                    self.warnings.push(format!(
                        "{}: post_scenario '{ps}' of {who} is not run by driver (PVE setup is \
                         part of every pve node's creation)",
                        self.src.origin
                    ));
                }
            }
            let Some((name, name_span)) = name else {
                continue;
            };
            let parent = out.last().map(|p| p.spec.name.clone());
            let kind = if i < last {
                NodeKind::Pve
            } else {
                NodeKind::Vm
            };
            out.push(Parsed {
                kind: Some(kind),
                loc: NodeLocation {
                    node: l.span,
                    name: Some(name_span),
                    spec: None,
                    preset: preset.as_ref().map(|p| p.1),
                    image: image.as_ref().map(|p| p.1),
                    vmid: vmid.map(|v| v.1),
                },
                parent_span: parent.as_ref().map(|_| name_span),
                spec: NodeSpec {
                    name,
                    kind,
                    spec: Some(if i < last { "pve" } else { "base" }.to_string()),
                    preset: preset.map(|p| p.0),
                    image: image.map(|p| p.0),
                    vmid: vmid.map(|v| v.0),
                    disk: None,
                    parent,
                    execution: None,
                    depends_on: Vec::new(),
                    provisioner: None,
                },
                depends_spans: Vec::new(),
            });
        }
        out
    }

    /// Names, parents, vmids and depends_on across all nodes.
    fn graph_checks(&mut self, nodes: &[Parsed]) {
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        for (i, p) in nodes.iter().enumerate() {
            let span = p.loc.name.unwrap_or(p.loc.node);
            match index.get(p.spec.name.as_str()) {
                Some(&first) => {
                    let first_span = nodes[first].loc.name.unwrap_or(nodes[first].loc.node);
                    let src = self.src;
                    self.problems.push_with(|| {
                        Problem::new(
                            src,
                            format!("Duplicate node name: '{}'", short(&p.spec.name)),
                            Some(span),
                            "defined again here",
                            Some(
                                "node names must be unique: they become hostnames and context keys"
                                    .into(),
                            ),
                        )
                        .with_label(first_span, "first defined here")
                    });
                }
                None => {
                    index.insert(&p.spec.name, i);
                }
            }
        }

        let mut vmids: HashMap<u32, usize> = HashMap::new();
        for (i, p) in nodes.iter().enumerate() {
            let Some(v) = p.spec.vmid else { continue };
            if let Some(&first) = vmids.get(&v) {
                let src = self.src;
                self.problems.push_with(|| {
                    let pr = Problem::new(
                        src,
                        format!(
                            "vmid {v} is used by both '{}' and '{}'",
                            short(&nodes[first].spec.name),
                            short(&p.spec.name)
                        ),
                        p.loc.vmid,
                        "used again here",
                        Some("each node needs its own vmid (or none, to let PVE choose)".into()),
                    );
                    match nodes[first].loc.vmid {
                        Some(s) => pr.with_label(s, "first used here"),
                        None => pr,
                    }
                });
            } else {
                vmids.insert(v, i);
            }
        }

        let names: Vec<&str> = index.keys().copied().collect();
        for p in nodes {
            let Some(parent) = &p.spec.parent else {
                continue;
            };
            let span = p.parent_span.unwrap_or(p.loc.node);
            match index.get(parent.as_str()) {
                None => {
                    let help = self.suggest(parent, &names);
                    self.problem(
                        format!(
                            "Node '{}' references unknown parent '{}'",
                            short(&p.spec.name),
                            short(parent)
                        ),
                        span,
                        "no node has this name",
                        help,
                    );
                }
                Some(&j)
                    if nodes[j].kind.is_some_and(|k| k != NodeKind::Pve)
                        && nodes[j].spec.name != p.spec.name =>
                {
                    self.problem(
                        format!(
                            "Node '{}' has parent '{}', which is a {} node, not a pve node",
                            short(&p.spec.name),
                            short(parent),
                            nodes[j].spec.kind.as_str()
                        ),
                        span,
                        "not a PVE host",
                        Some(format!(
                            "only pve nodes can hold other nodes: set `type: pve` on '{}' or move '{}'",
                            short(parent),
                            short(&p.spec.name)
                        )),
                    );
                }
                _ => {}
            }
        }
        // Unknown parents end a walk, so cycles are still found among the rest.
        self.parent_cycles(nodes, &index);
        self.depends_checks(nodes, &index);
    }

    /// Cycles along `parent`, found without recursion (chains can be very deep).
    fn parent_cycles(&mut self, nodes: &[Parsed], index: &HashMap<&str, usize>) {
        // 0 = unvisited, 1 = on the current walk, 2 = done
        let mut state = vec![0u8; nodes.len()];
        let mut walk = Vec::new();
        for start in 0..nodes.len() {
            let mut cur = Some(start);
            walk.clear();
            while let Some(i) = cur {
                match state[i] {
                    2 => break,
                    1 => {
                        // `i` is on a cycle: report it once, by its first member in file order.
                        let pos = walk.iter().position(|&w| w == i).unwrap_or(0);
                        let first = walk[pos..].iter().copied().min().unwrap_or(i);
                        let p = &nodes[first];
                        self.problem(
                            format!(
                                "Cycle detected in node graph involving '{}'",
                                short(&p.spec.name)
                            ),
                            p.parent_span.unwrap_or(p.loc.node),
                            "parent leads back here",
                            Some("a node cannot be its own ancestor".into()),
                        );
                        break;
                    }
                    _ => {
                        state[i] = 1;
                        walk.push(i);
                        cur = nodes[i]
                            .spec
                            .parent
                            .as_deref()
                            .and_then(|p| index.get(p).copied());
                    }
                }
            }
            for &w in &walk {
                state[w] = 2;
            }
        }
    }

    fn depends_checks(&mut self, nodes: &[Parsed], index: &HashMap<&str, usize>) {
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut indegree = vec![0usize; nodes.len()];
        let mut any = false;
        let names: Vec<&str> = index.keys().copied().collect();
        for (i, p) in nodes.iter().enumerate() {
            for (dep, span) in p.spec.depends_on.iter().zip(&p.depends_spans) {
                any = true;
                match index.get(dep.as_str()) {
                    None => {
                        let help = self.suggest(dep, &names);
                        self.problem(
                            format!(
                                "Node '{}' depends on unknown node '{}'",
                                short(&p.spec.name),
                                short(dep)
                            ),
                            *span,
                            "no node has this name",
                            help,
                        );
                    }
                    Some(&j) if j == i => self.problem(
                        format!("Node '{}' depends on itself", short(&p.spec.name)),
                        *span,
                        "itself",
                        None,
                    ),
                    Some(&j) if nodes[j].spec.parent != p.spec.parent => self.problem(
                        format!(
                            "Node '{}' depends on '{}', which is not its sibling",
                            short(&p.spec.name),
                            short(dep)
                        ),
                        *span,
                        "different parent",
                        Some("depends_on orders nodes that share a parent; a child already waits for its parent".into()),
                    ),
                    Some(&j) => {
                        edges[j].push(i);
                        indegree[i] += 1;
                    }
                }
            }
        }
        if !any {
            return;
        }
        // Kahn's algorithm: whatever is left over sits on a cycle.
        let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
        while let Some(i) = queue.pop_front() {
            for &j in &edges[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    queue.push_back(j);
                }
            }
        }
        if let Some(i) = (0..nodes.len()).find(|&i| indegree[i] > 0) {
            let p = &nodes[i];
            self.problem(
                format!(
                    "Cycle detected in node graph involving '{}'",
                    short(&p.spec.name)
                ),
                p.depends_spans.first().copied().unwrap_or(p.loc.node),
                "depends_on leads back here",
                None,
            );
        }
    }
}
