#!/usr/bin/env python3
"""Nested PVE on the simulator: makespan over critical path, against --parallelism 1,
and the cost of each level of delegation, from `driver create --events`.

usage: bench-nested.py run RUNS DRIVER OUTDIR   (what scripts/bench-nested.sh calls)
       bench-nested.py analyse LOG...           (the tables again, from saved logs)

`run` does, RUNS times, each case below in turn (interleaved, so machine noise hits
all of them alike): `driver create -M MANIFEST -H sim --events [ARGS]` in a fresh
DRIVER_STATE_DIR (timed; each stdout line is stamped with the time it arrived and
saved in OUTDIR/MANIFEST.CASE.N.ndjson), then `driver destroy --yes` (default
parallelism, timed apart). Then it prints markdown tables for BENCHMARKS.md.

Per run, from the events (a child driver's events come relayed, their node names
prefixed with the delegating node's path: `root-pve/leaf-pve/edge`):
- makespan: the run_finished event's seconds (the executor's run; the wall time of
  the whole command, simulator start and preflight included, is shown too);
- a node's own work: the seconds of its action_finished events, `delegate` excluded
  (it contains the child's run); the critical path: the longest chain of own work
  from a top node down the delegation paths (for these manifests the path is the
  parent chain: no depends_on);
- delegation overhead of a `delegate` action: its seconds minus the child's makespan,
  taken as first relayed action_started to last relayed action_finished under its
  prefix (by arrival time: a child's run_finished is not relayed); split into
  start-up (delegate started -> first child action) and wrap-up (last child action
  -> delegate finished);
- where the time goes, along the chain that finished last: own work; the wait
  before a node's first action, split into waiting for a clone slot (while its host
  had --clones-per-host provisions running) and waiting for a step slot
  (--parallelism; the rest of the wait: a step waiting for a clone slot holds a
  step slot), counted from its level's run start (the run_started event, or the
  first relayed event of the child run); gaps between a node's actions;
  delegation overhead; and the rest (e.g. after the last step).
"""
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared runner: wall time, peak RSS, stdout lines)

# (manifest, case name for files, label, extra create arguments)
CASES = [
    ("n3-deep", "default", "default (16, adaptive clones)", []),
    ("n3-deep", "p1", "--parallelism 1", ["--parallelism", "1"]),
    ("n2-wide", "default", "default (16, adaptive clones)", []),
    ("n2-wide", "p8c4", "--parallelism 8 --clones-per-host 4 (the earlier defaults)",
     ["--parallelism", "8", "--clones-per-host", "4"]),
    ("n2-wide", "p1", "--parallelism 1", ["--parallelism", "1"]),
    ("n2-wide", "p10c10", "--parallelism 10 --clones-per-host 10",
     ["--parallelism", "10", "--clones-per-host", "10"]),
]
PVE_SETUP = {"bootstrap", "copy_secrets", "configure_bridge", "create_api_token",
             "download_images"}


def parent(node):
    return node.rpartition("/")[0] or None


def analyse(records, clones=4):
    """One run's figures from its stamped records (clones: --clones-per-host)."""
    evs = [r for r in records if "event" in r]
    t_run = next(r["t"] for r in evs if r["event"] == "run_started")
    makespan = next(r["seconds"] for r in evs if r["event"] == "run_finished")
    started, finished, acts, first_t = {}, {}, {}, {}
    open_ = {}
    for r in evs:
        n = r.get("node")
        if n is None or r.get("phase") not in (None, "create"):
            continue
        for p in prefixes(n):
            first_t.setdefault(p, r["t"])
        if r["event"] == "step_started":
            started[n] = r["t"]
            acts.setdefault(n, [])
        elif r["event"] == "step_finished":
            finished[n] = r["t"]
        elif r["event"] == "action_started":
            open_[(n, r["action"])] = r["t"]
        elif r["event"] == "action_finished":
            t0 = open_.pop((n, r["action"]), r["t"] - r["seconds"])
            acts.setdefault(n, []).append((r["action"], t0, r["t"], r["seconds"]))
    own = {n: sum(s for a, _, _, s in a_ if a != "delegate") for n, a_ in acts.items()}

    def chain(n):
        return own.get(n, 0.0) + (chain(parent(n)) if parent(n) else 0.0)

    leaf = max(acts, key=chain)
    critical = chain(leaf)
    path, n = [], leaf
    while n:
        path.insert(0, n.rpartition("/")[2])
        n = parent(n)

    delegations = []
    for d, a_ in acts.items():
        for a, t0, t1, s in a_:
            if a != "delegate":
                continue
            kids = [x for n, xs in acts.items() if n.startswith(d + "/") for x in xs]
            c0 = min(x[1] for x in kids)
            c1 = max(x[2] for x in kids)
            delegations.append({
                "node": d, "level": d.count("/") + 1, "seconds": s, "child": c1 - c0,
                "overhead": s - (c1 - c0), "startup": c0 - t0, "wrapup": t1 - c1,
                "pve_setup": sum(x[3] for x in a_ if x[0] in PVE_SETUP),
            })

    # Where the time goes, along the chain that finished last.
    parts = dict.fromkeys(["own", "step_wait", "clone_wait", "gaps", "delegation"], 0.0)
    level, ready = None, t_run
    while True:
        kids = [n for n in acts if parent(n) == level and n in finished]
        if not kids:
            break
        n = max(kids, key=finished.get)
        a_ = sorted(acts[n], key=lambda x: x[1])
        parts["own"] += own[n]
        # Before its first action: clone-bound while its host had all clone slots
        # busy, else held back by the step limit (steps waiting for a clone slot
        # hold a step slot).
        begin = a_[0][1] if a_ else started[n]
        busy = [(x[1], x[2]) for m, xs in acts.items() if parent(m) == level and m != n
                for x in xs if x[0] == "provision"]
        clone_bound = time_at(busy, clones, ready, begin)
        parts["clone_wait"] += clone_bound
        parts["step_wait"] += max(0.0, begin - ready - clone_bound)
        parts["gaps"] += sum(max(0.0, b[1] - a[2]) for a, b in zip(a_, a_[1:]))
        d = next((x for x in delegations if x["node"] == n), None)
        if d is None:
            break
        parts["delegation"] += d["overhead"]
        level, ready = n, first_t.get(n + "/", ready)
    parts["rest"] = makespan - sum(parts.values())
    return {"makespan": makespan, "critical": critical, "ratio": makespan / critical,
            "critical_path": " -> ".join(path), "delegations": delegations, "parts": parts}


