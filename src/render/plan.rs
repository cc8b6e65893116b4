//! The dry-run plan as text.

use std::borrow::Cow;
use std::fmt::Write;

use engine::placement::Placement;
use engine::plan::{Action, Plan, Runner, Step};

/// The plan, and where the nodes' disks go (`placement`, empty for destroy).
pub fn text(plan: &Plan<'_>, placement: &[Placement]) -> String {
    let mut s = String::new();
    let local: usize = plan
        .phases
        .first()
        .map_or(0, |p| p.steps.iter().filter(|st| st.is_local()).count());
    let _ = writeln!(
        s,
        "Plan: {} '{}' on {} ({} node{}: {} run by this driver, {} delegated)",
        plan.verb.as_str(),
        plan.manifest,
        plan.host,
        plan.nodes,
        if plan.nodes == 1 { "" } else { "s" },
        local,
        plan.nodes - local,
    );
    for phase in &plan.phases {
        let _ = writeln!(s, "\nPhase {}:", phase.kind.as_str());
        render_steps(&mut s, &phase.steps);
    }
    if !plan.delegations.is_empty() {
        let _ = writeln!(
            s,
            "\nDelegated subtrees (each to a copy of driver on the PVE node, over SSH):"
        );
        for d in &plan.delegations {
            let _ = writeln!(
                s,
                "  {:indent$}{} (depth {}): {} node{} via `driver {} --manifest-file subtree.json -H {} --json-output --events` over SSH",
                "",
                d.node,
                d.depth,
                d.nodes,
                if d.nodes == 1 { "" } else { "s" },
                verb_for_delegation(plan),
                d.node,
                indent = 2 * d.depth.min(16),
            );
        }
    }
    if !placement.is_empty() {
        let _ = writeln!(s, "\nDisks:");
        let w = placement.iter().map(|p| p.node.len()).max().unwrap_or(0);
        for p in placement {
            let _ = writeln!(s, "  {:w$}  {}", p.node, p.describe());
        }
    }
    let _ = writeln!(s, "\nDry run: nothing was changed.");
    s
}

fn verb_for_delegation(plan: &Plan<'_>) -> &'static str {
    plan.verb.as_str()
}

fn cells<'a>(k: usize, st: &'a Step<'a>) -> [Cow<'a, str>; 8] {
    [
        Cow::Owned((k + 1).to_string()),
        Cow::Borrowed(st.name),
        Cow::Borrowed(st.kind.as_str()),
        Cow::Borrowed(st.host),
        st.vmid
            .map_or(Cow::Borrowed("auto"), |v| Cow::Owned(v.to_string())),
        Cow::Borrowed(st.preset.unwrap_or("-")),
        Cow::Borrowed(st.image.unwrap_or("-")),
        match &st.runner {
            Runner::Local => Cow::Borrowed("this driver"),
            Runner::Delegated { .. } => Cow::Owned(format!("driver on {}", st.host)),
        },
    ]
}

/// A table of steps; widths are measured in a first pass so that no
/// per-row strings are kept (plans can have 100k steps).
fn render_steps(s: &mut String, steps: &[Step<'_>]) {
    let header = [
        "#", "node", "type", "host", "vmid", "preset", "image", "run by",
    ];
    let mut width = header.map(str::len);
    for (k, st) in steps.iter().enumerate() {
        for (w, c) in width.iter_mut().zip(cells(k, st)) {
            *w = (*w).max(c.len());
        }
    }
    let line = |s: &mut String, cells: &[&str]| {
        let start = s.len();
        s.push(' ');
        for (c, w) in cells.iter().zip(width) {
            let _ = write!(s, " {c:w$}");
        }
        let end = s[start..].trim_end().len() + start;
        s.truncate(end);
        s.push('\n');
    };
    line(s, &header);
    let pad = width[0] + 4;
    for (k, st) in steps.iter().enumerate() {
        let row = cells(k, st);
        line(s, &row.each_ref().map(|c| c.as_ref()));
        if !st.after.is_empty() {
            let names: Vec<&str> = st.after.iter().take(5).map(|&a| steps[a].name).collect();
            let more = st.after.len().saturating_sub(5);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(s, "{:pad$}after: {}{more}", "", names.join(", "));
        }
        let _ = write!(s, "{:pad$}", "");
        for (j, a) in st.actions.iter().enumerate() {
            if j > 0 {
                s.push_str(" -> ");
            }
            s.push_str(&action_label(*a, st));
        }
        s.push('\n');
    }
}

fn action_label(a: Action, st: &Step<'_>) -> String {
    match (a, st.delegated_nodes) {
        (Action::Delegate, Some(n)) => {
            format!(
                "delegate ({n} node{} to {})",
                if n == 1 { "" } else { "s" },
                st.name
            )
        }
        _ => a.name().to_string(),
    }
}
