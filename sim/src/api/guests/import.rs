//! `import-from` on a new QEMU disk (`STORAGE:0,import-from=VOLID`), as qemu-server checks
//! and does it: the special syntax, a source volume that exists with content `images` or
//! `import`, and a new disk on the target storage of the image's size (a qcow2's virtual
//! size, rounded up to LVM's 4 MiB extents). The option itself is not kept in the config.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::content::{self, FileContent};
use crate::error::{ApiError, ApiResult};
use crate::model::{is_disk_key, GuestKind};
use crate::state::Shared;

const EXTENT: u64 = 4 << 20;

/// Rewrites every disk with `import-from` into a plain new disk of the source's size;
/// returns the task log lines of the copies.
pub(super) fn resolve(
    shared: &Shared,
    values: &mut BTreeMap<String, Value>,
) -> ApiResult<Vec<String>> {
    let mut lines = Vec::new();
    for (key, value) in values.iter_mut() {
        if !is_disk_key(GuestKind::Qemu, key) {
            continue;
        }
        let Some(text) = value.as_str() else { continue };
        let mut parts = text.split(',');
        let file = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let Some(source) = rest.iter().find_map(|p| p.strip_prefix("import-from=")) else {
            continue;
        };
        let new_disk = file
            .split_once(':')
            .is_some_and(|(_, size)| size.parse::<f64>().is_ok_and(|s| s == 0.0));
        if !new_disk {
            return Err(ApiError::param(
                key,
                "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
            ));
        }
        let path = match content::volume_file(shared, source) {
            Some((_, c)) if c != FileContent::Import => {
                return Err(ApiError::param(
                    key,
                    format!(
                        "{source} has wrong type '{}' - needs to be 'images' or 'import'",
                        c.name()
                    ),
                ))
            }
            Some((path, _)) => path,
            None if source.starts_with('/') => {
                return Err(ApiError::internal(format!(
                    "pvesim imports only from storage volumes, not the path '{source}'"
                )))
            }
            None => {
                return Err(ApiError::internal(format!(
                    "volume '{source}' does not exist"
                )))
            }
        };
        let size = content::image_size(&path)
            .map_err(|e| ApiError::internal(format!("could not get size of {source}: {e}")))?;
        let size = size.div_ceil(EXTENT).max(1) * EXTENT;
        let gib = size as f64 / (1u64 << 30) as f64;
        let kept: Vec<&str> = rest
            .iter()
            .copied()
            .filter(|p| !p.starts_with("import-from="))
            .collect();
        let storage = file.split(':').next().unwrap_or("");
        let mut out = format!("{storage}:{gib}");
        for p in kept {
            out.push(',');
            out.push_str(p);
        }
        let h = content::human(size);
        lines.push(format!("importing disk '{source}' to VM ..."));
        lines.push(format!("transferred 0.0 B of {h} (0.00%)"));
        lines.push(format!("transferred {h} of {h} (100.00%)"));
        *value = json!(out);
    }
    Ok(lines)
}
