//! The manifest's node graph as an indented tree, Graphviz DOT or Mermaid.

use std::fmt::Write;

use engine::manifest::NodeKind;
use engine::ManifestGraph;

/// Deeper levels are drawn at this indent, with their depth written out,
/// so a 100k-deep chain does not print gigabytes of indentation.
const MAX_INDENT: usize = 32;

fn summary(g: &ManifestGraph<'_>, i: usize) -> String {
    let n = g.node(i);
    let mut s = format!("{} [{}]", n.name, n.kind.as_str());
    if let Some(v) = n.vmid {
        let _ = write!(s, " vmid {v}");
    }
    for v in [&n.preset, &n.image].into_iter().flatten() {
        let _ = write!(s, " {v}");
    }
    if let Some(st) = &n.storage {
        // Where it goes without a host is all the manifest can tell;
        // `create --dry-run -H HOST` shows every node's placement.
        let _ = write!(s, " disk on {st} (if cloned full)");
    }
    if !n.depends_on.is_empty() {
        let _ = write!(s, " (after {})", n.depends_on.join(", "));
    }
    s
}

pub fn text(g: &ManifestGraph<'_>) -> String {
    let m = g.manifest;
    let mut s = format!(
        "{} ({} node{}, depth {})\n",
        m.name,
        g.len(),
        if g.len() == 1 { "" } else { "s" },
        g.max_depth() + 1
    );
    let roots: Vec<usize> = (0..g.len()).filter(|&i| g.parent(i).is_none()).collect();
    // (node, is last sibling); `open[d]` says whether depth d still has siblings to come.
    let mut stack: Vec<(usize, bool)> = roots
        .iter()
        .enumerate()
        .rev()
        .map(|(k, &r)| (r, k + 1 == roots.len()))
        .collect();
    let mut open: Vec<bool> = Vec::new();
    while let Some((i, last)) = stack.pop() {
        let d = g.depth(i);
        open.truncate(d);
        let shown = d.min(MAX_INDENT);
        for &o in &open[..shown] {
            s.push_str(if o { "│  " } else { "   " });
        }
        s.push_str(if last { "└─ " } else { "├─ " });
        if d > MAX_INDENT {
            let _ = write!(s, "(depth {d}) ");
        }
        s.push_str(&summary(g, i));
        s.push('\n');
        open.push(!last);
        let kids = g.children(i);
        for (k, &c) in kids.iter().enumerate().rev() {
            stack.push((c, k + 1 == kids.len()));
        }
    }
    s
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(g: &ManifestGraph<'_>) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n",
        quote(&g.manifest.name)
    );
    for i in 0..g.len() {
        let shape = match g.node(i).kind {
            NodeKind::Pve => "box3d",
            NodeKind::Vm => "box",
            NodeKind::Ct => "component",
        };
        let _ = writeln!(
            s,
            "  n{i} [label=\"{}\", shape={shape}];",
            quote(&summary(g, i))
        );
    }
    for i in 0..g.len() {
        if let Some(p) = g.parent(i) {
            let _ = writeln!(s, "  n{p} -> n{i};");
        }
        for d in &g.node(i).depends_on {
            if let Some(j) = g.index_of(d) {
                let _ = writeln!(s, "  n{j} -> n{i} [style=dashed, label=\"before\"];");
            }
        }
    }
    s.push_str("}\n");
    s
}

pub fn mermaid(g: &ManifestGraph<'_>) -> String {
    let mut s = String::from("flowchart TD\n");
    for i in 0..g.len() {
        let label = summary(g, i).replace('"', "#quot;");
        let (open, close) = match g.node(i).kind {
            NodeKind::Pve => ("[[", "]]"),
            NodeKind::Vm => ("[", "]"),
            NodeKind::Ct => ("([", "])"),
        };
        let _ = writeln!(s, "  n{i}{open}\"{label}\"{close}");
    }
    for i in 0..g.len() {
        if let Some(p) = g.parent(i) {
            let _ = writeln!(s, "  n{p} --> n{i}");
        }
        for d in &g.node(i).depends_on {
            if let Some(j) = g.index_of(d) {
                let _ = writeln!(s, "  n{j} -.->|before| n{i}");
            }
        }
    }
    s
}
