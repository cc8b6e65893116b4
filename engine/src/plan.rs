//! Plans: what a verb will do to each node, in which order, on which host.
//!
//! A plan has phases (create; verify; destroy), each a list of steps, one per
//! node, with the steps it must wait for. Every node of the manifest has a
//! step, so a dry run shows the whole tree; steps below a nested PVE are
//! marked as run by the driver on that PVE (`Runner::Delegated`) and this
//! driver's executor only runs `Runner::Local` steps: the `delegate` action
//! of their PVE node covers them.

use serde::Serialize;

pub use crate::action::{Action, PhaseKind, Verb};
use crate::graph::ManifestGraph;
use crate::manifest::{ExecMode, NodeKind, Provisioner, Settings};

/// Who runs a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Runner<'m> {
    /// This driver.
    Local,
    /// The driver on `via`, the local PVE node this driver delegates to (which
    /// may delegate further down: the step's `host` is the node's own PVE).
    Delegated { via: &'m str },
}

/// Strings are borrowed from the manifest and the target host name: a plan
/// of 100k nodes should not copy them all.
#[derive(Clone, Debug, Serialize)]
pub struct Step<'m> {
    /// Index into the manifest's nodes.
    pub node: usize,
    pub name: &'m str,
    pub kind: NodeKind,
    /// Where the guest lives: the target host or its parent PVE node.
    pub host: &'m str,
    pub depth: usize,
    pub vmid: Option<u32>,
    pub preset: Option<&'m str>,
    pub image: Option<&'m str>,
    /// What the guest is configured as (its spec), its disk size override
    /// and how it is made, as the manifest says (absent: not said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<&'m str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<Provisioner>,
    /// The manifest's `storage:` for its disks (see [`crate::placement`]
    /// for where they go in the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<&'m str>,
    /// The manifest's PVE cluster node (`target_node:`) or policy (`placement:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_node: Option<&'m str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::manifest::NodePolicy>,
    pub mode: ExecMode,
    pub runner: Runner<'m>,
    pub actions: Vec<Action>,
    /// The action among `actions` that makes the guest (a clone or
    /// create): it waits for one of the host's clone slots (PVE serializes
    /// clones on its storage locks), and a guest it made is this run's (a
    /// rollback destroys it). What the executor goes by, so that it names
    /// no action itself.
    #[serde(skip)]
    pub makes_guest: Option<Action>,
    /// Steps (indices into this phase's `steps`) that must finish first.
    pub after: Vec<usize>,
    /// For a delegating node: how many nodes its driver is handed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_nodes: Option<usize>,
}

impl Step<'_> {
    pub fn is_local(&self) -> bool {
        self.runner == Runner::Local
    }

    /// The step hands the nodes below its node to the driver running
    /// there: the executor gives it their manifest.
    pub fn hands_subtree(&self) -> bool {
        self.delegated_nodes.is_some()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Phase<'m> {
    pub kind: PhaseKind,
    pub steps: Vec<Step<'m>>,
}

/// What this driver hands to the driver on a nested PVE node.
#[derive(Clone, Debug, Serialize)]
pub struct Delegation<'m> {
    pub node: &'m str,
    pub nodes: usize,
    pub depth: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan<'m> {
    pub verb: Verb,
    pub manifest: &'m str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'m str>,
    /// The policies the run follows (`on_error` as `--on-error` made it).
    pub settings: &'m Settings,
    pub host: &'m str,
    pub nodes: usize,
    pub phases: Vec<Phase<'m>>,
    /// Subtrees handed to nested drivers, outermost first.
    pub delegations: Vec<Delegation<'m>>,
}

