//! The node tree of a validated manifest as a petgraph graph: orders, depths,
//! and the split between what this driver runs and what it delegates.
//!
//! Node index `i` in the graph is node `i` of the manifest. Edges point from
//! what must exist first to what needs it: parent → child (`Contains`) and
//! dependency → dependent (`After`, from `depends_on`). Every walk here is
//! iterative: a chain of 100k nested nodes must not overflow the stack.

use foldhash::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::manifest::{Manifest, NodeKind, NodeSpec, Pattern};
use crate::ready_queue::ReadyQueue;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The source is a PVE node that hosts the target.
    Contains,
    /// The target is listed in the source's `depends_on` (siblings).
    After,
}

#[derive(Debug)]
pub struct ManifestGraph<'m> {
    pub manifest: &'m Manifest,
    graph: DiGraph<(), Edge, u32>,
    parent: Vec<Option<usize>>,
    /// Each node's children in manifest order: `child_list[child_start[i]..child_start[i + 1]]`
    /// (one list for all: a `Vec` per node was 100k small allocations).
    child_start: Vec<usize>,
    child_list: Vec<usize>,
    depth: Vec<usize>,
    /// Each node's ancestor on the target host (itself for local nodes).
    local_root: Vec<usize>,
    /// Nodes in create order (parents, and dependencies, first).
    order: Vec<usize>,
    by_name: HashMap<&'m str, usize>,
}

/// Here rather than in `manifest`, so that the manifest does not import
/// the graph built on it.
impl Manifest {
    /// Drops every node more than `levels` levels deep (1 keeps only the
    /// nodes on the target host). Dependencies stay among siblings, so what
    /// is kept is still valid. Returns how many nodes were dropped.
    pub fn limit_depth(&mut self, levels: usize) -> usize {
        let depth = {
            let g = ManifestGraph::new(self);
            (0..g.len()).map(|i| g.depth(i)).collect::<Vec<_>>()
        };
        let before = self.nodes.len();
        let mut i = 0;
        self.nodes.retain(|_| {
            let keep = depth[i] < levels;
            i += 1;
            keep
        });
        before - self.nodes.len()
    }
}

impl<'m> ManifestGraph<'m> {
    /// Builds the graph. The manifest must have passed validation (unique
    /// names, known parents, no cycles); anything else is ignored here.
    pub fn new(manifest: &'m Manifest) -> Self {
        let n = manifest.nodes.len();
        let mut graph = DiGraph::with_capacity(n, n);
        let by_name: HashMap<&str, usize> = manifest
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.as_str(), i))
            .collect();
        for _ in 0..n {
            graph.add_node(());
        }
        let mut parent = vec![None; n];
        for (i, node) in manifest.nodes.iter().enumerate() {
            if let Some(&p) = node.parent.as_deref().and_then(|p| by_name.get(p)) {
                parent[i] = Some(p);
                graph.add_edge(NodeIndex::new(p), NodeIndex::new(i), Edge::Contains);
            }
            for dep in &node.depends_on {
                if let Some(&d) = by_name.get(dep.as_str()) {
                    graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), Edge::After);
                }
            }
        }
        let mut child_start = vec![0; n + 1];
        for &p in parent.iter().flatten() {
            child_start[p + 1] += 1;
        }
        for i in 0..n {
            child_start[i + 1] += child_start[i];
        }
        let mut next = child_start.clone();
        let mut child_list = vec![0; child_start[n]];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = *p {
                child_list[next[p]] = i;
                next[p] += 1;
            }
        }
        drop(next);
        let order = kahn_order(&graph);
        let mut depth = vec![0; n];
        let mut local_root: Vec<usize> = (0..n).collect();
        for &i in &order {
            if let Some(p) = parent[i] {
                depth[i] = depth[p] + 1;
                local_root[i] = local_root[p];
            }
        }
        ManifestGraph {
            manifest,
            graph,
            parent,
            child_start,
            child_list,
            depth,
            local_root,
            order,
            by_name,
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    pub fn node(&self, i: usize) -> &'m NodeSpec {
        &self.manifest.nodes[i]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn parent(&self, i: usize) -> Option<usize> {
        self.parent[i]
    }

    pub fn children(&self, i: usize) -> &[usize] {
        &self.child_list[self.child_start[i]..self.child_start[i + 1]]
    }

    /// 0 for nodes on the target host, 1 for nodes inside them, ...
    pub fn depth(&self, i: usize) -> usize {
        self.depth[i]
    }

    /// The node on the target host that `i` sits in (`i` itself if local).
    pub fn local_root(&self, i: usize) -> usize {
        self.local_root[i]
    }

    pub fn max_depth(&self) -> usize {
        self.depth.iter().copied().max().unwrap_or(0)
    }

    /// The nodes `i` must wait for when creating (its parent and its `depends_on`).
    pub fn create_deps(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(i), Direction::Incoming)
            .map(|e| e.source().index())
    }

    /// The nodes that wait for `i` when creating (its children and dependents).
    pub fn create_dependents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(i), Direction::Outgoing)
            .map(|e| e.target().index())
    }

    /// Parents before children, dependencies before dependents; among
    /// independent nodes, shallower first, then manifest order.
    pub fn create_order(&self) -> &[usize] {
        &self.order
    }

    /// The reverse of the create order: children before their parent.
    pub fn destroy_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().rev().copied()
    }

    /// Nodes this driver creates itself (those on the target host).
    pub fn local_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().copied().filter(|&i| self.depth[i] == 0)
    }

    /// Does node `i` hand a subtree to a driver running on it?
    pub fn delegates(&self, i: usize) -> bool {
        self.node(i).kind == NodeKind::Pve && !self.children(i).is_empty()
    }

    /// The chain of PVE nodes from the target host down to the one that runs `i`
    /// (empty for local nodes).
    pub fn runner_path(&self, i: usize) -> Vec<usize> {
        let mut path = Vec::new();
        let mut cur = self.parent[i];
        while let Some(p) = cur {
            path.push(p);
            cur = self.parent[p];
        }
        path.reverse();
        path
    }

    /// How many nodes sit below each node (all depths), computed in one pass.
    pub fn subtree_sizes(&self) -> Vec<usize> {
        let mut size = vec![0usize; self.len()];
        for &i in self.order.iter().rev() {
            if let Some(p) = self.parent[i] {
                size[p] += size[i] + 1;
            }
        }
        size
    }

    /// Every node below `i`, in manifest order.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut below = vec![false; self.len()];
        let mut stack = self.children(i).to_vec();
        while let Some(c) = stack.pop() {
            below[c] = true;
            stack.extend_from_slice(self.children(c));
        }
        (0..self.len()).filter(|&j| below[j]).collect()
    }

    /// The nodes below PVE node `i` as a manifest of their own: what the
    /// driver running on `i` is given (`--manifest-json`). Its roots are
    /// `i`'s children, with `parent` cleared.
    pub fn subtree_manifest(&self, i: usize) -> Manifest {
        let m = self.manifest;
        let nodes: Vec<NodeSpec> = self
            .descendants(i)
            .into_iter()
            .map(|j| {
                let mut n = self.node(j).clone();
                if self.parent[j] == Some(i) {
                    n.parent = None;
                }
                n
            })
            .collect();
        let nested = nodes.iter().any(|n| n.parent.is_some());
        Manifest {
            schema_version: 2,
            name: m.name.clone(),
            description: Some(format!(
                "subtree of '{}' delegated by {}",
                self.node(i).name,
                m.name
            )),
            pattern: if nested {
                Pattern::Tiered
            } else {
                Pattern::Flat
            },
            execution: m.execution.clone(),
            settings: m.settings.clone(),
            nodes,
        }
    }
}