def time_at(intervals, k, a, b):
    """How long within [a, b] at least k of the intervals overlap."""
    edges = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    total, count, last = 0.0, 0, a
    for t, d in edges + [(b, 0)]:
        t = min(max(t, a), b)
        if count >= k:
            total += t - last
        last, count = t, count + d
    return total


def prefixes(node):
    """`a/b/c` -> `a/`, `a/b/`: the child runs an event belongs to."""
    bits = node.split("/")
    return ["/".join(bits[:i]) + "/" for i in range(1, len(bits))]


def clones_of(args):
    """--clones-per-host in these create arguments (else the adaptive limit's start: 10)."""
    return int(args[args.index("--clones-per-host") + 1]) if "--clones-per-host" in args else 10


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


ATTEMPTS = 3


def run_case(driver, outdir, manifest, case, extra, i):
    """One create (stamped events saved) and destroy in a fresh state folder. A failed
    create's files are kept (as *.failed-N) and the run made again, up to ATTEMPTS times: other
    simulators on the machine (tests run meanwhile) can take a guest's address while it
    boots, and the driver then refuses the stranger's host key."""
    base = os.path.join(outdir, f"{manifest}.{case}.{i}")
    for attempt in range(1, ATTEMPTS + 1):
        state = tempfile.mkdtemp(prefix="bench-nested-")
        env = dict(os.environ, DRIVER_STATE_DIR=state)
        result = {}
        with open(base + ".ndjson", "w") as f, open(base + ".stderr", "w") as err:
            def stamp(t, line):
                try:
                    v = json.loads(line)
                    rec = dict(v, t=t) if isinstance(v, dict) else {"t": t, "raw": line}
                except ValueError:
                    rec = {"t": t, "raw": line}
                if "verb" in rec and "success" in rec:
                    result.update(rec)
                f.write(json.dumps(rec) + "\n")
            create = [driver, "create", "-M", manifest, "-H", "sim", "--events", *extra]
            wall, _ = bench.once(create, env=env, on_line=stamp, stderr=err, check=False)
            destroy = [driver, "destroy", "--yes", "-M", manifest, "-H", "sim"]
            dwall, _ = bench.once(destroy, env=env, stderr=err, check=False)
            f.write(json.dumps({"t": wall, "bench": {
                "create_wall": wall, "destroy_wall": dwall, "manifest": manifest,
                "case": case, "args": extra, "attempt": attempt}}) + "\n")
        shutil.rmtree(state, ignore_errors=True)
        if result.get("success"):
            return base + ".ndjson"
        print(f"{base}: attempt {attempt} failed: "
              f"{str(result.get('error')).splitlines()[0]}", file=sys.stderr,
              flush=True)
        for ext in (".ndjson", ".stderr"):
            os.replace(base + ext, f"{base}{ext}.failed-{attempt}")
    sys.exit(f"{manifest} {case}: {ATTEMPTS} attempts failed; see {base}.*.failed-*")


def med(xs, fmt="{:.1f}"):
    xs = list(xs)
    return fmt.format(statistics.median(xs)) if xs else "-"


