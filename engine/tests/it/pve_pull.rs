//! A `pve` node in pull mode (seed 001's two-phase self-configure): it loads, by its own
//! `execution.mode` or the manifest's `default_mode`, and its plan waits for the node's own
//! setup (`await_pull`, then `await_pve_config`) where push mode sets it up over SSH
//! (`bootstrap` .. `create_api_token`); both then hand its subtree on the same way.

use engine::manifest::{load, ExecMode, Source};
use engine::plan::Action;
use engine::{ManifestGraph, Plan, Verb};

fn create_actions(yaml: &str, node: &str) -> Vec<Action> {
    let m = load(Source::new("m.yaml", yaml))
        .unwrap_or_else(|e| panic!("{:#?}", e.problems))
        .manifest;
    let g = ManifestGraph::new(&m);
    let p = Plan::build(Verb::Create, &g, "h");
    let step = p.phases[0].steps.iter().find(|s| s.name == node).unwrap();
    step.actions.clone()
}

#[test]
fn a_pve_node_in_pull_mode_loads_and_sets_itself_up() {
    let own = "schema_version: 2\nname: t\nnodes:\n  - {name: p, type: pve, spec: pve, \
               execution: {mode: pull}}\n  - {name: v, type: vm, parent: p}\n";
    let by_default = "schema_version: 2\nname: t\nexecution: {default_mode: pull}\nnodes:\n  \
                      - {name: p, type: pve, spec: pve}\n  - {name: v, type: vm, parent: p}\n";
    let pulled = [
        Action::Provision,
        Action::StartVm,
        Action::WaitIp,
        Action::AwaitPull,
        Action::AwaitPveConfig,
        Action::DownloadImages,
        Action::Delegate,
    ];
    assert_eq!(create_actions(own, "p"), pulled);
    assert_eq!(create_actions(by_default, "p"), pulled);

    // Forced to push: set up over SSH; the guests below stay in pull mode.
    let pushed = "schema_version: 2\nname: t\nexecution: {default_mode: pull}\nnodes:\n  - {name: \
                  p, type: pve, execution: {mode: push}}\n  - {name: v, type: vm, parent: p}\n";
    let actions = create_actions(pushed, "p");
    assert!(!actions.contains(&Action::AwaitPveConfig), "{actions:?}");
    for a in [Action::WaitSsh, Action::Bootstrap, Action::CreateApiToken] {
        assert!(actions.contains(&a), "{a:?} in {actions:?}");
    }
    let m = load(Source::new("m.yaml", pushed)).unwrap().manifest;
    assert_eq!(m.nodes[1].mode(m.default_mode()), ExecMode::Pull);
}
