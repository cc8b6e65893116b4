//! `/sim/...`: the simulator's own control endpoints (not PVE's), authenticated like the API.
//! `GET /sim/state` (guests, faults, time scale), `GET|POST|DELETE /sim/faults`,
//! `DELETE /sim/faults/{id}`, `PUT /sim/time-scale` with `{"time_scale": F}`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::faults::Fault;
use crate::info::guest_info;
use crate::state::Shared;

fn faults_json(shared: &Shared) -> Value {
    Value::Array(
        shared
            .lock()
            .faults
            .list()
            .into_iter()
            .map(|(id, f)| {
                let mut v = serde_json::to_value(&f).unwrap_or(Value::Null);
                v["id"] = json!(id);
                v
            })
            .collect(),
    )
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
            let guests: Vec<Value> = {
                let st = shared.lock();
                st.guests
                    .values()
                    .map(|g| {
                        serde_json::to_value(guest_info(shared, g, &st)).unwrap_or(Value::Null)
                    })
                    .collect()
            };
            Ok(json!({
                "node": shared.node,
                "time_scale": shared.time_scale(),
                "guests": guests,
                "faults": faults_json(shared),
            }))
        }
        ("GET", ["faults"]) => Ok(faults_json(shared)),
        ("POST", ["faults"]) => {
            let fault: Fault = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("invalid fault: {e}")))?;
            tracing::info!(?fault, "pvesim: fault injected");
            let id = shared.lock().faults.add(fault);
            Ok(json!({ "id": id }))
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
            Ok(json!({ "time_scale": f }))
        }
        _ => Err(ApiError::new(
            501,
            format!("Method '{method} /sim/{}' not implemented", segs.join("/")),
        )),
    }
}
