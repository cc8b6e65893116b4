//! The sequence's VM part beyond the first VM's life: a second VM through the guest agent,
//! reboot and stop; a VM created as driver makes an image's template (`POST /qemu`, then
//! `template`); a full clone onto a zfspool storage and that storage's content.

use serde_json::json;

use super::sequence::{call, get, prepare, task, task_log, Side, Step};

pub fn steps() -> Vec<Step> {
    const VM: &str = "/nodes/{node}/qemu/152";
    vec![
        call(
            "full clone",
            "POST",
            "/nodes/{node}/qemu/9000/clone",
            &[("newid", "152"), ("name", "fid-agent"), ("full", "1")],
        ),
        task("full clone task"),
        get("pending", "/nodes/{node}/qemu/152/pending"),
        call(
            "config put",
            "PUT",
            "/nodes/{node}/qemu/152/config",
            &[("description", "fid test")],
        ),
        get(
            "agent stopped",
            "/nodes/{node}/qemu/152/agent/network-get-interfaces",
        ),
        call(
            "start 2",
            "POST",
            "/nodes/{node}/qemu/152/status/start",
            &[],
        ),
        task("start 2 task"),
        call(
            "start again",
            "POST",
            "/nodes/{node}/qemu/152/status/start",
            &[],
        ),
        task("start again task"),
        // fakepve's agent runs only when told; pvesim's once the VM has booted.
        prepare(
            "agent up",
            None,
            Some(Side::Launcher(
                r#"{"op":"agent","vmid":152,"ip":"10.0.0.5"}"#,
            )),
        ),
        get(
            "agent ifaces",
            "/nodes/{node}/qemu/152/agent/network-get-interfaces",
        ),
        call(
            "agent ping",
            "POST",
            "/nodes/{node}/qemu/152/agent/ping",
            &[],
        ),
        call(
            "reboot",
            "POST",
            "/nodes/{node}/qemu/152/status/reboot",
            &[],
        ),
        task("reboot task"),
        call("stop", "POST", "/nodes/{node}/qemu/152/status/stop", &[]),
        task("stop task"),
        task_log("stop log"),
        get("status after stop", "/nodes/{node}/qemu/152/status/current").keep(&[
            "status",
            "qmpstatus",
            "agent",
        ]),
        call(
            "shutdown stopped",
            "POST",
            "/nodes/{node}/qemu/152/status/shutdown",
            &[],
        ),
        task("shutdown stopped task"),
        call(
            "delete purge",
            "DELETE",
            VM,
            &[("purge", "1"), ("destroy-unreferenced-disks", "1")],
        ),
        task("delete purge task"),
        // As driver makes an image's template (actions/src/templates/api.rs create_params),
        // with an empty disk in place of `import-from`.
        call(
            "create",
            "POST",
            "/nodes/{node}/qemu",
            &[
                ("vmid", "160"),
                ("name", "fid-tpl"),
                ("memory", "2048"),
                ("cores", "2"),
                ("ostype", "l26"),
                ("scsihw", "virtio-scsi-single"),
                ("net0", "virtio,bridge=vmbr0"),
                ("scsi0", "local-lvm:1"),
                ("ide2", "local-lvm:cloudinit"),
                ("boot", "order=scsi0"),
                ("serial0", "socket"),
                ("vga", "serial0"),
                ("agent", "1"),
                ("description", "template made by driver from fid"),
            ],
        ),
        task("create task"),
        get("created config", "/nodes/{node}/qemu/160/config").keep(&[
            "name", "memory", "cores", "ostype", "scsihw", "boot", "serial0", "vga", "agent",
            "scsi0", "ide2",
        ]),
        call("template", "POST", "/nodes/{node}/qemu/160/template", &[]),
        task("template task"),
        get("template listed", "/nodes/{node}/qemu").pick("vmid", json!(160)),
        // pvesim has local-zfs from the start; fakepve gets it the way an admin adds one.
        prepare(
            "zfs storage",
            None,
            Some(Side::Call {
                method: "POST",
                path: "/storage",
                params: &[
                    ("type", "zfspool"),
                    ("storage", "local-zfs"),
                    ("pool", "rpool/data"),
                    ("content", "images,rootdir"),
                    ("sparse", "1"),
                ],
            }),
        ),
        call(
            "clone to zfs",
            "POST",
            "/nodes/{node}/qemu/160/clone",
            &[
                ("newid", "170"),
                ("name", "fid-zfs"),
                ("full", "1"),
                ("storage", "local-zfs"),
            ],
        ),
        task("clone to zfs task"),
        get(
            "zfs content",
            "/nodes/{node}/storage/local-zfs/content?vmid=170",
        ),
        get("zfs status", "/nodes/{node}/storage/local-zfs/status"),
        call(
            "delete zfs vm",
            "DELETE",
            "/nodes/{node}/qemu/170",
            &[("purge", "1")],
        ),
        task("delete zfs vm task"),
        call("delete template", "DELETE", "/nodes/{node}/qemu/160", &[]),
        task("delete template task"),
    ]
}
