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
    /// The log of the task the last call started.
    TaskLog,
    /// The same request with a wrong token secret.
    BadToken { path: &'static str },
    /// Brings each peer to the same state by its own means (not compared): a fault injected
    /// into pvesim (JSON as `POST /sim/faults`), a command to fakepve's launcher, a request
    /// sent to one peer only.
    Prepare {
        sim: Option<Side>,
        fake: Option<Side>,
    },
}

/// One peer's own way to a state.
pub enum Side {
    Fault(&'static str),
    Launcher(&'static str),
    Call {
        method: &'static str,
        path: &'static str,
        params: &'static [(&'static str, &'static str)],
    },
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

pub fn step(name: &'static str, act: Act) -> Step {
    Step {
        name,
        act,
        pick: None,
        keep: None,
        setup: false,
    }
}

pub fn get(name: &'static str, path: &'static str) -> Step {
    step(
        name,
        Act::Call {
            method: "GET",
            path,
            params: &[],
        },
    )
}

pub fn call(
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

pub fn task(name: &'static str) -> Step {
    step(name, Act::Task)
}

pub fn task_log(name: &'static str) -> Step {
    step(name, Act::TaskLog)
}

pub fn prepare(name: &'static str, sim: Option<Side>, fake: Option<Side>) -> Step {
    Step {
        setup: true,
        ..step(name, Act::Prepare { sim, fake })
    }
}

impl Step {
    pub fn pick(mut self, key: &'static str, v: Value) -> Step {
        self.pick = Some((key, v));
        self
    }
    pub fn keep(mut self, keys: &'static [&'static str]) -> Step {
        self.keep = Some(keys);
        self
    }
    pub fn setup(mut self) -> Step {
        self.setup = true;
        self
    }
}

/// The whole sequence: the first part below, then the VMs' lifecycles in full, storage and
/// access (whose upload gives the container create its template), containers, and the
/// error cases.
pub fn steps() -> Vec<Step> {
    let mut all = first();
    all.extend(super::steps_qemu::steps());
    all.extend(super::steps_misc::steps());
    all.extend(super::steps_lxc::steps());
    all.extend(super::steps_errors::steps());
    all
}

/// The first part: one VM's life from clone to delete.
fn first() -> Vec<Step> {
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
