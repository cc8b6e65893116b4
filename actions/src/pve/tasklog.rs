//! Reading a PVE task's log (`GET /nodes/{node}/tasks/{upid}/log`), from a line on or its
//! last lines.

use serde_json::Value;

use super::client::{encode_path, PveClient, PveError};

impl PveClient {
    /// A task's log lines from line `start` on (0-based).
    pub async fn task_log_from(&self, upid: &str, start: usize) -> Result<Vec<String>, PveError> {
        let node = upid.split(':').nth(1).unwrap_or(self.node()).to_string();
        let path = format!("/nodes/{node}/tasks/{}/log", encode_path(upid));
        let log = self
            .get_with(
                &path,
                &[("start", start.to_string()), ("limit", "500".into())],
            )
            .await?;
        Ok(log
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) async fn task_log_tail(
        &self,
        node: &str,
        upid: &str,
        lines: usize,
    ) -> Result<Vec<String>, PveError> {
        let path = format!("/nodes/{node}/tasks/{}/log", encode_path(upid));
        let log = self.get_with(&path, &[("limit", "1000".into())]).await?;
        let all: Vec<String> = log
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }
}
