//! The requests the differential test sends to both peers, in order: the endpoints driver
//! uses (version, nodes, resources, guests, clone, config, resize, start, status, shutdown,
//! delete, storage, network, tasks) and the errors it must read (bad parameters, a refused
//! token, a shrink). `{node}` is the node; a step after one that answered a UPID can follow
//! that task.

use serde_json::{json, Value};

/// What a step does.
pub enum Act {
    /// A request; its answer is compared.
    Call {
        method: &'static str,
        path: &'static str,
        params: &'static [(&'static str, &'static str)],
    },
    /// The final status of the task the last call started, followed until it stops.
    Task,
    /// The same request with a wrong token secret.
    BadToken { path: &'static str },
}

pub struct Step {
    pub name: &'static str,
    pub act: Act,
    /// Of a `data` array, the first element whose member has this value.
    pub pick: Option<(&'static str, Value)>,
    /// Only these members of `data` are compared (the rest follows from each peer's setup).
    pub keep: Option<&'static [&'static str]>,
    /// A setup step: sent to both, not compared.
    pub setup: bool,
}

fn step(name: &'static str, act: Act) -> Step {
    Step {
        name,
        act,
        pick: None,
        keep: None,
        setup: false,
    }
}

fn get(name: &'static str, path: &'static str) -> Step {
    step(
        name,
        Act::Call {
            method: "GET",
            path,
            params: &[],
        },
    )
}

fn call(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    params: &'static [(&'static str, &'static str)],
) -> Step {
    step(
        name,
        Act::Call {
            method,
            path,
            params,
        },
    )
}

fn task(name: &'static str) -> Step {
    step(name, Act::Task)
}

impl Step {
    fn pick(mut self, key: &'static str, v: Value) -> Step {
        self.pick = Some((key, v));
        self
    }
    fn keep(mut self, keys: &'static [&'static str]) -> Step {
        self.keep = Some(keys);
        self
    }
    fn setup(mut self) -> Step {
        self.setup = true;
        self
    }
}

/// The sequence, version 1.
pub fn steps() -> Vec<Step> {
    const CLONE: &str = "/nodes/{node}/qemu/9000/clone";
    const VM: &str = "/nodes/{node}/qemu/150";
    vec![
        // Both templates as driver's images have them: a serial console, the agent.
        call(
            "setup template",
            "PUT",
            "/nodes/{node}/qemu/9000/config",
            &[("serial0", "socket"), ("vga", "serial0"), ("agent", "1")],
        )
        .setup(),
        get("version", "/version").keep(&["release"]),
        step(
            "bad token",
            Act::BadToken {
                path: "/nodes/{node}/qemu",
            },
        ),
        get("nodes", "/nodes"),
        get("node status", "/nodes/{node}/status").keep(&["cpuinfo", "memory", "uptime"]),
        get("resources vm", "/cluster/resources?type=vm").pick("vmid", json!(9000)),
        get("resources node", "/cluster/resources?type=node"),
        get("nextid", "/cluster/nextid"),
        get("qemu list", "/nodes/{node}/qemu").pick("vmid", json!(9000)),
        get("lxc list", "/nodes/{node}/lxc").pick("vmid", json!(9100)),
        call(
            "clone",
            "POST",
            CLONE,
            &[("newid", "150"), ("name", "fid-vm")],
        ),
        task("clone task"),
        get("task list", "/nodes/{node}/tasks?limit=1"),
        call(
            "config",
            "POST",
            "/nodes/{node}/qemu/150/config",
            &[("cores", "2"), ("memory", "1024"), ("ipconfig0", "ip=dhcp")],
        ),
        task("config task"),
        get("config read", "/nodes/{node}/qemu/150/config").keep(&[
            "cores",
            "memory",
            "name",
            "digest",
            "ipconfig0",
        ]),
        call(
            "bad cores",
            "POST",
            "/nodes/{node}/qemu/150/config",
            &[("cores", "banana")],
        ),
        call(
            "memory -1",
            "POST",
            "/nodes/{node}/qemu/150/config",
            &[("memory", "-1")],
        ),
        call(
            "grow",
            "PUT",
            "/nodes/{node}/qemu/150/resize",
            &[("disk", "scsi0"), ("size", "+1G")],
        ),
        task("grow task"),
        call(
            "shrink",
            "PUT",
            "/nodes/{node}/qemu/150/resize",
            &[("disk", "scsi0"), ("size", "1G")],
        ),
        task("shrink task"),
        get("status stopped", "/nodes/{node}/qemu/150/status/current"),
        call("start", "POST", "/nodes/{node}/qemu/150/status/start", &[]),
        task("start task"),
        get("status running", "/nodes/{node}/qemu/150/status/current"),
        get("qemu list running", "/nodes/{node}/qemu").pick("vmid", json!(150)),
        get("resources running", "/cluster/resources?type=vm").pick("vmid", json!(150)),
        get("storages", "/nodes/{node}/storage?content=images").pick("storage", json!("local-lvm")),
        get(
            "lvm content",
            "/nodes/{node}/storage/local-lvm/content?vmid=150",
        ),
        get("bridges", "/nodes/{node}/network?type=any_bridge"),
        call(
            "shutdown",
            "POST",
            "/nodes/{node}/qemu/150/status/shutdown",
            &[],
        ),
        task("shutdown task"),
        call("delete", "DELETE", VM, &[]),
        task("delete task"),
        get("deleted", "/nodes/{node}/qemu/150/status/current"),
    ]
}
