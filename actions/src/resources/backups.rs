//! Backups through vzdump and restores from them, with the one [`PveClient`]. PVE's archive
//! names do not say who made a backup, so driver's carry notes (vzdump's `notes-template`,
//! PVE 7.2+) starting with [`NOTES_MARK`] and naming the guest; pruning (`--keep-last`)
//! deletes only backups with that mark, never someone else's, and a deleted guest's backups
//! are found by the name in their notes.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::{GuestRow, Kind};
use crate::pve::{PveClient, PveError};

/// The first word of the notes of every backup driver makes.
pub const NOTES_MARK: &str = "driver-backup";
/// vzdump's notes template for driver's backups (`{{guestname}}`, `{{vmid}}` filled by PVE).
pub const NOTES_TEMPLATE: &str = "driver-backup name={{guestname}} vmid={{vmid}}";

/// One backup archive on a storage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupRow {
    pub volid: String,
    pub storage: String,
    pub vmid: Option<u32>,
    pub kind: Option<Kind>,
    /// The guest's name, from driver's notes.
    pub guest: Option<String>,
    /// Unix time of the backup.
    pub ctime: Option<u64>,
    pub size: Option<u64>,
    pub format: String,
    pub notes: String,
    /// Made by driver (its notes carry [`NOTES_MARK`]).
    pub by_driver: bool,
}

/// The guest name in driver's notes (`driver-backup name=NAME vmid=N`).
pub fn name_in_notes(notes: &str) -> Option<String> {
    let rest = notes.strip_prefix(NOTES_MARK)?;
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .map(str::to_string)
}

/// The storages of the node that hold backups.
pub async fn backup_storages(client: &PveClient) -> Result<Vec<String>, PveError> {
    Ok(client
        .storages()
        .await?
        .into_iter()
        .filter(|s| s.holds("backup") && s.usable())
        .map(|s| s.storage)
        .collect())
}

/// The backups on `storage` as `node` sees it (of `vmid` when given), oldest first. A
/// guest's: on its own node (in a cluster a node-local storage is that node's).
pub async fn list(
    client: &PveClient,
    node: &str,
    storage: &str,
    vmid: Option<u32>,
) -> Result<Vec<BackupRow>, PveError> {
    let path = format!("/nodes/{node}/storage/{storage}/content");
    let mut params = vec![("content", "backup".to_string())];
    if let Some(v) = vmid {
        params.push(("vmid", v.to_string()));
    }
    let v = client.get_with(&path, &params).await?;
    let mut out: Vec<BackupRow> = super::list(&v, &path)?
        .iter()
        .filter(|b| b.get("content").and_then(Value::as_str) == Some("backup"))
        .map(|b| {
            let notes = super::str_of(b, "notes");
            BackupRow {
                volid: super::str_of(b, "volid"),
                storage: storage.to_string(),
                vmid: super::num(b, "vmid").and_then(|n| u32::try_from(n).ok()),
                kind: match super::str_of(b, "subtype").as_str() {
                    "qemu" => Some(Kind::Vm),
                    "lxc" => Some(Kind::Ct),
                    _ => None,
                },
                guest: name_in_notes(&notes),
                ctime: super::num(b, "ctime"),
                size: super::num(b, "size"),
                format: super::str_of(b, "format"),
                by_driver: notes.starts_with(NOTES_MARK),
                notes,
            }
        })
        .filter(|b| vmid.is_none_or(|v| b.vmid == Some(v)))
        .collect();
    out.sort_by(|a, b| a.ctime.cmp(&b.ctime).then(a.volid.cmp(&b.volid)));
    Ok(out)
}

