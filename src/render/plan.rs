//! The dry-run plan as text.

use std::fmt::Write;

use engine::plan::{Action, Plan, Runner, Step};

pub fn text(plan: &Plan) -> String {
    let mut s = String::new();
    let local: usize = plan.phases.first().map_or(0, |p| {
        p.steps.iter().filter(|st| st.is_local()).count()
    });
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
        let _ = writeln!(s, "\nDelegated subtrees (each to a copy of driver on the PVE node, over SSH):");
        for d in &plan.delegations {
            let _ = writeln!(
                s,
                "  {:indent$}{} (depth {}): {} node{} via `driver {} --manifest-json <subtree> -H {} --json-output --events`",
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
    let _ = writeln!(s, "\nDry run: nothing was changed.");
    s
}

fn verb_for_delegation(plan: &Plan) -> &'static str {
    plan.verb.as_str()
}

fn render_steps(s: &mut String, steps: &[Step]) {
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 8]> = steps
        .iter()
        .enumerate()
        .map(|(k, st)| {
            [
                (k + 1).to_string(),
                st.name.clone(),
                st.kind.as_str().to_string(),
                st.host.clone(),
                st.vmid.map_or_else(|| "auto".into(), |v| v.to_string()),
                cell(&st.preset),
                cell(&st.image),
                match &st.runner {
                    Runner::Local => "this driver".into(),
                    Runner::Delegated { .. } => format!("driver on {}", st.host),
                },
            ]
        })
        .collect();
    let header = ["#", "node", "type", "host", "vmid", "preset", "image", "run by"];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |s: &mut String, cells: &[&str]| {
        let _ = write!(s, " ");
        let mut row = String::new();
        for (c, w) in cells.iter().zip(width) {
            let _ = write!(row, " {c:w$}");
        }
        let _ = writeln!(s, "{}", row.trim_end());
    };
    line(s, &header);
    for (r, st) in rows.iter().zip(steps) {
        line(s, &r.each_ref().map(String::as_str));
        let pad = width[0] + 4;
        if !st.after.is_empty() {
            let names: Vec<&str> = st.after.iter().take(5).map(|&a| steps[a].name.as_str()).collect();
            let more = st.after.len().saturating_sub(5);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            let _ = writeln!(s, "{:pad$}after: {}{more}", "", names.join(", "));
        }
        let actions: Vec<String> = st.actions.iter().map(|a| action_label(*a, st)).collect();
        let _ = writeln!(s, "{:pad$}{}", "", actions.join(" -> "));
    }
}

fn action_label(a: Action, st: &Step) -> String {
    match (a, st.delegated_nodes) {
        (Action::Delegate, Some(n)) => {
            format!("delegate ({n} node{} to {})", if n == 1 { "" } else { "s" }, st.name)
        }
        _ => a.name().to_string(),
    }
}
