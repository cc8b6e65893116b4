//! Where each node's disks go, decided once for the plan, the runner and
//! preflight alike: a full clone goes to the manifest node's `storage:`, else
//! to the node file's `datastore:`; a linked clone stays on its template's
//! storage (PVE refuses `storage` on linked clones), so a node that asks for
//! a storage on a host that clones linked is refused before anything runs.
//! Nodes below a pve node are placed by that host's own driver.

use serde::Serialize;

use crate::manifest::{Manifest, NodeKind, NodeSpec};

/// How a node's guest is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A full clone of its template (independent disks).
    FullClone,
    /// A linked clone (disks based on the template's).
    LinkedClone,
    /// By OpenTofu, with `datastore` in its variables.
    Tofu,
    /// A container created from a container template (vztmpl): its root
    /// disk is new, so it goes where asked whether the host clones linked
    /// or not.
    Create,
}

/// Where the storage choice comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageFrom {
    /// The manifest node's `storage:`.
    Manifest,
    /// The node file's `datastore:` (or site.yaml `defaults.datastore`).
    NodeFile,
    /// None chosen: PVE keeps the disks on the template's storage.
    Template,
    /// The nested PVE's own driver (its node file's `datastore:`).
    NestedHost,
}

/// Where one node's disks go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub node: String,
    pub method: Method,
    /// The storage its disks are put on; `None`: the template's (or, below a
    /// pve node, that host's datastore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    pub from: StorageFrom,
    /// The pve node whose driver makes it, for a node below one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Content types the storage must hold: `images` (VM disks) or `rootdir`
    /// (container volumes).
    pub content: &'static str,
    /// The PVE cluster node its guest goes on, when the manifest pins one (`target_node:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// The policy that picks its cluster node at run time (`placement:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::manifest::NodePolicy>,
}

impl Placement {
    /// One line for the plan, e.g. `full clone to local-zfs (the manifest's storage:)`.
    pub fn describe(&self) -> String {
        let from = match self.from {
            StorageFrom::Manifest => " (the manifest's storage:)",
            StorageFrom::NodeFile => " (the node file's datastore:)",
            StorageFrom::Template | StorageFrom::NestedHost => "",
        };
        let what = match (self.method, &self.storage) {
            (Method::LinkedClone, _) => "linked clone: stays on the template's storage".to_string(),
            (Method::FullClone, Some(s)) => format!("full clone to {s}{from}"),
            (Method::FullClone, None) if self.from == StorageFrom::NestedHost => {
                "full clone to that host's datastore".to_string()
            }
            (Method::FullClone, None) => {
                "full clone: stays on the template's storage (no datastore: in the node file)"
                    .to_string()
            }
            (Method::Tofu, Some(s)) => format!("tofu, disks on {s}{from}"),
            (Method::Tofu, None) => "tofu, disks where its configuration puts them".to_string(),
            (Method::Create, Some(s)) => format!("created from a container template, root disk on {s}{from}"),
            (Method::Create, None) => {
                "created from a container template, root disk on local-lvm (PVE's default; no datastore: in the node file)".to_string()
            }
        };
        let what = match (&self.target_node, self.policy) {
            (Some(n), _) => format!("{what}; on cluster node {n} (target_node:)"),
            (None, Some(p)) => format!(
                "{what}; cluster node chosen when it is made by placement: {} (memory not committed to guests, then CPU, in /cluster/resources)",
                p.as_str()
            ),
            (None, None) => what,
        };
        match &self.on {
            Some(host) => format!("on '{host}': {what}"),
            None => what,
        }
    }
}

/// What the host says about disks: its `datastore:` and clone mode.
#[derive(Clone, Copy, Debug)]
pub struct HostDisks<'a> {
    pub datastore: Option<&'a str>,
    pub full_clone: bool,
    /// The node file, for messages.
    pub file: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "node '{node}' sets `storage: {storage}`, but {file} clones linked (`full_clone: false`), \
     and a linked clone stays on its template's storage"
)]
pub struct LinkedWithStorage {
    pub node: String,
    pub storage: String,
    pub file: String,
}

impl LinkedWithStorage {
    pub fn help(&self) -> String {
        format!(
            "remove `storage:` from node '{}', or set `full_clone: true` in {}",
            self.node, self.file
        )
    }
}

fn content_of(n: &NodeSpec) -> &'static str {
    match n.kind {
        NodeKind::Ct => "rootdir",
        NodeKind::Vm | NodeKind::Pve => "images",
    }
}

/// The `storage` a clone of `node` on this host sends: `None` for a linked
/// clone, or a full one with nothing chosen (PVE keeps the template's).
pub fn clone_storage<'a>(
    node: &'a NodeSpec,
    host: &HostDisks<'a>,
) -> Result<Option<&'a str>, LinkedWithStorage> {
    match (&node.storage, host.full_clone) {
        (Some(s), false) => Err(LinkedWithStorage {
            node: node.name.clone(),
            storage: s.clone(),
            file: host.file.to_string(),
        }),
        (Some(s), true) => Ok(Some(s)),
        (None, true) => Ok(host.datastore),
        (None, false) => Ok(None),
    }
}

/// Where a container's root disk goes: its `storage:`, else the node
/// file's `datastore:` (containers are created, never cloned).
pub fn ct_storage<'a>(node: &'a NodeSpec, host: &HostDisks<'a>) -> Option<&'a str> {
    node.storage.as_deref().or(host.datastore)
}

