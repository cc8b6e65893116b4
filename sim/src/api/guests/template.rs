//! `POST /nodes/{node}/qemu/{vmid}/template`: a stopped VM becomes a template, as
//! qemu-server does it: refused for a template (unless one `disk` is named), a running or
//! locked VM; then a `qmtemplate` task under the config lock sets `template: 1` and turns
//! its LVM-thin volumes into base volumes (`vm-N-disk-M` → `base-N-disk-M`), which linked
//! clones then build on.

use std::sync::Arc;

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::common::{checked, guest, locked_error};
use crate::error::{ApiError, ApiResult};
use crate::model::{is_disk_key, GuestKind};
use crate::schema::specs::{NODE, VMID_P};
use crate::schema::{ParamSpec, Ty};
use crate::state::Shared;
use crate::tasks::{submit, Job};

const TEMPLATE: &[ParamSpec] = &[NODE, VMID_P, ("disk", Ty::Str, false)];

pub(super) async fn template(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    vmid: u32,
) -> ApiResult<Value> {
    let kind = GuestKind::Qemu;
    let values = checked(shared, req, Some(vmid), TEMPLATE, None)?;
    let disk = values
        .get("disk")
        .and_then(Value::as_str)
        .map(str::to_string);
    {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        if let Some(d) = &disk {
            if !is_disk_key(kind, d) {
                return Err(ApiError::param(
                    "disk",
                    format!("value '{d}' does not have a value in the enumeration"),
                ));
            }
        }
        if let Some(l) = g.lock_prop() {
            return Err(ApiError::internal(locked_error(kind, &l)));
        }
        if g.template() && disk.is_none() {
            return Err(ApiError::internal(
                "you can't convert a template to a template",
            ));
        }
        if g.running {
            return Err(ApiError::internal(
                "you can't convert a VM to template if VM is running",
            ));
        }
    }
    let mut job = Job::new(
        "qmtemplate",
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!("VM {vmid} does not exist"));
            };
            if g.running {
                return Err("you can't convert a VM to template if VM is running".into());
            }
            let mut lines = Vec::new();
            let keys: Vec<String> = g
                .config
                .keys()
                .filter(|k| is_disk_key(kind, k))
                .filter(|k| disk.as_ref().is_none_or(|d| d == *k))
                .cloned()
                .collect();
            for k in keys {
                let Some(prop) = g.config.get(&k).and_then(Value::as_str) else {
                    continue;
                };
                if prop.contains("media=cdrom") || prop.contains("-cloudinit") {
                    continue;
                }
                let own = format!("vm-{vmid}-disk-");
                let Some((storage, vol)) = prop.split(',').next().and_then(|v| v.split_once(':'))
                else {
                    continue;
                };
                if !vol.starts_with(&own) {
                    continue;
                }
                let base = vol.replacen("vm-", "base-", 1);
                lines.push(format!(
                    "  Renamed \"{vol}\" to \"{base}\" in volume group \"pve\""
                ));
                lines.push(format!("  Logical volume pve/{base} changed."));
                let new =
                    prop.replacen(&format!("{storage}:{vol}"), &format!("{storage}:{base}"), 1);
                g.config.insert(k, json!(new));
            }
            g.config.insert("template".into(), json!(1));
            Ok(lines)
        }),
    );
    job.lock = vec![vmid];
    job.steps = vec![(shared.timings.config, String::new())];
    job.steps.retain(|(_, l)| !l.is_empty());
    Ok(json!(submit(shared, job).await))
}
