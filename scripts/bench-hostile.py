#!/usr/bin/env python3
"""Hostile YAML (issue 12): how long driver takes to refuse each hostile
file, under a 512 MiB address-space limit, beside a valid manifest of the
same size (the baseline of its group, last row).

usage: scripts/bench-hostile.py [RUNS] [BIN]   (default 10, target/release/driver)
Commands are interleaved (A B C A B C ...); medians are reported. Each run's
exit code is checked: 2 for a hostile file, 0 for its baseline.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

LIMIT = "--as=536870912"  # 512 MiB


def laughs():
    s = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    names = "abcdefghi"
    for prev, cur in zip(names, names[1:]):
        s += f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]\n"
    return s


def valid(size):
    """A valid flat manifest of about `size` bytes."""
    out = "schema_version: 2\nname: same-size\nnodes:\n"
    i = 0
    while len(out) < size:
        out += f"  - {{name: vm{i}, type: vm, preset: vm-small, image: debian-12, vmid: {1000 + i}}}\n"
        i += 1
    return out


def once(cmd, env, want):
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != want:
        sys.exit(f"exit {code}, expected {want}: {' '.join(cmd)}")
    return wall, ru.ru_maxrss / 1024.0


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/driver"
    d = tempfile.mkdtemp(prefix="bench-hostile-")
    env = dict(os.environ, HOMESTAK_SITE_CONFIG=d)
    env.pop("RUST_LOG", None)

    def write(name, text):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        return p, len(text.encode())

    lol, lol_size = write("laughs.yaml", laughs())
    small, small_size = write("same-size.yaml", valid(lol_size))
    keys_text = "schema_version: 2\nname: k\nnodes:\n  - {name: a, type: vm}\n" + "".join(
        f"k{i}: 1\n" for i in range(16_000))
    keys, keys_size = write("keys-16k.yaml", keys_text)
    keys_base, keys_base_size = write("same-size-keys.yaml", valid(keys_size))
    long_text = ("schema_version: 2\nname: l\nnodes:\n  - {name: a, type: vm, d: "
                 + "x" * 66_000 + ", bogus: 1}\n")
    longf, long_size = write("line-66k.yaml", long_text)
    long_base, long_base_size = write(
        "same-size-line.yaml",
        "schema_version: 2\nname: l\ndescription: " + "x" * 66_000 + "\nnodes:\n  - {name: a, type: vm}\n")

    drv = ["prlimit", LIMIT, binary]
    groups = [
        [
            (f"validate billion laughs ({lol_size} B)", drv + ["validate", lol], 2),
            (f"create --dry-run billion laughs ({lol_size} B)",
             drv + ["create", "--manifest-file", lol, "-H", "bench", "--dry-run"], 2),
            (f"validate valid manifest ({small_size} B, baseline)", drv + ["validate", small], 0),
        ],
        [
            (f"validate 16k unknown keys ({keys_size} B)", drv + ["validate", keys], 2),
            (f"validate valid manifest ({keys_base_size} B, baseline)", drv + ["validate", keys_base], 0),
        ],
        [
            (f"validate 66k-character line, 2 problems ({long_size} B)", drv + ["validate", longf], 2),
            (f"validate valid 66k-character line ({long_base_size} B, baseline)",
             drv + ["validate", long_base], 0),
        ],
    ]
    print(f"machine: {os.cpu_count()} cores, "
          + next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")))
    print(f"driver: {subprocess.run([binary, '--version'], capture_output=True, text=True).stdout.strip()}")
    print()
    print("| command (under prlimit --as=512MiB) | runs | median | min | max | peak RSS (median) | ratio to baseline |")
    print("|---|---|---|---|---|---|---|")
    for group in groups:
        results = {label: [] for label, _, _ in group}
        for _ in range(runs):
            for label, cmd, want in group:
                results[label].append(once(cmd, env, want))
        base = statistics.median(w for w, _ in results[group[-1][0]])
        for label, _, _ in group:
            walls = [w for w, _ in results[label]]
            med = statistics.median(walls)
            rss = statistics.median(r for _, r in results[label])
            print(f"| {label} | {runs} | {med*1000:.1f} ms | {min(walls)*1000:.1f} ms | "
                  f"{max(walls)*1000:.1f} ms | {rss:.1f} MiB | {med/base:.2f} |")


if __name__ == "__main__":
    main()