def spread(xs, fmt="{:.1f}"):
    xs = list(xs)
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def report(logs):
    by, metas = {}, []
    for path in logs:
        recs = load(path)
        meta = next(r["bench"] for r in recs if "bench" in r)
        metas.append(meta)
        a = analyse(recs, clones_of(meta["args"]))
        a.update(wall=meta["create_wall"], destroy=meta["destroy_wall"])
        by.setdefault((meta["manifest"], meta["case"]), []).append(a)
    order = [(m, c) for m, c, _, _ in CASES if (m, c) in by]
    order += [k for k in by if k not in order]
    label = {(m, c): lab for m, c, lab, _ in CASES}
    ms = {k: statistics.median(a["makespan"] for a in by[k]) for k in by}

    again = [m for m in metas if m.get("attempt", 1) > 1]
    if again:
        print(f"({len(again)} of {len(metas)} runs were made again after a failed attempt: "
              + ", ".join(f"{m['manifest']} {m['case']} (attempt {m['attempt']})" for m in again)
              + ".)\n")
    print("| manifest | create with | runs | makespan, s: median (min-max) | wall of create, s "
          "| critical path, s | makespan / critical path (target <= 1.1) "
          "| speed-up over --parallelism 1 | destroy wall, s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in order:
        rs, m = by[k], k[0]
        p1 = ms.get((m, "p1"))
        print(f"| {m} | {label.get(k, k[1])} | {len(rs)} | {spread(a['makespan'] for a in rs)} "
              f"| {med(a['wall'] for a in rs)} | {spread(a['critical'] for a in rs)} "
              f"| {spread((a['ratio'] for a in rs), '{:.3f}')} "
              f"| {'%.2fx' % (p1 / ms[k]) if p1 else '-'} | {med(a['destroy'] for a in rs)} |")
    print()
    paths = {}
    for k in order:
        for a in by[k]:
            paths.setdefault(k[0], []).append(a["critical_path"])
    print("Critical paths: " + "; ".join(
        f"{m}: {max(set(ps), key=ps.count)}"
        + (f" (or {len(set(ps)) - 1} other chains alike)" if len(set(ps)) > 1 else "")
        for m, ps in paths.items()) + ".")
    print()
    print("| manifest | create with | level | delegate actions | delegate, s | child's makespan, s "
          "| overhead, s: median (min-max) | start-up, s | wrap-up, s "
          "| PVE set-up actions of the node, s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in order:
        ds = [d for a in by[k] for d in a["delegations"]]
        for lvl in sorted({d["level"] for d in ds}):
            xs = [d for d in ds if d["level"] == lvl]
            print(f"| {k[0]} | {label.get(k, k[1])} | {lvl} | {len(xs)} "
                  f"| {med(d['seconds'] for d in xs)} | {med(d['child'] for d in xs)} "
                  f"| {spread((d['overhead'] for d in xs), '{:.3f}')} "
                  f"| {med((d['startup'] for d in xs), '{:.3f}')} "
                  f"| {med((d['wrapup'] for d in xs), '{:.3f}')} "
                  f"| {med((d['pve_setup'] for d in xs), '{:.2f}')} |")
    print()
    print("| manifest | create with | makespan | own work | waiting for a step slot "
          "| waiting for a clone slot | gaps between actions | delegation overhead | rest |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in order:
        rs = by[k]
        cells = " | ".join(med((a["parts"][p] for a in rs), "{:.2f}")
                           for p in ["own", "step_wait", "clone_wait", "gaps", "delegation", "rest"])
        print(f"| {k[0]} | {label.get(k, k[1])} | {med((a['makespan'] for a in rs), '{:.2f}')} "
              f"| {cells} |")


def main():
    if sys.argv[1:2] == ["analyse"]:
        report(sys.argv[2:])
        return
    if sys.argv[1:2] != ["run"] or len(sys.argv) != 5:
        sys.exit(__doc__)
    runs, driver, outdir = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.makedirs(outdir, exist_ok=True)
    logs = []
    # BENCH_NESTED_CASES=n2-wide:default,n2-wide:p8c4 runs only those cases.
    only = [c for c in os.environ.get("BENCH_NESTED_CASES", "").split(",") if c]
    cases = [c for c in CASES if not only or f"{c[0]}:{c[1]}" in only]
    for i in range(1, runs + 1):
        for manifest, case, lab, extra in cases:
            log = run_case(driver, outdir, manifest, case, extra, i)
            a = analyse(load(log), clones_of(extra))
            print(f"run {i}/{runs} {manifest} {lab}: makespan {a['makespan']:.1f} s, "
                  f"critical path {a['critical']:.1f} s, ratio {a['ratio']:.3f}",
                  file=sys.stderr, flush=True)
            logs.append(log)
    report(logs)


if __name__ == "__main__":
    main()
