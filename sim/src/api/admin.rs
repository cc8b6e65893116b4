//! `/sim/...`: the simulator's own control endpoints (not PVE's), authenticated like the API.
//! `GET /sim/state` (guests, faults, time scale), `GET|POST|DELETE /sim/faults`,
//! `DELETE /sim/faults/{id}`, `PUT /sim/time-scale` with `{"time_scale": F}`, `GET
//! /sim/requests` (the API requests served so far, per `METHOD /path`), and
//! `POST /sim/host/exec`: a command on the host's own command line (`super::host_cli`).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::request::data;
use crate::error::{ApiError, ApiResult};
use crate::faults::{Fault, FaultId};
use crate::info::{guest_info, GuestInfo};
use crate::state::Shared;

/// `GET /sim/state`.
#[derive(Serialize)]
struct SimState {
    node: String,
    time_scale: f64,
    guests: Vec<GuestInfo>,
    faults: Vec<FaultEntry>,
}

/// An active fault: its JSON form and its id.
#[derive(Serialize)]
struct FaultEntry {
    #[serde(flatten)]
    fault: Fault,
    id: FaultId,
}

/// `POST /sim/faults`.
#[derive(Serialize)]
struct Added {
    id: FaultId,
}

/// `PUT /sim/time-scale`'s answer (the request is read leniently, for its own wording).
#[derive(Serialize)]
struct TimeScale {
    time_scale: f64,
}

fn faults(shared: &Shared) -> Vec<FaultEntry> {
    shared
        .lock()
        .faults
        .list()
        .into_iter()
        .map(|(id, fault)| FaultEntry { fault, id })
        .collect()
}

pub(crate) fn route(
    shared: &Arc<Shared>,
    method: &str,
    segs: &[String],
    body: &[u8],
) -> ApiResult<Value> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        ("GET", ["state"]) => {
            let guests = {
                let st = shared.lock();
                st.guests
                    .values()
                    .map(|g| guest_info(shared, g, &st))
                    .collect()
            };
            data(SimState {
                node: shared.node.clone(),
                time_scale: shared.time_scale(),
                guests,
                faults: faults(shared),
            })
        }
        ("GET", ["faults"]) => data(faults(shared)),
        ("GET", ["requests"]) => data(shared.requests()),
        ("POST", ["faults"]) => {
            let fault: Fault = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("invalid fault: {e}")))?;
            tracing::info!(?fault, "pvesim: fault injected");
            let id = shared.lock().faults.add(fault);
            data(Added { id })
        }
        ("DELETE", ["faults"]) => {
            shared.lock().faults.clear();
            Ok(Value::Null)
        }
        ("DELETE", ["faults", id]) => {
            let id: u64 = id
                .parse()
                .map_err(|_| ApiError::new(400, format!("invalid fault id '{id}'")))?;
            if shared.lock().faults.remove(id) {
                Ok(Value::Null)
            } else {
                Err(ApiError::new(404, format!("no fault {id}")))
            }
        }
        ("PUT", ["time-scale"]) => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("invalid body: {e}")))?;
            let f = v
                .get("time_scale")
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| ApiError::new(400, "expected {\"time_scale\": F} with F >= 0"))?;
            shared.set_time_scale(f);
            data(TimeScale { time_scale: f })
        }
        ("POST", ["host", "exec"]) => super::host_cli::exec(shared, body),
        _ => Err(ApiError::new(
            501,
            format!("Method '{method} /sim/{}' not implemented", segs.join("/")),
        )),
    }
}
