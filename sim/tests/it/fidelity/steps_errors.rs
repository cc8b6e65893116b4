//! The sequence's error part: what PVE answers to requests driver can get wrong or meet on
//! a busy host: unknown guests, nodes, storages, paths and methods, missing and bad
//! parameters, taken vmids, a locked guest, a template started, a bad UPID.

use super::sequence::{call, get, prepare, task, Side, Step};

pub fn steps() -> Vec<Step> {
    const T: &str = "/nodes/{node}/qemu/9000";
    vec![
        get("unknown vm config", "/nodes/{node}/qemu/999/config"),
        get("unknown vm status", "/nodes/{node}/qemu/999/status/current"),
        call(
            "unknown vm start",
            "POST",
            "/nodes/{node}/qemu/999/status/start",
            &[],
        ),
        call("unknown vm delete", "DELETE", "/nodes/{node}/qemu/999", &[]),
        call(
            "unknown vm resize",
            "PUT",
            "/nodes/{node}/qemu/999/resize",
            &[("disk", "scsi0"), ("size", "+1G")],
        ),
        get("unknown ct config", "/nodes/{node}/lxc/999/config"),
        get("unknown ct status", "/nodes/{node}/lxc/999/status/current"),
        get("unknown node", "/nodes/nosuch/qemu"),
        get("unknown storage", "/nodes/{node}/storage/nosuch/content"),
        get(
            "unknown storage status",
            "/nodes/{node}/storage/nosuch/status",
        ),
        get("unknown path", "/nodes/{node}/nosuch"),
        call("wrong method", "DELETE", "/version", &[]),
        call(
            "wrong method status",
            "PUT",
            "/nodes/{node}/qemu/9000/status/current",
            &[],
        ),
        get("bad vmid", "/nodes/{node}/qemu/abc/config"),
        get("bad upid", "/nodes/{node}/tasks/UPID:nonsense/status"),
        call(
            "clone no newid",
            "POST",
            "/nodes/{node}/qemu/9000/clone",
            &[],
        ),
        call(
            "clone taken id",
            "POST",
            "/nodes/{node}/qemu/9000/clone",
            &[("newid", "9100")],
        ),
        task("clone taken id task"),
        call(
            "create taken id",
            "POST",
            "/nodes/{node}/qemu",
            &[("vmid", "9000"), ("memory", "512")],
        ),
        task("create taken id task"),
        call(
            "create no vmid",
            "POST",
            "/nodes/{node}/qemu",
            &[("memory", "512")],
        ),
        call(
            "resize no size",
            "PUT",
            "/nodes/{node}/qemu/9000/resize",
            &[("disk", "scsi0")],
        ),
        call(
            "resize bad size",
            "PUT",
            "/nodes/{node}/qemu/9000/resize",
            &[("disk", "scsi0"), ("size", "banana")],
        ),
        call(
            "resize no disk",
            "PUT",
            "/nodes/{node}/qemu/9000/resize",
            &[("disk", "scsi9"), ("size", "+1G")],
        ),
        task("resize no disk task"),
        call(
            "bad net0",
            "POST",
            "/nodes/{node}/qemu/9000/config",
            &[("net0", "bogus")],
        ),
        call(
            "unknown option",
            "POST",
            "/nodes/{node}/qemu/9000/config",
            &[("nosuchoption", "1")],
        ),
        call(
            "start template",
            "POST",
            "/nodes/{node}/qemu/9000/status/start",
            &[],
        ),
        task("start template task"),
        call(
            "ct clone taken id",
            "POST",
            "/nodes/{node}/lxc/9100/clone",
            &[("newid", "9000")],
        ),
        task("ct clone taken id task"),
        // Another operation holds the template's config lock.
        prepare(
            "lock",
            Some(Side::Fault(
                r#"{"kind":"lock_timeout","op":"config","vmid":9000,"count":1}"#,
            )),
            Some(Side::Launcher(r#"{"op":"lock","vmid":9000}"#)),
        ),
        call(
            "locked config",
            "POST",
            "/nodes/{node}/qemu/9000/config",
            &[("description", "locked")],
        ),
        task("locked config task"),
        prepare(
            "unlock",
            None,
            Some(Side::Launcher(r#"{"op":"unlock","vmid":9000}"#)),
        ),
        get("template config", TEMPLATE_CONFIG).keep(&["template", "name", "agent", "serial0"]),
        call("delete template 9000", "DELETE", T, &[("purge", "1")]),
        task("delete template 9000 task"),
    ]
}

const TEMPLATE_CONFIG: &str = "/nodes/{node}/qemu/9000/config";
