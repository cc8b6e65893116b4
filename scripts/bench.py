#!/usr/bin/env python3
"""Times commands side by side: median wall time and median peak RSS.

usage: bench.py RUNS LABEL -- CMD... [--- LABEL -- CMD...]
Each command runs RUNS times (a label ending in "@N" runs N times, for slow
baselines), interleaved (A B A B ...) so that machine noise hits all of them
alike. Prints one markdown row per command, the ratio being its median over
the last row's (the baseline). Peak RSS comes from wait4(): the child's own
maximum resident set.
"""
import os
import statistics
import subprocess
import sys
import time


def parse(argv):
    runs = int(argv[0])
    cmds, cur = [], None
    for a in argv[1:]:
        if a == "---":
            cur = None
        elif cur is None:
            cur = [a, []]
            cmds.append(cur)
        elif a == "--" and not cur[1]:
            continue
        else:
            cur[1].append(a)
    return runs, cmds


def once(cmd, env=None, on_line=None, stderr=subprocess.DEVNULL, check=True):
    """Runs cmd once: (wall seconds, peak RSS MiB); exits if it fails (unless not check).
    With on_line, stdout is read as it comes and each line given as
    on_line(seconds since start, line)."""
    start = time.perf_counter()
    out = subprocess.PIPE if on_line else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=out, stderr=stderr, env=env, text=True)
    if on_line:
        for line in p.stdout:
            on_line(time.perf_counter() - start, line.rstrip("\n"))
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if check and os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd)}")
    return wall, ru.ru_maxrss / 1024.0


def main():
    runs, cmds = parse(sys.argv[1:])
    want = {}
    for label, _ in cmds:
        head, _, n = label.rpartition("@")
        want[label] = int(n) if head and n.isdigit() else runs
    results = {label: [] for label, _ in cmds}
    for i in range(max(want.values())):
        for label, cmd in cmds:
            if i < want[label]:
                results[label].append(once(cmd))
    medians = {l: statistics.median(w for w, _ in results[l]) for l, _ in cmds}
    base = medians[cmds[-1][0]]
    for label, _ in cmds:
        walls = [w for w, _ in results[label]]
        rss = [r for _, r in results[label]]
        med = medians[label]
        print(f"| {label.rpartition('@')[0] or label} | {len(walls)} | {med*1000:.1f} ms | "
              f"{min(walls)*1000:.1f} ms | {statistics.median(rss):.1f} MiB | {med/base:.3f} |")


if __name__ == "__main__":
    main()
