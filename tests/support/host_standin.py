#!/usr/bin/env python3
"""Stand-in for the Debian tools `driver host` runs on a machine (apt-get,
dpkg-query, systemctl, reboot, curl, debconf-set-selections, update-grub,
sysctl, pvecm, hostname, id, useradd, chown), linked under those names into a
folder first on the test sshd's PATH. Packages, services, users and reboots
live in a JSON state file ($HOST_STANDIN_STATE); every call's argv is appended
to $HOST_STANDIN_STATE.log. Files go under $HOST_STANDIN_ROOT (what driver
gets as --root). Installing proxmox-ve marks PVE installed in the PVE tools'
stand-in state ($PVE_STANDIN_STATE, see pve_cli_standin.py).
"""

import json
import os
import sys
import uuid

STATE = os.environ["HOST_STANDIN_STATE"]
ROOT = os.environ["HOST_STANDIN_ROOT"]


def load(path):
    with open(path) as f:
        return json.load(f)


def save(path, state):
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def under(path):
    return os.path.join(ROOT, path.lstrip("/"))


def reboot(state):
    p = under("/proc/sys/kernel/random/boot_id")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(str(uuid.uuid4()) + "\n")
    state["reboots"] = state.get("reboots", 0) + 1
    return 0


def apt_get(state, args):
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return 100
    if words[0] in ("update", "full-upgrade", "dist-upgrade"):
        return 0
    pkgs = words[1:]
    if words[0] == "install":
        for p in pkgs:
            if p not in state["packages"]:
                state["packages"].append(p)
        if "proxmox-ve" in pkgs:
            pve = load(os.environ["PVE_STANDIN_STATE"])
            pve["installed"] = True
            save(os.environ["PVE_STANDIN_STATE"], pve)
            state["services"]["pveproxy"] = "active"
        return 0
    if words[0] == "remove":
        state["packages"] = [p for p in state["packages"] if p not in pkgs]
        return 0
    print(f"E: Invalid operation {words[0]}", file=sys.stderr)
    return 100


def main():
    tool = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(STATE + ".log", "a") as log:
        log.write(json.dumps([tool] + args) + "\n")
    state = load(STATE)
    rc = 0
    if tool == "apt-get":
        rc = apt_get(state, args)
    elif tool == "dpkg-query":
        pkg = args[-1]
        if pkg not in state["packages"]:
            print(f"dpkg-query: no packages found matching {pkg}", file=sys.stderr)
            return 1
        sys.stdout.write("install ok installed")
    elif tool == "systemctl":
        if args[:1] == ["is-active"]:
            s = state["services"].get(args[1], "inactive")
            print(s)
            return 0 if s == "active" else 3
        if args[:1] == ["reboot"]:
            rc = reboot(state)
    elif tool == "reboot":
        rc = reboot(state)
    elif tool == "curl":
        dest = args[args.index("-o") + 1]
        with open(dest, "w") as f:
            f.write("keyring from " + args[-3] + "\n")
    elif tool == "debconf-set-selections":
        state.setdefault("debconf", []).append(sys.stdin.read().strip())
    elif tool == "pvecm":
        p = under("/etc/pve/local/pve-ssl.pem")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\n")
    elif tool == "hostname":
        print(state["hostname"])
    elif tool == "id":
        if args[-1] not in state["users"]:
            print(f"id: '{args[-1]}': no such user", file=sys.stderr)
            return 1
        print(1000 + state["users"].index(args[-1]))
    elif tool == "useradd":
        name = args[-1]
        if name in state["users"]:
            print(f"useradd: user '{name}' already exists", file=sys.stderr)
            return 9
        state["users"].append(name)
        os.makedirs(under(f"/home/{name}"), exist_ok=True)
    elif tool in ("update-grub", "sysctl", "chown"):
        pass
    else:
        print(f"host_standin: not a stand-in for '{tool}'", file=sys.stderr)
        return 127
    save(STATE, state)
    return rc


if __name__ == "__main__":
    sys.exit(main())
