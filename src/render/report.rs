//! `driver test` reports: `reports/YYYYMMDD-HHMMSS.{passed|failed}.{md,json}`,
//! with per-node and per-action timings, errors, the manifest, host and
//! version. The JSON is [`engine::report::Report`]'s shape; the markdown is
//! rendered here, beside the other renderers.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use engine::report::Report;

/// Writes the JSON and markdown report; returns their paths.
pub fn write(dir: &Path, report: &Report<'_>) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let outcome = if report.outcome.success {
        "passed"
    } else {
        "failed"
    };
    let base = format!("{}.{outcome}", engine::clock::stamp(SystemTime::now()));
    let json = dir.join(format!("{base}.json"));
    let md = dir.join(format!("{base}.md"));
    let data = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
    std::fs::write(&json, data)?;
    std::fs::write(&md, markdown(report))?;
    Ok((md, json))
}

pub fn markdown(r: &Report<'_>) -> String {
    use std::fmt::Write;
    let o = r.outcome;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# driver {}: {} on {} — {}\n",
        o.verb.as_str(),
        r.manifest.name,
        r.host,
        if o.success { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(s, "- finished: {}", r.finished_at);
    let _ = writeln!(s, "- duration: {:.1} s", o.duration_seconds);
    let _ = writeln!(s, "- driver: {}", r.driver_version);
    if let Some(e) = &o.error {
        let _ = writeln!(s, "- error: {e}");
    }
    if o.interrupted {
        let _ = writeln!(s, "- interrupted before the end");
    }
    if o.rolled_back {
        let _ = writeln!(s, "- rolled back what this run created");
    }
    let _ = writeln!(
        s,
        "\n## Nodes\n\n| node | status | vmid | ip | seconds | error |\n|---|---|---|---|---|---|"
    );
    for n in &o.nodes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            n.name,
            n.status.as_str(),
            n.vm_id.map_or("-".into(), |v| v.to_string()),
            n.ip.as_deref().unwrap_or("-"),
            n.duration.map_or("-".into(), |d| format!("{d:.1}")),
            n.error.as_deref().unwrap_or("").replace('|', "\\|"),
        );
    }
    verification(&mut s, o);
    let _ = writeln!(
        s,
        "\n## Actions\n\n| node | phase | action | seconds | error |\n|---|---|---|---|---|"
    );
    for n in &o.nodes {
        for a in &n.actions {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {} |",
                n.name,
                a.phase.as_str(),
                a.action.name(),
                a.seconds,
                a.error.as_deref().unwrap_or("").replace('|', "\\|"),
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Manifest\n\n```json\n{}\n```",
        serde_json::to_string_pretty(r.manifest).unwrap_or_default()
    );
    s
}

/// Each node's SSH verification, whichever driver ran it (a node inside
/// a nested PVE is verified by the driver there).
fn verification(s: &mut String, o: &engine::outcome::RunOutcome) {
    use std::fmt::Write;
    if o.nodes.iter().all(|n| n.verify.is_none()) {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Verification\n\n| node | ssh | seconds | error |\n|---|---|---|---|"
    );
    for n in &o.nodes {
        let (status, seconds, error) = match &n.verify {
            Some(v) => (
                v.status.as_str(),
                format!("{:.2}", v.seconds),
                v.error.as_deref().unwrap_or(""),
            ),
            None => ("not verified", "-".into(), ""),
        };
        let _ = writeln!(
            s,
            "| {} | {status} | {seconds} | {} |",
            n.name,
            error.replace('|', "\\|")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::action::{Action, PhaseKind, Verb};
    use engine::manifest::{load, Source};
    use engine::outcome::{ActionTiming, NodeOutcome, NodeStatus, RunOutcome};

    #[test]
    fn writes_named_md_and_json() {
        let m = load(Source::new(
            "m",
            "schema_version: 2\nname: n1\nnodes:\n  - {name: edge, type: vm}\n",
        ))
        .unwrap()
        .manifest;
        let result = RunOutcome {
            verb: Verb::Test,
            success: false,
            duration_seconds: 3.5,
            nodes: vec![NodeOutcome {
                name: "edge".into(),
                status: NodeStatus::Failed,
                vm_id: Some(99001),
                ip: None,
                duration: Some(3.2),
                error: Some("wait_ip: timed out after 5 min".into()),
                actions: vec![ActionTiming {
                    phase: PhaseKind::Create,
                    action: Action::WaitIp,
                    seconds: 3.0,
                    error: Some("timed out after 5 min".into()),
                }],
                verify: None,
            }],
            context: Default::default(),
            error: Some("edge: wait_ip: timed out after 5 min".into()),
            interrupted: false,
            rolled_back: false,
            stop: None,
            heals: Vec::new(),
            snapshot: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let r = Report {
            host: "sim",
            driver_version: "0.1.0 (abc)",
            finished_at: engine::clock::now(),
            manifest: &m,
            outcome: &result,
        };
        let (md, json) = write(dir.path(), &r).unwrap();
        let name = md.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(".failed.md") && name.len() == "20261125-022743.failed.md".len(),
            "{name}"
        );
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(
            text.contains("| edge | failed | 99001 | - | 3.2 | wait_ip: timed out after 5 min |"),
            "{text}"
        );
        assert!(
            text.contains("| edge | create | wait_ip | 3.00 |"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(v["result"]["nodes"][0]["actions"][0]["action"], "wait_ip");
        assert_eq!(v["manifest"]["name"], "n1");
        assert_eq!(v["driver_version"], "0.1.0 (abc)");
        // The file's fields of before stay, in their places.
        assert_eq!(v["verb"], "test");
        assert_eq!(v["success"], false);
        assert_eq!(v["duration_seconds"], 3.5);
        assert_eq!(v["error"], "edge: wait_ip: timed out after 5 min");
        assert_eq!(v["rolled_back"], false);
        assert_eq!(v["result"]["duration"], 3.5);
        assert_eq!(v["result"]["success"], false);
        assert_eq!(v["result"]["nodes"][0]["duration"], 3.2);
    }
}
