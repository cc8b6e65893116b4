//! Snapshots of guests through the one [`PveClient`]: list, create, roll back, delete one
//! guest's; and the all-or-nothing forms over an ordered set of guests (a manifest's tree):
//! [`create_all`] makes them in order and, when one fails, deletes the ones it made;
//! [`rollback_all`] rolls back in the order given and stops at the first failure, saying
//! which guests were rolled back and which not. Which order is the caller's (the CLI: tree
//! order for create, reversed for rollback).

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::GuestRow;
use crate::pve::{PveClient, PveError};

/// One snapshot of a guest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotRow {
    pub vmid: u32,
    pub guest: String,
    pub name: String,
    /// Unix time it was taken.
    pub snaptime: Option<u64>,
    pub parent: Option<String>,
    pub description: String,
    /// The guest's current state descends from it (the config's `parent`).
    pub current: bool,
}

/// The guest's snapshots on the node that holds it (the row's node: in a cluster the
/// listing says which).
fn base(g: &GuestRow) -> String {
    format!(
        "/nodes/{}/{}/{}/snapshot",
        g.node,
        g.kind.pve().segment(),
        g.vmid
    )
}

/// The guest's snapshots, oldest first (PVE's `current` entry left out).
pub async fn list(client: &PveClient, g: &GuestRow) -> Result<Vec<SnapshotRow>, PveError> {
    let path = base(g);
    let v = client.get(&path).await?;
    let items = super::list(&v, &path)?;
    let here = items
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some("current"))
        .and_then(|s| s.get("parent").and_then(Value::as_str))
        .map(str::to_string);
    let mut out: Vec<SnapshotRow> = items
        .iter()
        .filter(|s| s.get("name").and_then(Value::as_str) != Some("current"))
        .map(|s| {
            let name = super::str_of(s, "name");
            SnapshotRow {
                vmid: g.vmid,
                guest: g.name.clone(),
                current: here.as_deref() == Some(name.as_str()),
                snaptime: super::num(s, "snaptime"),
                parent: Some(super::str_of(s, "parent")).filter(|p| !p.is_empty()),
                description: super::str_of(s, "description"),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.snaptime.cmp(&b.snaptime).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// Takes snapshot `name` of the guest (no RAM state: a running VM's disks only).
pub async fn create(
    client: &PveClient,
    g: &GuestRow,
    name: &str,
    description: Option<&str>,
    timeout: Duration,
) -> Result<(), PveError> {
    let mut params = vec![("snapname", name.to_string())];
    if let Some(d) = description {
        params.push(("description", d.to_string()));
    }
    client
        .run_task(Method::POST, &base(g), &params, timeout)
        .await
}

/// Rolls the guest back to `name`. PVE stops it first; `start` starts it again after.
pub async fn rollback(
    client: &PveClient,
    g: &GuestRow,
    name: &str,
    start: bool,
    timeout: Duration,
) -> Result<(), PveError> {
    let path = format!("{}/{}/rollback", base(g), name);
    let params = if start {
        vec![("start", "1".to_string())]
    } else {
        Vec::new()
    };
    client.run_task(Method::POST, &path, &params, timeout).await
}

/// Deletes snapshot `name` of the guest.
pub async fn delete(
    client: &PveClient,
    g: &GuestRow,
    name: &str,
    timeout: Duration,
) -> Result<(), PveError> {
    let path = format!("{}/{}", base(g), name);
    client.run_task(Method::DELETE, &path, &[], timeout).await
}

/// What an all-or-nothing operation did to each guest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub vmid: u32,
    pub guest: String,
    /// `done`, `failed`, `undone` (made, then deleted again), `undo_failed`, `not_done`.
    pub result: &'static str,
    pub error: Option<String>,
}

/// The guests of `steps` whose result is `result`, as `name (vmid), ...` for a message.
pub fn guests_with(steps: &[Step], result: &str) -> String {
    steps
        .iter()
        .filter(|s| s.result == result)
        .map(|s| format!("{} ({})", s.guest, s.vmid))
        .collect::<Vec<_>>()
        .join(", ")
}

fn step(g: &GuestRow, result: &'static str, error: Option<String>) -> Step {
    Step {
        vmid: g.vmid,
        guest: g.name.clone(),
        result,
        error,
    }
}

/// Snapshot `name` of every guest, in order; all or nothing: when one fails, the ones made
/// are deleted again (newest first). `Ok` when all were made.
pub async fn create_all(
    client: &PveClient,
    guests: &[GuestRow],
    name: &str,
    description: Option<&str>,
    timeout: Duration,
) -> Result<Vec<Step>, Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        match create(client, g, name, description, timeout).await {
            Ok(()) => steps.push(step(g, "done", None)),
            Err(e) => {
                steps.push(step(g, "failed", Some(e.to_string())));
                // Undo, newest first.
                for j in (0..i).rev() {
                    let made = &guests[j];
                    steps[j] = match delete(client, made, name, timeout).await {
                        Ok(()) => step(made, "undone", None),
                        Err(e) => step(made, "undo_failed", Some(e.to_string())),
                    };
                }
                steps.extend(guests[i + 1..].iter().map(|g| step(g, "not_done", None)));
                return Err(steps);
            }
        }
    }
    Ok(steps)
}

/// Rolls every guest back to `name`, in order, stopping at the first failure (the rest are
/// `not_done`; the ones before stay rolled back). `Ok` when all were.
pub async fn rollback_all(
    client: &PveClient,
    guests: &[GuestRow],
    name: &str,
    start: impl Fn(&GuestRow) -> bool,
    timeout: Duration,
) -> Result<Vec<Step>, Vec<Step>> {
    let mut steps = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        if let Err(e) = rollback(client, g, name, start(g), timeout).await {
            steps.push(step(g, "failed", Some(e.to_string())));
            steps.extend(guests[i + 1..].iter().map(|g| step(g, "not_done", None)));
            return Err(steps);
        }
        steps.push(step(g, "done", None));
    }
    Ok(steps)
}
