//! The checks across all converted nodes: unique names and vmids, parents
//! that exist and are pve nodes, no cycles along `parent`, and `depends_on`
//! naming existing siblings without cycles.

use foldhash::HashMap;

use super::{short, Checker, Parsed};
use crate::manifest::{NodeKind, Problem};
use crate::ready_queue::ReadyQueue;

impl<'a> Checker<'a> {
    /// Names, parents, vmids and depends_on across all nodes.
    pub(super) fn graph_checks(&mut self, nodes: &[Parsed]) {
        let mut index: HashMap<&str, usize> =
            HashMap::with_capacity_and_hasher(nodes.len(), Default::default());
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

        let mut vmids: HashMap<u32, usize> =
            HashMap::with_capacity_and_hasher(nodes.len(), Default::default());
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

        // Every name, for suggestions: collected at the first unknown one.
        let mut names: Option<Vec<&str>> = None;
        for p in nodes {
            let Some(parent) = &p.spec.parent else {
                continue;
            };
            let span = p.parent_span.unwrap_or(p.loc.node);
            match index.get(parent.as_str()) {
                None => {
                    let names = names.get_or_insert_with(|| index.keys().copied().collect());
                    let help = self.suggest(parent, names);
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
        let mut edges: Vec<(usize, usize)> = Vec::new();
        let mut any = false;
        // Every name, for suggestions: collected at the first unknown one.
        let mut names: Option<Vec<&str>> = None;
        for (i, p) in nodes.iter().enumerate() {
            for (dep, span) in p.spec.depends_on.iter().zip(&p.depends_spans) {
                any = true;
                match index.get(dep.as_str()) {
                    None => {
                        let names = names.get_or_insert_with(|| index.keys().copied().collect());
                        let help = self.suggest(dep, names);
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
                    Some(&j) => edges.push((j, i)),
                }
            }
        }
        if !any {
            return;
        }
        // Kahn's algorithm: whatever is left over sits on a cycle.
        let mut queue = ReadyQueue::new(nodes.len(), edges);
        while let Some(i) = queue.pop_ready() {
            queue.done(i);
        }
        let stuck = queue.stuck().next();
        if let Some(i) = stuck {
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
