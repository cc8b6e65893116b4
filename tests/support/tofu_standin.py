#!/usr/bin/env python3
"""A stand-in for `tofu` (OpenTofu cannot be installed here) for driver's tests.

It records each call (argv, cwd, TF_DATA_DIR, and the tfvars it was given) as one
JSON line in $TOFU_STANDIN_LOG, and does what a bpg/proxmox configuration would do
to the PVE API named in the tfvars: `apply` clones each VM from the template named
by its image, `destroy` deletes it. It prints `-json` lines as tofu does.
"""
import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request


def arg(prefix):
    for a in sys.argv[1:]:
        if a.startswith(prefix):
            return a[len(prefix):]
    return None


def api(v, method, path, params=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a test peer with a self-signed certificate
    data = urllib.parse.urlencode(params or {}).encode() if method in ("POST", "PUT") else None
    url = v["api_endpoint"] + "/api2/json" + path
    if method in ("GET", "DELETE") and params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "PVEAPIToken=" + v["api_token"])
    with urllib.request.urlopen(req, context=ctx) as r:
        return json.load(r)["data"]


def wait(v, upid):
    node = upid.split(":")[1]
    for _ in range(600):
        st = api(v, "GET", "/nodes/%s/tasks/%s/status" % (node, urllib.parse.quote(upid, safe="")))
        if st["status"] == "stopped":
            if st.get("exitstatus") != "OK":
                raise SystemExit(json.dumps({"@level": "error", "@message": "Error: " + st.get("exitstatus", "?"),
                                             "type": "diagnostic", "diagnostic": {"severity": "error",
                                             "summary": "task failed", "detail": st.get("exitstatus", "")}}))
            return
        time.sleep(0.05)


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    var_file = arg("-var-file=")
    tfvars = json.load(open(var_file)) if var_file else None
    with open(os.environ["TOFU_STANDIN_LOG"], "a") as log:
        log.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                              "tf_data_dir": os.environ.get("TF_DATA_DIR"), "tfvars": tfvars}) + "\n")
    if cmd == "init":
        print("OpenTofu has been successfully initialized!")
        return
    if cmd == "output":
        print("{}")
        return
    v = tfvars
    node = v["node"]
    if cmd == "apply":
        templates = {g["name"]: g["vmid"] for g in api(v, "GET", "/nodes/%s/qemu" % node) if g.get("template")}
        for vm in v["vms"]:
            upid = api(v, "POST", "/nodes/%s/qemu/%d/clone" % (node, templates[vm["image"]]),
                       {"newid": vm["vmid"], "name": vm["name"], "full": 1})
            wait(v, upid)
            api(v, "PUT", "/nodes/%s/qemu/%d/config" % (node, vm["vmid"]),
                # The VM user is the site's vm_user in a real tofu configuration
                # (the test site's is homestak).
                {"cores": vm["cores"], "memory": vm["memory"], "ipconfig0": "ip=dhcp", "ciuser": "homestak",
                 "sshkeys": urllib.parse.quote("\n".join(v["ssh_keys"]), safe="")})
        state = arg("-state=")
        json.dump({"version": 4, "vms": v["vms"]}, open(state, "w"))
        emit({"@level": "info", "@message": "Apply complete! Resources: %d added, 0 changed, 0 destroyed." % len(v["vms"]),
              "type": "change_summary", "changes": {"add": len(v["vms"]), "change": 0, "remove": 0, "operation": "apply"}})
    elif cmd == "destroy":
        for vm in v["vms"]:
            wait(v, api(v, "DELETE", "/nodes/%s/qemu/%d" % (node, vm["vmid"]), {"purge": 1}))
        emit({"@level": "info", "@message": "Destroy complete! Resources: %d destroyed." % len(v["vms"]),
              "type": "change_summary", "changes": {"add": 0, "change": 0, "remove": len(v["vms"]), "operation": "destroy"}})


main()
