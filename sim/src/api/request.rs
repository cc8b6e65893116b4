//! What every handler gets and gives: the decoded request ([`ApiRequest`]), answers encoded
//! from their shape structs ([`data`]) and PVE's answer for what has no handler.

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::params::Params;

/// A decoded API request.
pub(crate) struct ApiRequest {
    pub method: String,
    /// Path below `/api2/json`, e.g. `/nodes/pve/qemu`.
    pub rel: String,
    pub segs: Vec<String>,
    pub params: Params,
    /// Who is asking: `user@realm` (ticket) or `user@realm!token`.
    pub user: String,
    /// Members PVE puts beside `data` on success (e.g. `total` of a task log).
    pub extra: serde_json::Map<String, Value>,
}

/// PVE's answer for a path or method it has no handler for.
pub(crate) fn not_implemented(req: &ApiRequest) -> ApiError {
    ApiError::new(
        501,
        format!("Method '{} {}' not implemented", req.method, req.rel),
    )
}

/// An answer's `data`, from its shape. Encoding into a `Value` (whose objects keep their keys
/// sorted) keeps the bytes on the wire as they were when the shapes were `json!` literals.
pub(crate) fn data(shape: impl Serialize) -> ApiResult<Value> {
    serde_json::to_value(shape)
        .map_err(|e| ApiError::internal(format!("pvesim: cannot encode the answer: {e}")))
}

/// A directory index, as PVE answers for a path with children: `[{"subdir": "config"}, ...]`
/// (or `name`, depending on the path).
pub(crate) fn subdirs(key: &str, names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ key: n })).collect())
}
