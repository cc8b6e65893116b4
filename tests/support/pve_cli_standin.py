#!/usr/bin/env python3
"""Stand-in for Proxmox VE's command line tools on a nested PVE guest.

Proxmox VE cannot be installed here, so the real-host PVE lifecycle is tested
up to the process boundary: this script is linked as `pveversion`, `pvesh`,
`pveum`, `pvesm`, `qm` and `ip` into a folder that the test's sshd puts first
on PATH. It answers with the JSON shapes of PVE 9 (`--output-format json`),
keeps what was changed in a JSON state file ($PVE_STANDIN_STATE) and appends
every call's argv to $PVE_STANDIN_STATE.log, so the test can assert both
what was asked and what it led to.
"""

import json
import os
import sys
import uuid

STATE = os.environ["PVE_STANDIN_STATE"]


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, STATE)


def out(value):
    print(json.dumps(value))
    return 0


def fail(message, code=255):
    print(message, file=sys.stderr)
    return code


def options(args):
    """`--key value` pairs (and bare flags) after the positional words."""
    opts, words, i = {}, [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                opts[a[2:]] = args[i + 1]
                i += 2
            else:
                opts[a[2:]] = True
                i += 1
        else:
            words.append(a)
            i += 1
    return words, opts


def pvesh(state, args):
    words, opts = options(args)
    if len(words) < 2:
        return fail("USAGE: pvesh get|set|create <api_path> [OPTIONS]")
    verb, path = words[0], words[1].rstrip("/")
    node = state["node"]
    if verb == "get" and path == "/version":
        return out({"version": "9.2.11", "release": "9.2", "repoid": "f6997e698c7933ea"})
    if verb == "get" and path == "/nodes":
        return out([{"node": node, "status": "online", "type": "node"}])
    if path.startswith("/nodes/") and path.split("/")[2] != node:
        return fail(f"hostname lookup '{path.split('/')[2]}' failed - failed to get address info")
    if verb == "get" and path == f"/nodes/{node}/certificates/info":
        return out([
            {"filename": "pve-root-ca.pem", "fingerprint": state["ca_fingerprint"]},
            {"filename": "pve-ssl.pem", "fingerprint": state["fingerprint"]},
        ])
    if verb == "get" and path == f"/nodes/{node}/storage":
        return out(state["storage"])
    if verb == "get" and path == f"/nodes/{node}/network":
        return out(state["network"])
    if verb == "create" and path == f"/nodes/{node}/network":
        if any(i["iface"] == opts.get("iface") for i in state["network"]):
            return fail(f"interface '{opts.get('iface')}' already exists")
        state["network"].append({
            "iface": opts["iface"], "type": opts["type"], "active": 0,
            "bridge_ports": opts.get("bridge_ports"), "cidr": opts.get("cidr"),
            "gateway": opts.get("gateway"), "autostart": int(opts.get("autostart", 0)),
        })
        save(state)
        return 0
    if verb == "set" and path == f"/nodes/{node}/network":
        for i in state["network"]:
            i["active"] = 1
        save(state)
        return out("UPID:%s:00001234:00000001:6740A000:srvreload:networking:root@pam:" % node)
    if verb == "get" and path == "/cluster/resources":
        return out([
            {"vmid": g["vmid"], "name": g["name"], "template": g["template"],
             "type": "qemu", "node": node}
            for g in state["guests"]
        ])
    if verb == "get" and path == "/cluster/nextid":
        used = {g["vmid"] for g in state["guests"]}
        return out(str(next(i for i in range(100, 1000000) if i not in used)))
    return fail(f"no such call: pvesh {verb} {path}")


def pveum(state, args):
    words, opts = options(args)
    if words[:2] != ["user", "token"] or len(words) < 4:
        return fail("USAGE: pveum user token add|remove|list <userid> [<tokenid>]")
    if words[:3] == ["user", "token", "list"] and len(words) == 4:
        prefix = words[3] + "!"
        return out([{"tokenid": k[len(prefix):], "privsep": v.get("privsep"),
                     "comment": v.get("comment")}
                    for k, v in state["tokens"].items() if k.startswith(prefix)])
    if len(words) < 5:
        return fail("USAGE: pveum user token add|remove <userid> <tokenid>")
    verb, user, token = words[2], words[3], words[4]
    full = f"{user}!{token}"
    if verb == "remove":
        if full not in state["tokens"]:
            return fail(f"no such token '{token}' for user '{user}'")
        del state["tokens"][full]
        save(state)
        return 0
    if verb == "add":
        if full in state["tokens"]:
            return fail(f"Token already exists.")
        value = str(uuid.uuid4())
        state["tokens"][full] = {"privsep": opts.get("privsep"), "comment": opts.get("comment"),
                                 "value": value}
        save(state)
        return out({"full-tokenid": full, "info": {"privsep": opts.get("privsep")},
                    "value": value})
    return fail(f"unknown command 'pveum user token {verb}'")


def pvesm(state, args):
    words, opts = options(args)
    if words[:1] != ["set"] or len(words) < 2:
        return fail("USAGE: pvesm set <storage> [OPTIONS]")
    for s in state["storage"]:
        if s["storage"] == words[1]:
            if "content" in opts:
                s["content"] = opts["content"]
            save(state)
            return 0
    return fail(f"storage '{words[1]}' does not exist")


def qm(state, args):
    words, opts = options(args)
    if len(words) < 2:
        return fail("USAGE: qm create|template <vmid> [OPTIONS]")
    verb, vmid = words[0], int(words[1])
    if verb == "create":
        if any(g["vmid"] == vmid for g in state["guests"]):
            return fail(f"unable to create VM {vmid} - VM {vmid} already exists on node '{state['node']}'")
        disk = opts.get("scsi0", "")
        src = disk.split("import-from=", 1)[1].split(",")[0] if "import-from=" in disk else None
        if src is not None and not os.path.exists(src):
            return fail(f"import-from: volume '{src}' does not exist")
        state["guests"].append({"vmid": vmid, "name": opts.get("name"), "template": 0,
                                "options": opts})
        save(state)
        return 0
    if verb == "template":
        for g in state["guests"]:
            if g["vmid"] == vmid:
                g["template"] = 1
                save(state)
                return 0
        return fail(f"Configuration file 'nodes/{state['node']}/qemu-server/{vmid}.conf' does not exist")
    return fail(f"unknown command 'qm {verb}'")


def ip(state, args):
    if args[:3] == ["-j", "-4", "addr"]:
        if "links" in state:
            return out(state["links"])
        return out([{"ifindex": 2, "ifname": state["iface"], "addr_info": [
            {"family": "inet", "local": state["address"], "prefixlen": state["prefixlen"]}]}])
    if args[:4] == ["-j", "-4", "route", "show"]:
        if "default_routes" in state:
            return out(state["default_routes"])
        return out([{"dst": "default", "gateway": state["gateway"], "dev": state["iface"]}])
    return fail(f"ip: unknown arguments {args}")


def main():
    tool = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(STATE + ".log", "a") as log:
        log.write(json.dumps([tool] + args) + "\n")
    state = load()
    if not state.get("installed", True) and tool != "ip":
        return fail(f"sh: 1: {tool}: not found", 127)
    if tool == "pveversion":
        print("pve-manager/9.2.11/f6997e698c7933ea (running kernel: 6.14.8-2-pve)")
        return 0
    if state.get("api_down", 0) > 0 and tool == "pvesh":
        state["api_down"] -= 1
        save(state)
        return fail("ipcc_send_rec[1] failed: Connection refused")
    handler = {"pvesh": pvesh, "pveum": pveum, "pvesm": pvesm, "qm": qm, "ip": ip}.get(tool)
    if handler is None:
        return fail(f"pve_cli_standin: not a stand-in for '{tool}'")
    return handler(state, args)


if __name__ == "__main__":
    sys.exit(main())
