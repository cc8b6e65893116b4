//! Containers from templates on a PVE node: the storages that hold container templates and
//! their `vztmpl` content, PVE's appliance index (`aplinfo`) and its downloads, a download
//! from a URL into a storage (`download-url`), and `POST /nodes/{node}/lxc`. Tasks are
//! waited for.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::{PveClient, PveError};

/// One entry of PVE's appliance index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplianceEntry {
    /// `debian-12-standard`
    pub package: String,
    /// `12.12-1`
    pub version: String,
    /// The archive's file name: `debian-12-standard_12.12-1_amd64.tar.zst`.
    pub template: String,
}

fn list<'v>(v: &'v Value, path: &str) -> Result<&'v Vec<Value>, PveError> {
    v.as_array().ok_or_else(|| PveError::Shape {
        path: path.to_string(),
        message: "expected a list".into(),
    })
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl PveClient {
    /// The active storages of this node that take container templates (`vztmpl`).
    pub async fn vztmpl_storages(&self) -> Result<Vec<String>, PveError> {
        let path = format!("/nodes/{}/storage", self.node());
        let v = self
            .get_with(&path, &[("content", "vztmpl".to_string())])
            .await?;
        Ok(list(&v, &path)?
            .iter()
            // A storage listed inactive (`active: 0`) cannot be read or written now.
            .filter(|s| s.get("active").and_then(Value::as_u64) != Some(0))
            .map(|s| text(s, "storage"))
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// The volids (`local:vztmpl/FILE`) of the container templates in `storage`.
    pub async fn vztmpl_volumes(&self, storage: &str) -> Result<Vec<String>, PveError> {
        let path = format!("/nodes/{}/storage/{storage}/content", self.node());
        let v = self
            .get_with(&path, &[("content", "vztmpl".to_string())])
            .await?;
        Ok(list(&v, &path)?
            .iter()
            .filter(|e| e.get("content").and_then(Value::as_str) == Some("vztmpl"))
            .map(|e| text(e, "volid"))
            .filter(|v| !v.is_empty())
            .collect())
    }

    /// PVE's appliance index on this node (`pveam available`).
    pub async fn appliances(&self) -> Result<Vec<ApplianceEntry>, PveError> {
        let path = format!("/nodes/{}/aplinfo", self.node());
        let v = self.get(&path).await?;
        Ok(list(&v, &path)?
            .iter()
            .map(|a| ApplianceEntry {
                package: text(a, "package"),
                version: text(a, "version"),
                template: text(a, "template"),
            })
            .filter(|a| !a.package.is_empty() && !a.template.is_empty())
            .collect())
    }

    /// Downloads appliance `template` into `storage` (`pveam download`) and waits.
    pub async fn download_appliance(
        &self,
        storage: &str,
        template: &str,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let path = format!("/nodes/{}/aplinfo", self.node());
        let params = [
            ("storage", storage.to_string()),
            ("template", template.to_string()),
        ];
        self.run_task(Method::POST, &path, &params, timeout).await
    }

    /// Creates a container (`POST /nodes/{node}/lxc`, `vmid` among `params`) and waits.
    pub async fn create_container(
        &self,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(), PveError> {
        self.create_container_on(None, params, timeout).await
    }

    /// [`PveClient::create_container`] on cluster node `on` (else the node file's).
    pub async fn create_container_on(
        &self,
        on: Option<&str>,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(), PveError> {
        let node = on.unwrap_or(self.node());
        let path = format!("/nodes/{node}/lxc");
        self.run_task(Method::POST, &path, params, timeout).await?;
        self.made_on(params, node);
        Ok(())
    }
}
