//! Converting a schema v1 manifest's `levels` (a chain, each level inside the
//! one before) into schema v2 nodes, refusing what v2 cannot express and
//! warning about what driver does not run.

use super::{short, Checker, Parsed, Who};
use crate::manifest::{NodeKind, NodeLocation, NodeSpec};
use crate::yaml::Node;

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

impl<'a> Checker<'a> {
    /// Schema v1: a chain of levels, each inside the one before.
    pub(super) fn levels(&mut self, root: &mut Node) -> Vec<Parsed> {
        let items = self.list(
            root,
            "levels",
            "Manifest missing required field: levels",
            "Manifest must have at least one level",
        );
        let mut out: Vec<Parsed> = Vec::with_capacity(items.len());
        let last = items.len().saturating_sub(1);
        for (i, mut l) in items.into_iter().enumerate() {
            let l = &mut l;
            let Some(map) = self.mapping(l, Who::Nth("Level", i)) else {
                continue;
            };
            self.check_keys(map, &LEVEL_KEYS, Who::Nth("level", i));
            let name = self.node_name(l, "name", Who::Nth("Level", i));
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
                    storage: None,
                    features: None,
                    target_node: None,
                    placement: None,
                },
                depends_spans: Vec::new(),
            });
        }
        out
    }
}
