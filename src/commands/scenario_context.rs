//! The context of chained scenario runs (`--context-file`): loaded before a run, saved after
//! (written aside and renamed), and cleared of the guests a destroy removed.

use std::path::Path;

use serde_json::{Map, Value};

use super::Failure;

/// A usage error (exit 2) with an optional hint.
pub(super) fn usage(msg: String, help: Option<String>) -> Failure {
    Failure::usage(match help {
        Some(h) => miette::miette!(help = h, "{msg}"),
        None => miette::miette!("{msg}"),
    })
}

/// After a destroy, the context no longer names the destroyed guests: their
/// `NAME_ip` and `NAME_vm_id`, and `vm_ip` / `vm_id` where they were theirs.
pub(super) fn forget_destroyed(nodes: &[Value], ctx: &mut Map<String, Value>) {
    for n in nodes.iter().filter(|n| n["status"] == "destroyed") {
        let Some(name) = n["name"].as_str() else {
            continue;
        };
        for (key, first) in [("ip", "vm_ip"), ("vm_id", "vm_id")] {
            if let Some(v) = ctx.remove(&format!("{name}_{key}")) {
                if ctx.get(first) == Some(&v) {
                    ctx.remove(first);
                }
            }
        }
    }
}

pub(super) fn load_context(file: Option<&Path>) -> Result<Map<String, Value>, Failure> {
    let Some(f) = file else {
        return Ok(Map::new());
    };
    let text = match std::fs::read_to_string(f) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => {
            return Err(usage(
                format!("cannot read context file {}: {e}", f.display()),
                None,
            ))
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(usage(
            format!("context file {} is not a JSON object", f.display()),
            None,
        )),
        Err(e) => Err(usage(
            format!("invalid JSON in context file {}: {e}", f.display()),
            Some("remove it to start a new chain".into()),
        )),
    }
}

pub(super) fn save_context(file: Option<&Path>, ctx: &Map<String, Value>) -> Result<(), Failure> {
    let Some(f) = file else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(ctx).unwrap_or_else(|_| "{}".into());
    // Written aside and renamed: a run stopped mid-write leaves the old context whole.
    let tmp = f.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, f))
        .map_err(|e| {
            Failure::Run(Some(miette::miette!(
                "cannot save context to {}: {e}",
                f.display()
            )))
        })
}
