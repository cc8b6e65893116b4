#!/usr/bin/env python3
"""Writes a synthetic v2 manifest for benchmarks.

usage: gen-manifest.py SHAPE N OUT
  wide: N/100 PVE nodes on the target host, the other nodes VMs spread
        over them (about 99 each), so the plan has delegations as real ones do.
  deep: a chain of N nested PVE nodes ending in a VM.
  flat: N sibling VMs on the target host.
"""
import sys


def node(out, name, kind, vmid, parent=None):
    out.append(f"  - name: {name}\n    type: {kind}\n    preset: vm-small\n"
               f"    image: debian-12\n    vmid: {vmid}\n")
    if parent:
        out.append(f"    parent: {parent}\n")


def main():
    shape, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = [f"schema_version: 2\nname: bench-{shape}-{n}\npattern: tiered\nnodes:\n"]
    vmid = 1000
    if shape == "flat":
        for i in range(n):
            node(out, f"vm{i}", "vm", vmid + i)
    elif shape == "wide":
        groups = max(1, n // 100)
        made = 0
        for g in range(groups):
            node(out, f"pve{g}", "pve", vmid + made)
            made += 1
        g = 0
        while made < n:
            node(out, f"vm{made}", "vm", vmid + made, parent=f"pve{g % groups}")
            made += 1
            g += 1
    elif shape == "deep":
        for i in range(n - 1):
            node(out, f"pve{i}", "pve", vmid + i, parent=f"pve{i-1}" if i else None)
        node(out, "edge", "vm", vmid + n - 1, parent=f"pve{n-2}" if n > 1 else None)
    else:
        sys.exit(f"unknown shape {shape!r}: use wide, deep or flat")
    with open(path, "w") as f:
        f.write("".join(out))


if __name__ == "__main__":
    main()