/// Kahn's algorithm with a FIFO seeded in manifest order, so the order is
/// stable and breadth-first (the original walks the tree BFS); among nodes
/// that become ready together, manifest order.
fn kahn_order(graph: &DiGraph<(), Edge, u32>) -> Vec<usize> {
    let edges = graph
        .edge_references()
        .map(|e| (e.source().index(), e.target().index()));
    let mut queue = ReadyQueue::new(graph.node_count(), edges);
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(i) = queue.pop_ready() {
        order.push(i);
        queue.done(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load, Source};

    fn graph_of(yaml: &str) -> Manifest {
        load(Source::new("t.yaml", yaml)).unwrap().manifest
    }

    const TREE: &str = "schema_version: 2\nname: t\npattern: tiered\nnodes:\n\
        - {name: a, type: pve}\n\
        - {name: b, type: vm, parent: a}\n\
        - {name: c, type: pve, parent: a}\n\
        - {name: d, type: vm, parent: c}\n\
        - {name: e, type: vm}\n\
        - {name: f, type: vm, depends_on: [e]}\n";

    fn names(m: &Manifest, idx: impl IntoIterator<Item = usize>) -> Vec<&str> {
        idx.into_iter().map(|i| m.nodes[i].name.as_str()).collect()
    }

    #[test]
    fn create_order_is_parents_first_breadth_first() {
        let m = graph_of(TREE);
        let g = ManifestGraph::new(&m);
        assert_eq!(
            names(&m, g.create_order().to_vec()),
            ["a", "e", "b", "c", "f", "d"]
        );
        assert_eq!(names(&m, g.destroy_order()), ["d", "f", "c", "b", "e", "a"]);
    }

    #[test]
    fn depth_locality_and_delegation() {
        let m = graph_of(TREE);
        let g = ManifestGraph::new(&m);
        let d = g.index_of("d").unwrap();
        assert_eq!(g.depth(d), 2);
        assert_eq!(g.max_depth(), 2);
        assert_eq!(names(&m, g.local_nodes()), ["a", "e", "f"]);
        assert!(g.delegates(g.index_of("a").unwrap()));
        assert!(!g.delegates(g.index_of("e").unwrap()));
        assert_eq!(names(&m, g.runner_path(d)), ["a", "c"]);
        let sizes = g.subtree_sizes();
        assert_eq!(sizes[g.index_of("a").unwrap()], 3);
        assert_eq!(sizes[g.index_of("c").unwrap()], 1);
    }

    #[test]
    fn subtree_round_trips_through_json() {
        let m = graph_of(TREE);
        let g = ManifestGraph::new(&m);
        let sub = g.subtree_manifest(g.index_of("a").unwrap());
        assert_eq!(names(&sub, 0..sub.nodes.len()), ["b", "c", "d"]);
        assert_eq!(sub.nodes[0].parent, None);
        assert_eq!(sub.nodes[2].parent.as_deref(), Some("c"));
        assert_eq!(sub.pattern, Pattern::Tiered);
        let json = sub.to_json();
        let back = load(Source::new("--manifest-json", json.clone())).unwrap();
        assert_eq!(back.manifest, sub);
        assert_eq!(back.manifest.to_json(), json);
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let mut y =
            String::from("schema_version: 2\nname: deep\nnodes:\n- {name: n0, type: pve}\n");
        for i in 1..20_000 {
            y.push_str(&format!(
                "- {{name: n{i}, type: pve, parent: n{}}}\n",
                i - 1
            ));
        }
        let m = graph_of(&y);
        let g = ManifestGraph::new(&m);
        assert_eq!(g.max_depth(), 19_999);
        assert_eq!(g.subtree_sizes()[0], 19_999);
        assert_eq!(g.create_order()[19_999], 19_999);
    }
}
