//! Converting the schema v2 `nodes` list into node specs: each node's keys
//! and fields (type, vmid, disk, parent, execution, depends_on,
//! provisioner, storage, features, target_node, placement), with the per-field checks. The readers shared with the v1
//! conversion (the list itself, vmids, hostname-valid names) live here too.

use super::{short, Checker, Parsed, Who};
use crate::manifest::{
    hostname_problem, NodeExecution, NodeKind, NodeLocation, NodePolicy, NodeSpec, Provisioner,
};
use crate::yaml::{Node, Span, Value};
use std::fmt::Display;

pub(super) const NODE_KEYS: [&str; 15] = [
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
    "storage",
    "features",
    "target_node",
    "placement",
];
pub(super) const NODE_EXECUTION_KEYS: [&str; 1] = ["mode"];
const MAX_VMID: i64 = 999_999_999;

impl<'a> Checker<'a> {
    /// Takes the list under `key` out of `root` (so each item is freed once
    /// converted), or reports it missing, not a list or empty.
    pub(super) fn list(
        &mut self,
        root: &mut Node,
        key: &str,
        missing: &str,
        empty: &str,
    ) -> Vec<Node> {
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

    pub(super) fn vmid(
        &mut self,
        node: &Node,
        key: &str,
        who: impl Display + Copy,
    ) -> Option<(u32, Span)> {
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

    pub(super) fn nodes(&mut self, root: &mut Node) -> Vec<Parsed> {
        // Converted while parsing (the list in the tree is empty): what was
        // found in them is reported here, where it would have been.
        if let Some(st) = self.streamed.take() {
            if st.count > 0 {
                let _ = root.take("nodes");
                self.problems.extend(st.problems);
                self.warnings.extend(st.warnings);
                return st.parsed;
            }
        }
        let items = self.list(
            root,
            "nodes",
            "Manifest v2 missing required field: nodes",
            "Manifest v2 must have at least one node",
        );
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.into_iter().enumerate() {
            out.extend(self.node(i, n));
        }
        out
    }

    /// Node `i` of the v2 list, checked and converted.
    pub(super) fn node(&mut self, i: usize, mut n: Node) -> Option<Parsed> {
        {
            let n = &mut n;
            let Some(map) = n.as_map() else {
                self.wrong_type(&format!("Node {i}"), "a mapping", n);
                return None;
            };
            if map
                .iter()
                .any(|(k, _)| !k.as_str().is_some_and(|k| NODE_KEYS.contains(&k)))
            {
                self.check_keys(map, &NODE_KEYS, Who::Nth("node", i));
            }
            let name = self.node_name(n, "name", Who::Nth("Node", i));
            let who = match &name {
                Some((s, _)) => Who::Named("node", s),
                None => Who::Nth("node", i),
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
                Some(_) => self.choice(n, "type", who, &NodeKind::NAMES, NodeKind::parse),
            };
            let spec = self.string(n, "spec", who);
            let preset = self.string(n, "preset", who);
            let image = self.string(n, "image", who);
            let vmid = self.vmid(n, "vmid", who);
            let disk = match self.int(n, "disk", who) {
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
                Some(_) => self.string(n, "parent", who),
            };
            let mode = match n.get("execution") {
                Some(e) => {
                    let what = format!("execution of {who}");
                    match self.mapping(e, &what) {
                        Some(m) => {
                            self.check_keys(m, &NODE_EXECUTION_KEYS, &what);
                            self.exec_mode(e, "mode", &what)
                        }
                        None => None,
                    }
                }
                None => None,
            };
            let (depends_on, depends_spans) = self.depends_on(n, who);
            let provisioner = self.choice(
                n,
                "provisioner",
                who,
                &Provisioner::NAMES,
                Provisioner::parse,
            );
            let storage = self.storage_id(n, who);
            let features = self.features(n, kind, who);
            let target_node = self.target_node(n, who);
            let placement = self.choice(n, "placement", who, &NodePolicy::NAMES, NodePolicy::parse);
            if let (Some(_), Some(_)) = (&target_node, &placement) {
                if let Some(p) = n.get("placement") {
                    self.problem(
                        format!("{who} sets both target_node and placement"),
                        p.span,
                        "placement with target_node",
                        Some("a pinned node needs no policy: keep one of them".into()),
                    );
                }
            }
            let (name, name_span) = name?;
            Some(Parsed {
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
                    storage,
                    features,
                    target_node,
                    placement,
                },
                depends_spans,
            })
        }
    }

    /// A required node/level name that must be a valid hostname. A name that
    /// is not a hostname is reported and still returned, so the duplicate
    /// and parent checks can use it.
    pub(super) fn node_name(
        &mut self,
        n: &mut Node,
        key: &str,
        who: impl Display + Copy,
    ) -> Option<(String, Span)> {
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

    /// `storage:` (our addition): a PVE storage ID, checked as PVE checks
    /// one (`pve-storage-id`), so a typo is caught before anything runs.
    fn storage_id(&mut self, n: &mut Node, who: impl Display + Copy) -> Option<String> {
        let (id, span) = self.string(n, "storage", who)?;
        let b = id.as_bytes();
        let ok = b.len() >= 2
            && b[0].is_ascii_alphabetic()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if ok {
            return Some(id);
        }
        self.problem(
            format!("storage of {who}: '{}' is not a PVE storage ID", short(&id)),
            span,
            "not a storage ID",
            Some("a storage as `pvesm status` lists it, e.g. local-lvm or local-zfs".into()),
        );
        None
    }

    /// `target_node:` (our addition): a PVE node name (`pve-node`: a hostname).
    fn target_node(&mut self, n: &mut Node, who: impl Display + Copy) -> Option<String> {
        let (name, span) = self.string(n, "target_node", who)?;
        if hostname_problem(&name).is_none() {
            return Some(name);
        }
        self.problem(
            format!(
                "target_node of {who}: '{}' is not a PVE node name",
                short(&name)
            ),
            span,
            "not a node name",
            Some("a cluster node as `pvecm nodes` lists it, e.g. pve2".into()),
        );
        None
    }

    fn depends_on(&mut self, n: &Node, who: impl Display + Copy) -> (Vec<String>, Vec<Span>) {
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
}
