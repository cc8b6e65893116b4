//! A node's `features:` (containers only): the LXC features PVE turns on for it, e.g.
//! `features: {nesting: true}` for a container that runs containers or systemd services
//! needing it. Each key acts (it becomes PVE's `features` option); anything else is refused.

use super::Checker;
use crate::manifest::{CtFeatures, NodeKind};
use crate::yaml::Node;

/// The keys `features:` takes.
const FEATURE_KEYS: [&str; 1] = ["nesting"];

impl Checker<'_> {
    /// The node's `features:`, checked against its type.
    pub(super) fn features(
        &mut self,
        n: &Node,
        kind: Option<NodeKind>,
        who: impl std::fmt::Display,
    ) -> Option<CtFeatures> {
        let f = n.get("features")?;
        let what = format!("features of {who}");
        let map = self.mapping(f, &what)?;
        self.check_keys(map, &FEATURE_KEYS, &what);
        let nesting = self.boolean(f, "nesting", &what).unwrap_or(false);
        if let Some(k) = kind.filter(|k| *k != NodeKind::Ct) {
            self.problem(
                format!(
                    "'features' of {who} applies to containers only, and this node is `type: {}`",
                    k.as_str()
                ),
                f.span,
                "containers only",
                Some(
                    "remove `features:`, or make the node a container (`type: ct`); a VM's \
                     nested virtualisation comes from its image and preset"
                        .into(),
                ),
            );
            return None;
        }
        Some(CtFeatures { nesting })
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{load, CtFeatures, Source};

    fn messages(nodes: &str) -> Vec<(String, Option<String>)> {
        let yaml = format!("schema_version: 2\nname: t\nnodes:\n{nodes}");
        match load(Source::new("m.yaml", yaml)) {
            Ok(_) => panic!("expected problems"),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.message, p.help))
                .collect(),
        }
    }

    #[test]
    fn a_container_asks_for_nesting_and_other_nodes_or_keys_are_refused() {
        let yaml = "schema_version: 2\nname: t\nnodes:\n  - {name: a, type: ct, features: {nesting: true}}\n  - {name: b, type: ct}\n";
        let l = load(Source::new("m", yaml)).unwrap();
        assert_eq!(
            l.manifest.nodes[0].features,
            Some(CtFeatures { nesting: true })
        );
        assert_eq!(
            l.manifest.nodes[0].features.and_then(|f| f.pve_option()),
            Some("nesting=1".to_string())
        );
        assert_eq!(l.manifest.nodes[1].features, None);

        let p = messages("  - {name: v, type: vm, features: {nesting: true}}\n");
        assert_eq!(
            p[0].0,
            "'features' of node 'v' applies to containers only, and this node is `type: vm`"
        );
        assert!(p[0].1.as_deref().unwrap().contains("type: ct"), "{p:?}");

        let p = messages("  - {name: c, type: ct, features: {nestin: true}}\n");
        assert_eq!(p[0].0, "Unknown key 'nestin' in features of node 'c'");
        assert_eq!(p[0].1.as_deref(), Some("did you mean 'nesting'?"));

        let p = messages("  - {name: c, type: ct, features: {nesting: yes please}}\n");
        assert_eq!(
            p[0].0,
            "'nesting' of features of node 'c' must be true or false, found a string"
        );
        let p = messages("  - {name: c, type: ct, features: nesting}\n");
        assert!(
            p[0].0.starts_with("features of node 'c' must be a mapping"),
            "{p:?}"
        );
    }
}
