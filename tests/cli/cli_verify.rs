//! `driver test` on the simulator: every node verified at every depth (a
//! nested PVE's guests by the driver there), a failed verification deep in
//! the tree naming its path, `settings.cleanup_on_failure` both ways, and a
//! wait that polls to its limit and says what it saw.

use crate::common::sim::{sim_driver, SimRun};
use crate::common::Run;
use serde_json::Value;

/// `verify` of each node in a `--json-output` document, by name.
fn verified(v: &Value) -> Vec<(String, String)> {
    v["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {v}"))
        .iter()
        .map(|n| {
            let status = n["verify"]["status"].as_str().unwrap_or("none");
            (n["name"].as_str().unwrap_or("").to_string(), status.into())
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn test_verifies_every_node_at_every_depth() {
    let state = tempfile::tempdir().unwrap();
    let reports = state.path().join("reports");
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n3-deep", "-H", "sim", "--json-output"])
            .args(["--reports-dir", reports.to_str().unwrap()])
            .output()
            .unwrap(),
    )
    .ok();
    let v = out.json();
    assert_eq!(
        verified(&v),
        pairs(&[
            ("root-pve", "passed"),
            ("leaf-pve", "passed"),
            ("edge", "passed")
        ]),
        "{v}"
    );
    // Each verification shows up in the parent's progress with its path.
    for path in ["root-pve", "root-pve/leaf-pve", "root-pve/leaf-pve/edge"] {
        assert!(
            out.stderr.contains(&format!("{path}: verify_ssh done")),
            "{path}:\n{}",
            out.stderr
        );
    }
    // And in the report.
    let md = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .expect("a markdown report");
    let text = std::fs::read_to_string(md).unwrap();
    assert!(text.contains("## Verification"), "{text}");
    assert!(text.contains("| edge | passed |"), "{text}");
}

#[test]
fn a_failed_verification_deep_in_the_tree_fails_the_run_with_its_path() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            // edge's SSH answers, but its `hostname` (what verify_ssh runs)
            // fails: only the verification can catch it.
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "ssh_command_fails", "command": "hostname", "name": "edge"}]"#,
            )
            .args([
                "test",
                "-M",
                "n3-deep",
                "-H",
                "sim",
                "--events",
                "--json-output",
            ])
            .args(["--reports-dir", "reports"])
            .output()
            .unwrap(),
    )
    .code(1);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let result = lines.last().unwrap();
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("root-pve/leaf-pve/edge: verify_ssh: "),
        "{result}"
    );
    assert!(error.contains("simulated failure"), "{error}");
    assert_eq!(
        verified(result),
        pairs(&[
            ("root-pve", "passed"),
            ("leaf-pve", "passed"),
            ("edge", "failed")
        ]),
        "{result}"
    );
    // The failing action came up the event stream with its full path.
    assert!(
        lines.iter().any(|l| l["event"] == "action_finished"
            && l["node"] == "root-pve/leaf-pve/edge"
            && l["action"] == "verify_ssh"
            && l["error"].is_string()),
        "{}",
        out.stdout
    );
    // cleanup_on_failure (the default): nothing is left.
    assert!(
        result["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "destroyed"),
        "{result}"
    );
}

const FAILS: &str = "schema_version: 2\nname: keep-me\nnodes:\n\
    - {name: good, type: vm, preset: vm-small, image: debian-12, vmid: 99601}\n\
    - {name: bad, type: vm, preset: vm-small, image: debian-12, vmid: 99602, depends_on: [good]}\n";

/// `test` of [`FAILS`] with `settings` added, where `bad` gets no address.
fn failing_test(settings: &str) -> (SimRun, Run) {
    let run = SimRun::new(&format!("{FAILS}{settings}"));
    let out = Run::from(
        run.cmd("test", &["--json-output", "--action-timeout", "wait_ip=1"])
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "agent_never_answers", "name": "bad"}]"#,
            )
            .output()
            .unwrap(),
    )
    .code(1);
    (run, out)
}

#[test]
fn cleanup_on_failure_destroys_what_a_failed_test_created() {
    let (run, out) = failing_test("settings: {cleanup_on_failure: true}\n");
    let v = out.json();
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("bad: wait_ip: ")),
        "{v}"
    );
    assert_eq!(run.sim_guests(), [], "{}", out.stderr);
    assert!(
        !out.stderr.contains("kept for inspection"),
        "{}",
        out.stderr
    );
}

#[test]
fn cleanup_on_failure_false_keeps_it_and_says_how_to_remove_it() {
    let (run, out) = failing_test("settings: {cleanup_on_failure: false}\n");
    assert_eq!(
        run.sim_guests(),
        [(99601, "good".to_string()), (99602, "bad".to_string())],
        "{}",
        out.stderr
    );
    let flag = format!("--manifest-file {}", run.manifest.display());
    assert!(
        out.stderr.contains(
            "kept for inspection (settings.cleanup_on_failure: false): good (99601), bad (99602)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("driver destroy {flag} -H sim")),
        "{}",
        out.stderr
    );
    // The command it names removes them.
    run.run("destroy", &["--yes"]).ok();
    assert_eq!(run.sim_guests(), []);
}

#[test]
fn create_alone_never_cleans_up() {
    let run = SimRun::new(&format!("{FAILS}settings: {{cleanup_on_failure: true}}\n"));
    let out = Run::from(
        run.cmd("create", &["--action-timeout", "wait_ip=1"])
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "agent_never_answers", "name": "bad"}]"#,
            )
            .output()
            .unwrap(),
    )
    .code(1);
    assert_eq!(run.sim_guests().len(), 2, "{}", out.stderr);
    run.run("destroy", &["--yes"]).ok();
}

/// A wait for an address polls up to its limit, a last time at it, and
/// says how long it waited and what the host answered last.
#[test]
fn wait_ip_polls_to_its_limit_and_says_what_it_saw() {
    let run = SimRun::new("schema_version: 2\nname: w\nnodes:\n  - {name: mute, type: vm, preset: vm-small, image: debian-12}\n");
    let out = Run::from(
        run.cmd(
            "create",
            &["--json-output", "--action-timeout", "wait_ip=2"],
        )
        .env(
            "PVESIM_FAULTS",
            r#"[{"kind": "agent_never_answers", "name": "mute"}]"#,
        )
        .output()
        .unwrap(),
    )
    .code(1);
    let v = out.json();
    let error = v["error"].as_str().unwrap_or_default();
    // The elapsed time and the number of polls depend on the machine's
    // load; what it says about them does not.
    let (head, tail) = error
        .split_once(" s (")
        .unwrap_or_else(|| panic!("{error}"));
    assert!(
        head.starts_with("mute: wait_ip: no IPv4 address from guest "),
        "{error}"
    );
    let waited: f64 = head.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(waited >= 2.0, "gave up before its limit: {error}");
    assert!(
        tail.contains(" polls); last answer: QEMU guest agent is not running"),
        "{error}"
    );
    run.run("destroy", &["--yes"]).ok();
}
