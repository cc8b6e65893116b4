//! A `pve` node in pull mode is refused at load (validate) time with a hint: its pull-mode
//! self-configure (seed 001's two-phase `pve-config` through `/config/{identity}`) is not
//! built, and no setting is taken and then ignored.

use engine::manifest::{load, ExecMode, Source};

/// A problem: (message, line, column, help).
type Found = (String, Option<usize>, Option<usize>, Option<String>);

/// The problems of `yaml`.
fn problems(yaml: &str) -> Vec<Found> {
    match load(Source::new("m.yaml", yaml)) {
        Ok(_) => panic!("expected problems, manifest loaded:\n{yaml}"),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.message, p.line, p.column, p.help))
            .collect(),
    }
}

#[test]
fn a_pve_node_in_pull_mode_is_refused_with_a_hint() {
    let ps = problems(
        "schema_version: 2\nname: t\nnodes:\n  - {name: p, type: pve, execution: {mode: pull}}\n",
    );
    assert_eq!(ps.len(), 1, "{ps:#?}");
    let (msg, line, col, help) = &ps[0];
    assert_eq!(
        msg,
        "node 'p' is a pve node in pull mode (its execution.mode is pull): PVE nodes are set up \
         over SSH (push); their pull-mode self-configure is not supported"
    );
    assert_eq!((*line, *col), (Some(4), Some(5)));
    assert!(help.as_deref().unwrap().contains("execution: {mode: push}"));
    let ps = problems(
        "schema_version: 2\nname: t\nexecution: {default_mode: pull}\nnodes:\n  - {name: p, \
         type: pve}\n  - {name: v, type: vm, parent: p}\n",
    );
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(
        ps[0]
            .0
            .contains("(the manifest's execution.default_mode is pull)"),
        "{ps:#?}"
    );
    // Forced to push, it loads; the guests below it stay in pull mode.
    let m = load(Source::new(
        "m.yaml",
        "schema_version: 2\nname: t\nexecution: {default_mode: pull}\nnodes:\n  - {name: p, \
         type: pve, execution: {mode: push}}\n  - {name: v, type: vm, parent: p}\n",
    ))
    .unwrap()
    .manifest;
    assert_eq!(m.nodes[1].mode(m.default_mode()), ExecMode::Pull);
}
