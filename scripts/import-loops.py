#!/usr/bin/env python3
"""Finds import loops between the modules of each crate of the workspace.

    scripts/import-loops.py [--deep] [CRATE...]

CRATE: engine, actions, sim or driver (default: all).

For every crate (engine, actions, sim, the driver binary) each source file
is mapped to its top-level module (`engine/src/executor/step.rs` is
`executor`), and every `crate::X` path in its code (`use`, `pub use`, and
paths in expressions; comments and unit tests are skipped) is an edge to
module `X`. A
strongly connected component of more than one module is a loop.

--deep also checks inside each top-level module that is a folder: its
files are the nodes, and `super::X` / `self::X` / `use X::` paths (X a
sibling file, else the folder's `mod.rs`) and `crate::M::X` paths from
within `M` the edges.

Exits 1 when there is a loop, printing each with one edge that closes it
(file and line).
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = {"engine": "engine/src", "actions": "actions/src", "sim": "sim/src", "driver": "src"}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def code_lines(path):
    """(line number, text) of the file's code, without comments and tests
    (a `tests.rs`, or a `#[cfg(test)]` module to the end of the file)."""
    if path.name == "tests.rs":
        return
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if stripped == "#[cfg(test)]" and n < len(lines) and lines[n].lstrip().startswith("mod tests"):
            return
        if stripped.startswith("//"):
            continue
        yield n, line.split(" //")[0]


def heads(text, prefix):
    """First segments of the paths after `prefix::` (groups `{a, b::c}` expanded)."""
    out = []
    for m in re.finditer(re.escape(prefix) + r"::(\{|" + IDENT + ")", text):
        if m.group(1) != "{":
            out.append(m.group(1))
            continue
        depth, i, item = 1, m.end(), ""
        items = []
        while i < len(text) and depth:
            c = text[i]
            depth += c == "{"
            depth -= c == "}"
            if depth == 1 and c == ",":
                items.append(item)
                item = ""
            elif depth:
                item += c
            i += 1
        items.append(item)
        for it in items:
            seg = re.match(r"\s*(" + IDENT + ")", it)
            if seg:
                out.append(seg.group(1))
    return out


def sccs(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def report(name, edges):
    """edges: {(a, b): (file, line)}; prints loops, returns how many."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    loops = [c for c in sccs(graph) if len(c) > 1]
    for comp in loops:
        members = set(comp)
        print(f"{name}: loop among {sorted(members)}")
        for (a, b), (f, n) in sorted(edges.items()):
            if a in members and b in members:
                print(f"    {a} -> {b}  ({f}:{n})")
    return len(loops)


def top_level(crate_src):
    files = sorted(crate_src.rglob("*.rs"))
    mods = {}
    for f in files:
        rel = f.relative_to(crate_src)
        mods[f] = rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 or rel.stem not in ("lib", "main") else "(root)"
    return files, mods


def check(deep, only):
    loops = 0
    for crate, src in CRATES.items():
        if only and crate not in only:
            continue
        crate_src = ROOT / src
        files, mods = top_level(crate_src)
        known = set(mods.values())
        edges = {}
        for f in files:
            for n, text in code_lines(f):
                for h in heads(text, "crate"):
                    if h in known and h != mods[f]:
                        edges.setdefault((mods[f], h), (f.relative_to(ROOT), n))
        print(f"{crate}: {len(known)} modules, {len(edges)} module-to-module edges")
        loops += report(crate, edges)
        if not deep:
            continue
        for folder in sorted({f.parent for f in files if f.parent != crate_src}):
            if folder.parent != crate_src:
                continue  # deeper folders are part of their top-level module's files
            inner = sorted(folder.rglob("*.rs"))
            name = folder.name
            node = {f: ("mod" if f.name == "mod.rs" else f.relative_to(folder).parts[0].removesuffix(".rs")) for f in inner}
            siblings = set(node.values())
            sub_edges = {}
            for f in inner:
                me = node[f]
                for n, text in code_lines(f):
                    targets = []
                    if f.parent == folder:
                        for h in heads(text, "super"):
                            targets.append(h if h in siblings and me != "mod" else "mod")
                        for h in heads(text, "self"):
                            targets.append(h if me == "mod" and h in siblings else me)
                        if me == "mod":
                            for m in re.finditer(r"\buse (" + IDENT + ")::", text):
                                if m.group(1) in siblings:
                                    targets.append(m.group(1))
                    for h in heads(text, f"crate::{name}"):
                        targets.append(h if h in siblings else "mod")
                    for t in targets:
                        if t != me:
                            sub_edges.setdefault((me, t), (f.relative_to(ROOT), n))
            loops += report(f"{crate}::{name}", sub_edges)
    return loops


if __name__ == "__main__":
    args = sys.argv[1:]
    found = check("--deep" in args, [a for a in args if not a.startswith("--")])
    print("no import loops" if not found else f"{found} loop(s)")
    sys.exit(1 if found else 0)
