//! The human summary printed when a run ends.

use std::fmt::Write;

use engine::output::RunOutput;

pub fn text(out: &RunOutput<'_>) -> String {
    let o = &out.outcome;
    let mut s = String::new();
    let w = o
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "\n  {:w$}  {:10}  {:9}  {:15}  {:>8}",
        "node", "status", "vmid", "ip", "seconds"
    );
    for n in &o.nodes {
        let _ = writeln!(
            s,
            "  {:w$}  {:10}  {:9}  {:15}  {:>8}{}",
            n.name,
            n.status.as_str(),
            n.vm_id.map_or("-".into(), |v| v.to_string()),
            n.ip.as_deref().unwrap_or("-"),
            n.duration.map_or("-".into(), |d| format!("{d:.1}")),
            n.error
                .as_ref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default(),
        );
    }
    if !o.heals.is_empty() {
        let _ = writeln!(s, "\n  healed:");
        for h in &o.heals {
            let _ = writeln!(
                s,
                "  {:w$}  {:8}  {:7}  {}{}",
                h.node,
                h.what,
                h.result.as_str(),
                h.detail,
                h.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{} {} '{}' on {} in {:.1} s",
        if o.success { "ok:" } else { "FAILED:" },
        o.verb.as_str(),
        out.manifest.as_deref().unwrap_or("?"),
        out.host,
        o.duration_seconds
    );
    s
}