/// Every node's placement, in manifest order; `tofu` names the nodes
/// OpenTofu makes. Refuses a `storage:` a linked clone cannot honour.
pub fn place(
    manifest: &Manifest,
    host: &HostDisks<'_>,
    tofu: &[String],
) -> Result<Vec<Placement>, LinkedWithStorage> {
    manifest
        .nodes
        .iter()
        .map(|n| {
            let content = content_of(n);
            if let Some(parent) = &n.parent {
                // Its host's node file is written by this driver without
                // `full_clone`, so that driver clones full.
                return Ok(Placement {
                    node: n.name.clone(),
                    method: Method::FullClone,
                    storage: n.storage.clone(),
                    from: match n.storage {
                        Some(_) => StorageFrom::Manifest,
                        None => StorageFrom::NestedHost,
                    },
                    on: Some(parent.clone()),
                    content,
                    target_node: n.target_node.clone(),
                    policy: n.placement,
                });
            }
            let from = |s: &Option<&str>| match (s, &n.storage) {
                (_, Some(_)) => StorageFrom::Manifest,
                (Some(_), None) => StorageFrom::NodeFile,
                (None, None) => StorageFrom::Template,
            };
            if tofu.contains(&n.name) {
                let s = n.storage.as_deref().or(host.datastore);
                return Ok(Placement {
                    node: n.name.clone(),
                    method: Method::Tofu,
                    storage: s.map(str::to_string),
                    from: from(&s),
                    on: None,
                    content,
                    target_node: n.target_node.clone(),
                    policy: n.placement,
                });
            }
            if n.kind == NodeKind::Ct {
                let s = ct_storage(n, host);
                return Ok(Placement {
                    node: n.name.clone(),
                    method: Method::Create,
                    storage: s.map(str::to_string),
                    from: from(&s),
                    on: None,
                    content,
                    target_node: n.target_node.clone(),
                    policy: n.placement,
                });
            }
            let s = clone_storage(n, host)?;
            Ok(Placement {
                node: n.name.clone(),
                method: if host.full_clone {
                    Method::FullClone
                } else {
                    Method::LinkedClone
                },
                storage: s.map(str::to_string),
                from: from(&s),
                on: None,
                content,
                target_node: n.target_node.clone(),
                policy: n.placement,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(yaml: &str) -> Manifest {
        crate::manifest::load(crate::manifest::Source::new("t.yaml", yaml))
            .unwrap()
            .manifest
    }

    const M: &str = "schema_version: 2\nname: t\npattern: tiered\nnodes:\n\
        - {name: a, type: vm, image: debian-12}\n\
        - {name: b, type: ct, image: debian-12-ct, storage: tank}\n\
        - {name: p, type: pve, image: debian-13-pve}\n\
        - {name: c, type: vm, image: debian-12, parent: p}\n";

    #[test]
    fn full_clones_go_to_the_datastore_unless_the_node_says_otherwise() {
        let m = manifest(M);
        let host = HostDisks {
            datastore: Some("local-zfs"),
            full_clone: true,
            file: "nodes/h.yaml",
        };
        let p = place(&m, &host, &[]).unwrap();
        assert_eq!(
            p[0].describe(),
            "full clone to local-zfs (the node file's datastore:)"
        );
        assert_eq!(p[0].content, "images");
        assert_eq!(p[1].storage.as_deref(), Some("tank"));
        assert_eq!(p[1].from, StorageFrom::Manifest);
        assert_eq!(p[1].content, "rootdir");
        assert_eq!(
            p[3].describe(),
            "on 'p': full clone to that host's datastore"
        );
        let none = HostDisks {
            datastore: None,
            ..host
        };
        assert_eq!(clone_storage(&m.nodes[0], &none).unwrap(), None);
        assert_eq!(clone_storage(&m.nodes[1], &none).unwrap(), Some("tank"));
    }

    #[test]
    fn a_storage_that_is_no_storage_id_is_refused_and_one_round_trips() {
        let bad = M.replace("storage: tank", "storage: 'tank/x'");
        let e = crate::manifest::load(crate::manifest::Source::new("t.yaml", bad)).unwrap_err();
        let msgs: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("'tank/x' is not a PVE storage ID")),
            "{msgs:?}"
        );
        // Delegation hands a subtree on as JSON: the key survives it.
        let m = manifest(M);
        let back = crate::manifest::load(crate::manifest::Source::new("j", m.to_json())).unwrap();
        assert_eq!(back.manifest.nodes[1].storage.as_deref(), Some("tank"));
    }

    #[test]
    fn linked_clones_stay_and_refuse_a_storage() {
        let m = manifest(M);
        let host = HostDisks {
            datastore: Some("local-zfs"),
            full_clone: false,
            file: "nodes/h.yaml",
        };
        // A container is created, not cloned: its storage holds when clones are linked.
        let p = place(&m, &host, &[]).unwrap();
        assert_eq!(
            p[1].describe(),
            "created from a container template, root disk on tank (the manifest's storage:)"
        );
        let vm = manifest(&M.replace(
            "type: ct, image: debian-12-ct",
            "type: vm, image: debian-12",
        ));
        let e = place(&vm, &host, &[]).unwrap_err();
        assert_eq!(e.node, "b");
        assert!(e.help().contains("full_clone: true"), "{}", e.help());
        assert_eq!(clone_storage(&vm.nodes[0], &host).unwrap(), None);
        let p = place(&vm, &host, &["b".to_string()]).unwrap();
        assert_eq!(
            p[0].describe(),
            "linked clone: stays on the template's storage"
        );
        assert_eq!(
            p[1].describe(),
            "tofu, disks on tank (the manifest's storage:)"
        );
    }
}