impl<'m> Plan<'m> {
    pub fn build(verb: Verb, graph: &ManifestGraph<'m>, host: &'m str) -> Plan<'m> {
        let sizes = graph.subtree_sizes();
        let phases = match verb {
            Verb::Create => vec![create_phase(graph, host, &sizes)],
            Verb::Destroy => vec![destroy_phase(graph, host, &sizes)],
            Verb::Test => {
                let mut p = vec![create_phase(graph, host, &sizes)];
                if graph.manifest.settings.verify_ssh {
                    p.push(verify_phase(graph, host, &sizes));
                }
                p.push(destroy_phase(graph, host, &sizes));
                p
            }
        };
        let delegations = graph
            .create_order()
            .iter()
            .copied()
            .filter(|&i| graph.delegates(i))
            .map(|i| Delegation {
                node: &graph.node(i).name,
                nodes: sizes[i],
                depth: graph.depth(i),
            })
            .collect();
        Plan {
            verb,
            manifest: &graph.manifest.name,
            description: graph.manifest.description.as_deref(),
            settings: &graph.manifest.settings,
            host,
            nodes: graph.len(),
            phases,
            delegations,
        }
    }

    /// Puts `install_pve` before `bootstrap` for each `pve` node whose image
    /// is not one of `images_with_pve` (site-config `images/NAME.yaml`
    /// `pve: true`): a plain Debian guest gets Proxmox VE installed rather
    /// than refused. (The step checks first, so an image that has PVE after
    /// all costs one probe.) A `pve` node in pull mode has no `bootstrap`: its
    /// own self-configure installs PVE (its `ensure_pve`).
    pub fn install_pve(&mut self, images_with_pve: &std::collections::BTreeSet<String>) {
        for s in self.phases.iter_mut().flat_map(|p| p.steps.iter_mut()) {
            let lacks = s.image.is_some_and(|i| !images_with_pve.contains(i));
            if s.kind != NodeKind::Pve || !lacks || s.actions.contains(&Action::InstallPve) {
                continue;
            }
            if let Some(at) = s.actions.iter().position(|a| *a == Action::Bootstrap) {
                s.actions.insert(at, Action::InstallPve);
            }
        }
    }

    /// Steps that run in this process, over all phases.
    pub fn local_steps(&self) -> usize {
        self.phases
            .iter()
            .flat_map(|p| &p.steps)
            .filter(|s| s.is_local())
            .count()
    }
}

/// Destroy steps for just `nodes` (children first), without delegation: what
/// a rollback undoes. A nested PVE's own guests go with its VM.
pub fn rollback_phase<'m>(graph: &ManifestGraph<'m>, host: &'m str, nodes: &[usize]) -> Phase<'m> {
    let mut wanted = vec![false; graph.len()];
    for &i in nodes {
        wanted[i] = true;
    }
    let mut slot = vec![usize::MAX; graph.len()];
    let mut steps = Vec::new();
    for i in graph.destroy_order().filter(|&i| wanted[i]) {
        slot[i] = steps.len();
        steps.push(step(
            graph,
            i,
            host,
            vec![Action::ShutdownVm, Action::DestroyVm],
        ));
    }
    for s in steps.iter_mut() {
        let mut after: Vec<usize> = graph
            .create_dependents(s.node)
            .filter(|&d| wanted[d])
            .map(|d| slot[d])
            .collect();
        after.sort_unstable();
        s.after = after;
    }
    Phase {
        kind: PhaseKind::Destroy,
        steps,
    }
}

fn step<'m>(graph: &ManifestGraph<'m>, i: usize, host: &'m str, actions: Vec<Action>) -> Step<'m> {
    let n = graph.node(i);
    let root = graph.local_root(i);
    let runner = if root == i {
        Runner::Local
    } else {
        Runner::Delegated {
            via: &graph.node(root).name,
        }
    };
    Step {
        node: i,
        name: &n.name,
        kind: n.kind,
        host: match graph.parent(i) {
            Some(p) => &graph.node(p).name,
            None => host,
        },
        depth: graph.depth(i),
        vmid: n.vmid,
        preset: n.preset.as_deref(),
        image: n.image.as_deref(),
        spec: n.spec.as_deref(),
        disk: n.disk,
        provisioner: n.provisioner,
        storage: n.storage.as_deref(),
        target_node: n.target_node.as_deref(),
        placement: n.placement,
        mode: n.mode(graph.manifest.default_mode()),
        runner,
        actions,
        makes_guest: None,
        after: Vec::new(),
        delegated_nodes: None,
    }
}

