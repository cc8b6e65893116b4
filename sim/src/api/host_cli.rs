//! `POST /sim/host/exec`: the simulated host's own command line, for what PVE offers only
//! there (not over the API with a token): `qm unlock VMID` and `pct unlock VMID`, as
//! qemu-server's `qm unlock` and pve-container's `pct unlock` do them. A real host runs
//! them as root over SSH; the body here is `{"command": "qm unlock 101"}` and the answer
//! `{"exit_code": N, "stdout": "...", "stderr": "..."}` (255 and the message on stderr when
//! it dies, as the Perl tools exit). Any other command exits 127 (not simulated).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::request::data;
use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::state::Shared;

#[derive(Serialize)]
struct Ran {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

fn died(message: String) -> Ran {
    Ran {
        exit_code: 255,
        stdout: String::new(),
        stderr: format!("{message}\n"),
    }
}

pub(crate) fn exec(shared: &Arc<Shared>, body: &[u8]) -> ApiResult<Value> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("invalid body: {e}")))?;
    let command = v
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(400, "expected {\"command\": \"qm unlock VMID\"}"))?;
    let words: Vec<&str> = command.split_whitespace().collect();
    let ran = match words.as_slice() {
        ["qm", "unlock", id] => unlock(shared, GuestKind::Qemu, id),
        ["pct", "unlock", id] => unlock(shared, GuestKind::Lxc, id),
        _ => Ran {
            exit_code: 127,
            stdout: String::new(),
            stderr: format!("pvesim: `{command}` is not simulated (only qm|pct unlock VMID)\n"),
        },
    };
    tracing::info!(command, exit_code = ran.exit_code, "pvesim: host command");
    data(ran)
}

/// `qm unlock` deletes the config's `lock` whether or not there is one; `pct unlock`
/// (`remove_lock`) dies when there is none.
fn unlock(shared: &Arc<Shared>, kind: GuestKind, id: &str) -> Ran {
    let Ok(vmid) = id.parse::<u32>() else {
        return died(format!(
            "400 Parameter verification failed.\nvmid: type check ('integer') failed - got '{id}'"
        ));
    };
    let mut st = shared.lock();
    let local = st
        .guests
        .get_mut(&vmid)
        .filter(|g| g.kind == kind && g.node_or(&shared.primary) == shared.node);
    let Some(g) = local else {
        let dir = match kind {
            GuestKind::Qemu => "qemu-server",
            GuestKind::Lxc => "lxc",
        };
        return died(format!(
            "Configuration file 'nodes/{}/{dir}/{vmid}.conf' does not exist",
            shared.node
        ));
    };
    if kind == GuestKind::Lxc && g.lock_prop().is_none() {
        return died("no lock found trying to remove any lock".into());
    }
    g.config.remove("lock");
    shared.persist(&st);
    Ran {
        exit_code: 0,
        stdout: String::new(),
        stderr: String::new(),
    }
}
