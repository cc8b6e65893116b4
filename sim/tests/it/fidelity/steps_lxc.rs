//! The sequence's container part: a clone of the container template through its life
//! (config, resize, start, interfaces, shutdown, delete) and a container created as driver
//! creates one (`POST /lxc` from the template uploaded in [`super::steps_misc`]).

use super::sequence::{call, get, task, Step};

pub fn steps() -> Vec<Step> {
    vec![
        call(
            "ct clone",
            "POST",
            "/nodes/{node}/lxc/9100/clone",
            &[("newid", "151"), ("hostname", "fid-ct"), ("full", "1")],
        ),
        task("ct clone task"),
        get("ct config", "/nodes/{node}/lxc/151/config").keep(&[
            "hostname",
            "cores",
            "memory",
            "swap",
            "ostype",
            "arch",
            "digest",
            "unprivileged",
        ]),
        call(
            "ct config put",
            "PUT",
            "/nodes/{node}/lxc/151/config",
            &[("cores", "2"), ("memory", "1024")],
        ),
        call(
            "ct bad memory",
            "PUT",
            "/nodes/{node}/lxc/151/config",
            &[("memory", "-1")],
        ),
        call(
            "ct resize",
            "PUT",
            "/nodes/{node}/lxc/151/resize",
            &[("disk", "rootfs"), ("size", "+1G")],
        ),
        task("ct resize task"),
        call(
            "ct resize same",
            "PUT",
            "/nodes/{node}/lxc/151/resize",
            &[("disk", "rootfs"), ("size", "1G")],
        ),
        task("ct resize same task"),
        get("ct status stopped", "/nodes/{node}/lxc/151/status/current"),
        call(
            "ct start",
            "POST",
            "/nodes/{node}/lxc/151/status/start",
            &[],
        ),
        task("ct start task"),
        get("ct status running", "/nodes/{node}/lxc/151/status/current"),
        get("ct interfaces", "/nodes/{node}/lxc/151/interfaces"),
        get("ct list running", "/nodes/{node}/lxc"),
        call(
            "ct shutdown",
            "POST",
            "/nodes/{node}/lxc/151/status/shutdown",
            &[],
        ),
        task("ct shutdown task"),
        call(
            "ct delete",
            "DELETE",
            "/nodes/{node}/lxc/151",
            &[("purge", "1")],
        ),
        task("ct delete task"),
        // As driver creates a container (actions/src/runner/container.rs container_params).
        call(
            "ct create",
            "POST",
            "/nodes/{node}/lxc",
            &[
                ("vmid", "161"),
                ("ostemplate", "local:vztmpl/fid-test_1.0_amd64.tar.zst"),
                ("hostname", "fid-new"),
                ("cores", "1"),
                ("memory", "512"),
                ("rootfs", "local-lvm:2"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("unprivileged", "1"),
                ("description", "made by fid"),
                ("tags", "fid"),
            ],
        ),
        task("ct create task"),
        get("ct created config", "/nodes/{node}/lxc/161/config").keep(&[
            "hostname",
            "rootfs",
            "net0",
            "unprivileged",
            "tags",
        ]),
        call("ct create delete", "DELETE", "/nodes/{node}/lxc/161", &[]),
        task("ct create delete task"),
    ]
}
