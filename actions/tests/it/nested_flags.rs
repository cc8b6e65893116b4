//! What a parent driver's command line passes on to the driver of a nested PVE: `--heal`
//! on `create` (its guests are healed there, by that driver), never on `destroy` or
//! `test --verify-only` (which refuse it); the other flags on every verb.

use std::path::PathBuf;

use actions::heal::Mode;
use actions::nested::{InstalledPve, NestedHost, Nesting};
use engine::plan::{Action, PhaseKind};

fn nesting(heal: Option<Mode>) -> Nesting {
    Nesting {
        binary: PathBuf::from("/nonexistent/driver"),
        version: "driver 0.0.0".into(),
        site_files: Vec::new(),
        ssh_key: PathBuf::from("/nonexistent/key"),
        timeout_buffer: 60,
        action_timeouts: vec![(Action::WaitIp, 600)],
        parallelism: Some(2),
        clones_per_host: None,
        heal,
        child_auth: Default::default(),
        host: NestedHost::Installed(InstalledPve::default()),
    }
}

#[test]
fn heal_is_passed_on_to_a_nested_create_only() {
    for (mode, flag) in [
        (Mode::None, "--heal none"),
        (Mode::Restart, "--heal restart"),
        (Mode::Recreate, "--heal recreate"),
    ] {
        let n = nesting(Some(mode));
        let create = n.passed_on(PhaseKind::Create);
        assert!(create.contains(&format!(" {flag}")), "{create}");
        assert!(
            create.contains(" --action-timeout wait_ip=600") && create.contains(" --parallelism 2"),
            "{create}"
        );
        for phase in [PhaseKind::Destroy, PhaseKind::Verify] {
            let other = n.passed_on(phase);
            assert!(!other.contains("--heal"), "{phase:?}: {other}");
            assert!(other.contains(" --parallelism 2"), "{other}");
        }
    }
    // Not given: the child heals with its own default.
    assert!(!nesting(None)
        .passed_on(PhaseKind::Create)
        .contains("--heal"));
}
