#!/usr/bin/env python3
"""Full clones on a contended storage (issue 16): the adaptive clone limit against fixed
caps, side by side. Each run is `driver create --events` of N sibling VMs (full clones,
no SSH check) on -H sim with the simulator's `contended_storage` fault (every full clone
holds the storage's lock HOLD_MS simulated ms per full clone in flight; PVE's 10 s lock
timeout fails the ones that wait longer), in a fresh DRIVER_STATE_DIR, then `destroy
--yes`. Cases run interleaved (A B C A B C ...). Per case: medians of the makespan (the
`run_finished` seconds), lock timeouts (clones tried again), failed nodes.

usage: bench-clones.py RUNS DRIVER OUTDIR VMS HOLD_MS
"""
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

CASES = [
    ("adaptive", "adaptive (default)", []),
    ("c1", "--clones-per-host 1", ["--clones-per-host", "1"]),
    ("c20", "--clones-per-host 20", ["--clones-per-host", "20"]),
]


def manifest(n):
    m = "schema_version: 2\nname: clones\nsettings: {verify_ssh: false}\nnodes:\n"
    for i in range(n):
        m += f"  - {{name: vm{i:02}, type: vm, spec: base, preset: vm-xsmall, image: debian-12}}\n"
    return m


def run_case(driver, outdir, mfile, hold, case, extra, i, vms):
    state = tempfile.mkdtemp(prefix="bench-clones-")
    env = dict(os.environ, DRIVER_STATE_DIR=state,
               PVESIM_FAULTS=json.dumps([{"kind": "contended_storage", "hold_ms": hold}]))
    recs = []

    def keep(t, line):
        try:
            v = json.loads(line)
        except ValueError:
            return
        if isinstance(v, dict):
            recs.append(dict(v, t=t))
    # Every case gets as many step slots as VMs, so that the clone limit is what differs.
    create = [driver, "create", "--manifest-file", mfile, "-H", "sim", "--events",
              "--parallelism", str(vms), *extra]
    with open(os.path.join(outdir, f"{case}.{i}.stderr"), "w") as err:
        wall, _ = bench.once(create, env=env, on_line=keep, stderr=err, check=False)
        destroy = [driver, "destroy", "--yes", "--manifest-file", mfile, "-H", "sim"]
        bench.once(destroy, env=env, stderr=err, check=False)
    shutil.rmtree(state, ignore_errors=True)
    with open(os.path.join(outdir, f"{case}.{i}.ndjson"), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    result = next((r for r in reversed(recs) if "success" in r and "nodes" in r), {})
    finished = next((r for r in recs if r.get("event") == "run_finished"), {})
    lines = [r.get("line", "") for r in recs]
    return {
        "makespan": finished.get("seconds", wall),
        "wall": wall,
        "timeouts": sum("nothing was made; trying again" in l for l in lines),
        "failed": sum(n.get("status") != "completed" for n in result.get("nodes", [])) if result else vms,
        "limits": [l.split(": now ")[1].split(" ")[0] for l in lines if ": now " in l],
    }


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    runs, driver, outdir, vms, hold = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                       int(sys.argv[4]), int(sys.argv[5]))
    os.makedirs(outdir, exist_ok=True)
    mfile = os.path.abspath(os.path.join(outdir, "clones.yaml"))
    with open(mfile, "w") as f:
        f.write(manifest(vms))
    by = {}
    for i in range(1, runs + 1):
        for case, label, extra in CASES:
            r = run_case(driver, outdir, mfile, hold, case, extra, i, vms)
            by.setdefault(case, []).append(r)
            print(f"run {i}/{runs} {label}: makespan {r['makespan']:.1f} s, "
                  f"{r['timeouts']} lock timeouts, {r['failed']} failed, limits {r['limits']}",
                  file=sys.stderr, flush=True)
    base = statistics.median(r["makespan"] for r in by["adaptive"])
    print(f"| {vms} full clones at once, contended storage (hold {hold} ms per clone in flight) "
          "| runs | makespan, s: median (min-max) | lock timeouts (median) | failed nodes (max) "
          "| makespan / adaptive's |")
    print("|---|---|---|---|---|---|")
    for case, label, _ in CASES:
        rs = by[case]
        ms = [r["makespan"] for r in rs]
        print(f"| {label} | {len(rs)} | {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) "
              f"| {statistics.median(r['timeouts'] for r in rs):.0f} "
              f"| {max(r['failed'] for r in rs)} | {statistics.median(ms) / base:.2f} |")


if __name__ == "__main__":
    main()