/// Backs the guest up to `storage` (vzdump, snapshot mode, zstd, driver's notes); returns
/// the new archive's volume id.
pub async fn backup(
    client: &PveClient,
    g: &GuestRow,
    storage: &str,
    timeout: Duration,
) -> Result<String, PveError> {
    let before: Vec<String> = list(client, &g.node, storage, Some(g.vmid))
        .await?
        .into_iter()
        .map(|b| b.volid)
        .collect();
    // vzdump runs on the node that holds the guest.
    let path = format!("/nodes/{}/vzdump", g.node);
    let params = [
        ("vmid", g.vmid.to_string()),
        ("storage", storage.to_string()),
        ("mode", "snapshot".to_string()),
        ("compress", "zstd".to_string()),
        ("notes-template", NOTES_TEMPLATE.to_string()),
    ];
    client
        .run_task(Method::POST, &path, &params, timeout)
        .await?;
    list(client, &g.node, storage, Some(g.vmid))
        .await?
        .into_iter()
        .rev()
        .find(|b| !before.contains(&b.volid))
        .map(|b| b.volid)
        .ok_or_else(|| PveError::Shape {
            path,
            message: format!(
                "vzdump of {} ended OK but no new backup is listed on {storage}",
                g.vmid
            ),
        })
}

/// Deletes one backup archive, through `node` (see [`list`]).
pub async fn delete(
    client: &PveClient,
    node: &str,
    volid: &str,
    timeout: Duration,
) -> Result<(), PveError> {
    let storage = volid.split(':').next().unwrap_or_default();
    let path = format!(
        "/nodes/{node}/storage/{storage}/content/{}",
        crate::pve::encode_path(volid)
    );
    client.run_task(Method::DELETE, &path, &[], timeout).await
}

/// The backups of `vmid` on `storage` that [`prune`] would delete to keep the newest
/// `keep_last` of driver's (others are never counted nor deleted).
pub fn to_prune(backups: &[BackupRow], vmid: u32, keep_last: usize) -> Vec<BackupRow> {
    let mut mine: Vec<&BackupRow> = backups
        .iter()
        .filter(|b| b.by_driver && b.vmid == Some(vmid))
        .collect();
    mine.sort_by(|a, b| b.ctime.cmp(&a.ctime).then(b.volid.cmp(&a.volid)));
    mine.into_iter().skip(keep_last).cloned().collect()
}

/// Restores `volid` as guest `vmid` (over an existing one when `force`), started after
/// when `start`.
pub async fn restore(
    client: &PveClient,
    kind: Kind,
    vmid: u32,
    volid: &str,
    force: bool,
    start: bool,
    timeout: Duration,
) -> Result<(), PveError> {
    let path = format!("/nodes/{}/{}", client.node(), kind.pve().segment());
    let mut params = vec![("vmid", vmid.to_string())];
    match kind {
        Kind::Vm => params.push(("archive", volid.to_string())),
        Kind::Ct => {
            params.push(("ostemplate", volid.to_string()));
            params.push(("restore", "1".to_string()));
        }
    }
    if force {
        params.push(("force", "1".to_string()));
    }
    if start {
        params.push(("start", "1".to_string()));
    }
    client.run_task(Method::POST, &path, &params, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(volid: &str, vmid: u32, ctime: u64, notes: &str) -> BackupRow {
        BackupRow {
            volid: volid.into(),
            storage: "local".into(),
            vmid: Some(vmid),
            kind: Some(Kind::Vm),
            guest: name_in_notes(notes),
            ctime: Some(ctime),
            size: None,
            format: "vma.zst".into(),
            notes: notes.into(),
            by_driver: notes.starts_with(NOTES_MARK),
        }
    }

    #[test]
    fn prunes_only_drivers_oldest() {
        let b = [
            row("a", 100, 1, "driver-backup name=web vmid=100"),
            row("b", 100, 2, "someone else's"),
            row("c", 100, 3, "driver-backup name=web vmid=100"),
            row("d", 100, 4, "driver-backup name=web vmid=100"),
            row("e", 101, 0, "driver-backup name=db vmid=101"),
        ];
        let gone: Vec<String> = to_prune(&b, 100, 2).into_iter().map(|r| r.volid).collect();
        assert_eq!(gone, ["a"]);
        assert_eq!(to_prune(&b, 100, 0).len(), 3);
        assert_eq!(
            name_in_notes("driver-backup name=web vmid=100").as_deref(),
            Some("web")
        );
        assert_eq!(name_in_notes("backup name=web"), None);
    }
}
