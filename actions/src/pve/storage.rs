//! Storage calls: which storages take what content, what they hold, the host fetching a
//! file itself (`download-url`; a file sent to it is `upload`'s), a VM created from
//! parameters, a VM made a template, the PVE version, and following a task with its log
//! lines as they come.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::TASK_POLL;
use super::{PveClient, PveError};
use crate::poll::{self, GaveUp, Poll};

/// One storage of the node (`GET /nodes/{node}/storage`).
#[derive(Clone, Debug, Deserialize)]
pub struct StorageInfo {
    pub storage: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Comma-separated content types.
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub active: Option<u8>,
    #[serde(default)]
    pub enabled: Option<u8>,
}

impl StorageInfo {
    pub fn holds(&self, content: &str) -> bool {
        self.content.split(',').any(|c| c.trim() == content)
    }

    /// Active and enabled (a listing without the fields counts as both).
    pub fn usable(&self) -> bool {
        self.active.unwrap_or(1) == 1 && self.enabled.unwrap_or(1) == 1
    }
}

/// One volume of a storage's content.
#[derive(Clone, Debug, Deserialize)]
pub struct Volume {
    pub volid: String,
    #[serde(default)]
    pub size: u64,
}

pub(super) fn shape(path: &str, e: impl std::fmt::Display) -> PveError {
    PveError::Shape {
        path: path.to_string(),
        message: e.to_string(),
    }
}

impl PveClient {
    /// The node's storages.
    pub async fn storages(&self) -> Result<Vec<StorageInfo>, PveError> {
        let path = format!("/nodes/{}/storage", self.node());
        let v = self.get(&path).await?;
        serde_json::from_value(v).map_err(|e| shape(&path, e))
    }

    /// What `storage` holds of `content`.
    pub async fn volumes(&self, storage: &str, content: &str) -> Result<Vec<Volume>, PveError> {
        let path = format!("/nodes/{}/storage/{storage}/content", self.node());
        let v = self
            .get_with(&path, &[("content", content.to_string())])
            .await?;
        serde_json::from_value(v).map_err(|e| shape(&path, e))
    }

    /// `release` of `GET /version` as `(major, minor)`, e.g. `(9, 0)`.
    pub async fn version(&self) -> Result<(u32, u32), PveError> {
        let v = self.get("/version").await?;
        let text = v
            .get("release")
            .or_else(|| v.get("version"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut parts = text.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(shape("/version", format!("no release in {v}"))),
        }
    }

    /// `POST .../storage/{storage}/download-url`: the host fetches `url` into `filename`
    /// of `content`, checked against `checksum` (`(algorithm, hex)`). Returns the UPID.
    pub async fn download_url(
        &self,
        storage: &str,
        url: &str,
        content: &str,
        filename: &str,
        checksum: Option<(&str, &str)>,
    ) -> Result<String, PveError> {
        let path = format!("/nodes/{}/storage/{storage}/download-url", self.node());
        let mut params = vec![
            ("url", url.to_string()),
            ("content", content.to_string()),
            ("filename", filename.to_string()),
        ];
        if let Some((alg, sum)) = checksum {
            params.push(("checksum-algorithm", alg.to_string()));
            params.push(("checksum", sum.to_string()));
        }
        let v = self.post(&path, &params).await?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| shape(&path, format!("no UPID: {v}")))
    }

    /// Waits for a task like [`PveClient::wait_task`], handing each new log line to
    /// `on_line` as it appears.
    pub async fn follow_task(
        &self,
        upid: &str,
        timeout: Duration,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), PveError> {
        let node = upid.split(':').nth(1).unwrap_or(self.node()).to_string();
        let status_path = format!("/nodes/{node}/tasks/{}/status", upid.replace('/', "%2F"));
        let seen = AtomicUsize::new(0);
        let r = poll::until(timeout, TASK_POLL, || async {
            let st = match self.get(&status_path).await {
                Ok(st) => st,
                Err(e) => return Poll::Fail(Some(e)),
            };
            match self.task_log_from(upid, seen.load(Ordering::Relaxed)).await {
                Ok(lines) => {
                    seen.fetch_add(lines.len(), Ordering::Relaxed);
                    for l in &lines {
                        on_line(l);
                    }
                }
                Err(e) => return Poll::Fail(Some(e)),
            }
            if st.get("status").and_then(Value::as_str) == Some("stopped") {
                Poll::Ready(())
            } else {
                Poll::Pending(None)
            }
        })
        .await;
        match r {
            // Its exit status and last lines, worded as every task's.
            Ok(_) => self.wait_task(upid, Duration::from_secs(30)).await,
            Err(GaveUp { last: Some(e), .. }) => Err(e),
            Err(GaveUp {
                last: None, waited, ..
            }) => Err(PveError::TaskTimeout {
                upid: upid.to_string(),
                waited,
            }),
        }
    }

    /// `POST /nodes/{node}/qemu` with `params`, and waits for the task.
    pub async fn create_vm(
        &self,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(), PveError> {
        let path = format!("/nodes/{}/qemu", self.node());
        self.run_task(Method::POST, &path, params, timeout).await?;
        self.made_on(params, self.node());
        Ok(())
    }

    /// `POST /nodes/{node}/qemu/{vmid}/template`, and waits for the task.
    pub async fn make_template(&self, vmid: u32, timeout: Duration) -> Result<(), PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/template", self.node());
        self.run_task(Method::POST, &path, &[], timeout).await
    }
}
