//! The simulator's stand-in for a shell on the PVE host (`POST /sim/host/exec` of pvesim):
//! how a command PVE offers only on the host itself (`qm unlock`) runs on a simulated host.
//! Outside the API's `/api2/json` tree, authenticated the same way.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::FailureRef;
use super::{PveClient, PveError};

/// What a command run on the host gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRun {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl PveClient {
    /// Runs `command` on a simulated host's command line (a real PVE has no such call).
    pub async fn sim_host_exec(&self, command: &str) -> Result<HostRun, PveError> {
        let path = "/sim/host/exec";
        let connect = |e: reqwest::Error| PveError::Connect {
            endpoint: self.endpoint().to_string(),
            message: e.to_string(),
        };
        let resp = self
            .http
            .post(format!("{}{path}", self.endpoint()))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "command": command }).to_string())
            .send()
            .await
            .map_err(connect)?;
        let status: StatusCode = resp.status();
        let bytes = resp.bytes().await.map_err(connect)?;
        let json: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        if !status.is_success() {
            return Err(self.to_error(&Method::POST, path, FailureRef::Status(status, &json)));
        }
        let d = &json["data"];
        let s = |k: &str| {
            d.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(HostRun {
            exit_code: d.get("exit_code").and_then(Value::as_i64).ok_or_else(|| {
                PveError::Shape {
                    path: path.into(),
                    message: format!("no exit_code in {json}"),
                }
            })?,
            stdout: s("stdout"),
            stderr: s("stderr"),
        })
    }
}
