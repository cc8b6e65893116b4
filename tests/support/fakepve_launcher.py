#!/usr/bin/env python3
"""Starts fakepve (PyPI, a third-party fake of the PVE 9 API) for driver's tests.

usage: fakepve_launcher.py HOST TOKEN_ID TOKEN_SECRET

Serves https://HOST:<free port> with one API token, time scale 0, and templates
debian-12 (qemu 9000) and debian-12-ct (lxc 9100). Prints one JSON line
{"url", "fingerprint", "cert"} when ready, then answers JSON commands on stdin,
one per line, with one JSON line each:
  {"op": "agent", "vmid": N, "ip": "10.0.0.5"}   start VM N's guest agent reporting ip
  {"op": "fail", "method": "POST", "suffix": "/nodes/pve1/qemu/9000/clone",
   "status": 500, "message": "...", "times": 1}  make requests fail (fakepve's fail())
  {"op": "lock", "vmid": N}                      hold VM N's config lock (lock timeout)
  {"op": "unlock", "vmid": N}
  {"op": "guests"}                               -> {"guests": [{"vmid", "name", "status", "template"}]}
  {"op": "store_file", "storage": "local", "name": "x.tar.zst", "content": "vztmpl"}
                                                 put a file in a storage's content
  {"op": "requests", "method": "POST", "suffix": "/lxc"}
                                                 -> {"requests": [BODY, ...]} the bodies recorded
"""
import asyncio
import hashlib
import json
import sys
import tempfile

from fakepve import FakePve
from fakepve.certs import make_cert


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    host, token_id, secret = sys.argv[1], sys.argv[2], sys.argv[3]
    pve = FakePve(host=host, port=0)
    pve.apitokens[token_id] = secret
    pve.time_scale = 0
    pve.add_vm(9000, "debian-12", template=True,
               config={"scsi0": "local-lvm:base-9000-disk-0,size=3G", "cores": 1, "memory": 512})
    if hasattr(pve, "add_ct"):
        pve.add_ct(9100, "debian-12-ct", template=True)
    certdir = tempfile.mkdtemp(prefix="fakepve-")
    cert, key, der = make_cert(certdir, hosts=(host,))
    await pve.start(cert, key)
    reply({"url": pve.url, "fingerprint": hashlib.sha256(der).hexdigest(), "cert": cert})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "agent":
                vm = pve.vm(cmd["vmid"])
                vm.agent = {"interfaces": [
                    {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                    {"name": "eth0", "hardware-address": "bc:24:11:00:00:01",
                     "ip-addresses": [{"ip-address": cmd["ip"], "ip-address-type": "ipv4", "prefix": 24}]}]}
                reply({"ok": True})
            elif op == "fail":
                pve.fail(cmd["method"], cmd["suffix"], cmd.get("status"), cmd.get("message"),
                         error=cmd.get("error"), times=cmd.get("times"))
                reply({"ok": True})
            elif op == "lock":
                pve.vm(cmd["vmid"]).lock_holder = "scenario"
                reply({"ok": True})
            elif op == "unlock":
                pve.vm(cmd["vmid"]).lock_holder = None
                reply({"ok": True})
            elif op == "guests":
                reply({"guests": [{"vmid": v.vmid, "name": v.name, "status": v.status,
                                   "template": bool(v.template)} for v in pve.vms]})
            elif op == "store_file":
                pve.store_file(cmd["storage"], cmd["name"], cmd.get("size", 1 << 20),
                               content=cmd.get("content", "iso"))
                reply({"ok": True})
            elif op == "requests":
                bodies = [b.decode() if isinstance(b, bytes) else b
                          for (m, path, b) in pve.requests
                          if m == cmd["method"] and path.endswith(cmd["suffix"])]
                reply({"requests": bodies})
            else:
                reply({"error": "unknown op " + op})
        except Exception as e:  # report, keep serving
            reply({"error": repr(e)})
    await pve.stop()


asyncio.run(main())