/// Fills `after` from node-level dependencies, given each node's step index.
fn link(steps: &mut [Step<'_>], slot: &[usize], deps: impl Fn(usize) -> Vec<usize>) {
    for s in steps.iter_mut() {
        let mut after: Vec<usize> = deps(s.node).into_iter().map(|d| slot[d]).collect();
        after.sort_unstable();
        after.dedup();
        s.after = after;
    }
}

fn create_phase<'m>(graph: &ManifestGraph<'m>, host: &'m str, sizes: &[usize]) -> Phase<'m> {
    let settings = &graph.manifest.settings;
    let mut slot = vec![0; graph.len()];
    let mut steps = Vec::with_capacity(graph.len());
    for (k, &i) in graph.create_order().iter().enumerate() {
        slot[i] = k;
        let n = graph.node(i);
        let mut actions = Vec::with_capacity(8);
        // Nodes cloned on the target host need their template there; a
        // nested PVE's guests get theirs from its DownloadImages.
        if graph.parent(i).is_none() && n.image.is_some() {
            actions.push(Action::EnsureImage);
        }
        actions.extend([Action::Provision, Action::StartVm, Action::WaitIp]);
        let pull = n.mode(graph.manifest.default_mode()) == ExecMode::Pull;
        let pve = n.kind == NodeKind::Pve;
        if pull {
            actions.push(Action::AwaitPull);
            // A PVE node in pull mode sets itself up as a PVE host after its spec
            // (seed 001's two-phase self-configure): what push does over SSH below.
            if pve {
                actions.push(Action::AwaitPveConfig);
            }
        } else if settings.verify_ssh || pve {
            // A PVE node is set up over SSH, so it must answer SSH either way.
            actions.push(Action::WaitSsh);
        }
        // A guest with a spec is configured over SSH (push mode); a PVE
        // node's spec is what its bootstrap makes of it.
        // (It waits for SSH itself when there is a playbook to run.)
        if !pull && n.spec.is_some() && !pve {
            actions.push(Action::Configure);
        }
        if pve && !pull {
            actions.extend([
                Action::Bootstrap,
                Action::CopySecrets,
                Action::ConfigureBridge,
                Action::CreateApiToken,
            ]);
        }
        // Its guests' images: the parent knows the subtree (as the original's executor
        // downloads them after a PVE node's self-configure).
        if pve {
            actions.push(Action::DownloadImages);
        }
        let mut s = step(graph, i, host, actions);
        s.makes_guest = Some(Action::Provision);
        if graph.delegates(i) {
            s.actions.push(Action::Delegate);
            s.delegated_nodes = Some(sizes[i]);
        }
        steps.push(s);
    }
    link(&mut steps, &slot, |i| graph.create_deps(i).collect());
    Phase {
        kind: PhaseKind::Create,
        steps,
    }
}

/// Every node is verified: a nested PVE node's own guests by the driver
/// there (its step hands it the subtree, as in create), so a node at any
/// depth is reached from its own PVE.
fn verify_phase<'m>(graph: &ManifestGraph<'m>, host: &'m str, sizes: &[usize]) -> Phase<'m> {
    let steps = graph
        .create_order()
        .iter()
        .map(|&i| {
            let mut s = step(graph, i, host, vec![Action::VerifySsh]);
            if graph.delegates(i) {
                s.actions.push(Action::Delegate);
                s.delegated_nodes = Some(sizes[i]);
            }
            s
        })
        .collect();
    Phase {
        kind: PhaseKind::Verify,
        steps,
    }
}

fn destroy_phase<'m>(graph: &ManifestGraph<'m>, host: &'m str, sizes: &[usize]) -> Phase<'m> {
    let mut slot = vec![0; graph.len()];
    let mut steps = Vec::with_capacity(graph.len());
    for (k, i) in graph.destroy_order().enumerate() {
        slot[i] = k;
        let mut actions = Vec::with_capacity(3);
        let delegates = graph.delegates(i);
        if delegates {
            actions.push(Action::Delegate);
        }
        actions.extend([Action::ShutdownVm, Action::DestroyVm]);
        let mut s = step(graph, i, host, actions);
        if delegates {
            s.delegated_nodes = Some(sizes[i]);
        }
        steps.push(s);
    }
    link(&mut steps, &slot, |i| graph.create_dependents(i).collect());
    Phase {
        kind: PhaseKind::Destroy,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load, Source};

    const N3: &str = "schema_version: 2\nname: n3\npattern: tiered\nnodes:\n\
        - {name: root-pve, type: pve, vmid: 99011}\n\
        - {name: leaf-pve, type: pve, parent: root-pve, vmid: 99021}\n\
        - {name: edge, type: vm, parent: leaf-pve, vmid: 99031}\n";

    #[test]
    fn create_plan_delegates_below_the_first_pve() {
        let m = load(Source::new("t", N3)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let p = Plan::build(Verb::Create, &g, "father");
        let steps = &p.phases[0].steps;
        assert_eq!(steps[0].name, "root-pve");
        assert!(steps[0].is_local());
        assert_eq!(steps[0].host, "father");
        assert_eq!(*steps[0].actions.last().unwrap(), Action::Delegate);
        assert_eq!(steps[0].delegated_nodes, Some(2));
        assert!(steps[0].hands_subtree());
        assert_eq!(steps[0].makes_guest, Some(Action::Provision));
        assert_eq!(steps[2].host, "leaf-pve");
        assert_eq!(steps[2].runner, Runner::Delegated { via: "root-pve" });
        assert_eq!(steps[1].after, vec![0]);
        assert_eq!(p.local_steps(), 1);
        assert_eq!(p.delegations.len(), 2);
        assert_eq!(p.delegations[1].node, "leaf-pve");
    }

    #[test]
    fn destroy_plan_is_reversed_and_delegates_first() {
        let m = load(Source::new("t", N3)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let p = Plan::build(Verb::Destroy, &g, "father");
        let steps = &p.phases[0].steps;
        let names: Vec<_> = steps.iter().map(|s| s.name).collect();
        assert_eq!(names, ["edge", "leaf-pve", "root-pve"]);
        assert_eq!(steps[2].actions[0], Action::Delegate);
        assert!(steps[2].hands_subtree() && !steps[0].hands_subtree());
        assert_eq!(steps[2].after, vec![1]);
        assert_eq!(steps[0].actions, [Action::ShutdownVm, Action::DestroyVm]);
        assert!(steps.iter().all(|s| s.makes_guest.is_none()));
    }

    #[test]
    fn test_plan_has_three_phases() {
        let m = load(Source::new("t", N3)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let p = Plan::build(Verb::Test, &g, "sim");
        let kinds: Vec<_> = p.phases.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [PhaseKind::Create, PhaseKind::Verify, PhaseKind::Destroy]
        );
        // Nodes below a nested PVE are verified by the driver there.
        let verify = &p.phases[1].steps;
        assert_eq!(verify[0].actions, [Action::VerifySsh, Action::Delegate]);
        assert_eq!(verify[0].delegated_nodes, Some(2));
        assert_eq!(verify[2].runner, Runner::Delegated { via: "root-pve" });
    }

    #[test]
    fn install_pve_only_where_the_image_lacks_pve() {
        let y = "schema_version: 2\nname: i\nnodes:\n\
            - {name: plain, type: pve, image: debian-13}\n\
            - {name: ready, type: pve, image: debian-13-pve}\n\
            - {name: vm, type: vm, image: debian-13}\n";
        let m = load(Source::new("t", y)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let mut p = Plan::build(Verb::Test, &g, "h");
        let with: std::collections::BTreeSet<String> = ["debian-13-pve".to_string()].into();
        p.install_pve(&with);
        p.install_pve(&with);
        let installs = |name: &str| -> Vec<usize> {
            p.phases
                .iter()
                .flat_map(|ph| &ph.steps)
                .filter(|s| s.name == name)
                .map(|s| {
                    s.actions
                        .iter()
                        .filter(|a| **a == Action::InstallPve)
                        .count()
                })
                .collect()
        };
        assert_eq!(installs("plain"), [1, 0, 0], "create only, once");
        assert_eq!(installs("ready"), [0, 0, 0]);
        assert_eq!(installs("vm"), [0, 0, 0]);
        let plain = &p.phases[0]
            .steps
            .iter()
            .find(|s| s.name == "plain")
            .unwrap();
        let at = |a| plain.actions.iter().position(|x| *x == a).unwrap();
        assert_eq!(at(Action::InstallPve) + 1, at(Action::Bootstrap));
        assert!(at(Action::WaitSsh) < at(Action::InstallPve));
    }

    #[test]
    fn a_pve_node_in_pull_mode_waits_for_its_self_configure_then_delegates() {
        let y = "schema_version: 2\nname: p\nnodes:\n\
            - {name: hv, type: pve, image: debian-13, execution: {mode: pull}}\n\
            - {name: e, type: vm, parent: hv}\n";
        let m = load(Source::new("t", y)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let mut p = Plan::build(Verb::Create, &g, "h");
        // Its own phase 2 installs PVE (`ensure_pve`): no install_pve step over SSH.
        p.install_pve(&Default::default());
        assert_eq!(
            p.phases[0].steps[0].actions,
            [
                Action::EnsureImage,
                Action::Provision,
                Action::StartVm,
                Action::WaitIp,
                Action::AwaitPull,
                Action::AwaitPveConfig,
                Action::DownloadImages,
                Action::Delegate
            ]
        );
    }

    #[test]
    fn pull_nodes_wait_for_the_guest_instead_of_ssh() {
        let y =
            "schema_version: 2\nname: p\nnodes:\n- {name: e, type: vm, execution: {mode: pull}}\n";
        let m = load(Source::new("t", y)).unwrap().manifest;
        let g = ManifestGraph::new(&m);
        let p = Plan::build(Verb::Create, &g, "h");
        assert_eq!(
            p.phases[0].steps[0].actions,
            [
                Action::Provision,
                Action::StartVm,
                Action::WaitIp,
                Action::AwaitPull
            ]
        );
    }
}
