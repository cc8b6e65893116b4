//! PVE's appliance index on a node: `GET /nodes/{node}/aplinfo` lists the container
//! templates Proxmox offers (the simulator's small built-in index,
//! [`crate::model::APPLIANCES`]), `POST` downloads one into a storage's `vztmpl` content as a
//! `download` task, as `pveam download STORAGE TEMPLATE` does.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::content::{self, FileContent};
use super::request::{data, ApiRequest};
use super::storage;
use crate::error::{ApiError, ApiResult};
use crate::model::{appliance, APL_SOURCE, APPLIANCES};
use crate::schema::{validate, Ty};
use crate::state::Shared;
use crate::tasks::{submit, Job};

/// How long (at time scale 1) an appliance takes to download.
const DOWNLOAD: Duration = Duration::from_secs(5);

/// One entry of `GET .../aplinfo` (the fields of an `aplinfo.dat` record).
#[derive(Serialize)]
struct Entry {
    template: String,
    package: &'static str,
    version: &'static str,
    os: &'static str,
    section: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    headline: &'static str,
    description: &'static str,
    location: String,
    source: &'static str,
    infopage: &'static str,
    maintainer: &'static str,
    architecture: &'static str,
    sha512sum: String,
}

/// `GET /nodes/{node}/aplinfo`.
pub(crate) fn list() -> ApiResult<Value> {
    data(
        APPLIANCES
            .iter()
            .map(|a| Entry {
                template: a.template(),
                package: a.package,
                version: a.version,
                os: a.os,
                section: a.section(),
                ty: "lxc",
                headline: a.headline,
                description: a.description,
                location: a.location(),
                source: APL_SOURCE,
                infopage:
                    "https://pve.proxmox.com/wiki/Linux_Container#pct_supported_distributions",
                maintainer: "Proxmox Support Team <support@proxmox.com>",
                architecture: "amd64",
                // A stand-in: there are no archive bytes to hash in a simulator.
                sha512sum: hex(ring::digest::digest(
                    &ring::digest::SHA512,
                    a.location().as_bytes(),
                )
                .as_ref()),
            })
            .collect::<Vec<_>>(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /nodes/{node}/aplinfo` (`storage`, `template`): the download as a task.
pub(crate) async fn download(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let mut p = req.params.clone();
    p.insert("node", shared.node.clone());
    let spec = [
        ("node", Ty::Str, true),
        ("storage", Ty::Str, true),
        ("template", Ty::Str, true),
    ];
    let values = validate(&p, &spec, None)?;
    let text = |k: &str| {
        values
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (store, template) = (text("storage"), text("template"));
    if template.len() > 255 {
        return Err(ApiError::param(
            "template",
            "value may only be 255 characters long",
        ));
    }
    let a = appliance(&template).ok_or_else(|| ApiError::param("template", "no such template"))?;
    storage::get(shared, &store)?;
    if !storage::takes(shared, &store, "vztmpl") {
        return Err(ApiError::internal(format!(
            "storage '{store}' does not support templates"
        )));
    }
    let volid = format!("{store}:vztmpl/{template}");
    let location = a.location();
    let size = a.size;
    let mut job = Job::new(
        "download",
        template.clone(),
        &req.user,
        Box::new(move |_, shared| {
            content::store_placeholder(&shared.storage_root, FileContent::Vztmpl, &template, size)
                .map_err(|e| format!("unable to store '{volid}': {e}"))?;
            Ok(vec![
                "calculating checksum...OK, checksum verified".to_string(),
                format!(
                    "download of '{location}' to '/var/lib/vz/template/cache/{template}' finished"
                ),
            ])
        }),
    );
    job.steps = vec![(
        DOWNLOAD,
        format!(
            "downloading {} to /var/lib/vz/template/cache/{}",
            a.location(),
            a.template()
        ),
    )];
    Ok(json!(submit(shared, job).await))
}
