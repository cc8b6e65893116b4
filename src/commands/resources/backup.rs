//! `driver backup` (vzdump each guest, then prune its older driver-made backups beyond
//! `--keep-last`) and `driver restore` (a guest from its newest or a named backup, over the
//! existing guest only after asking and only for guests driver made). The work is
//! `actions::resources::backups`.

use std::path::Path;
use std::time::Duration;

use actions::resources::backups::{self as bk, BackupRow};
use actions::resources::{self as res, Kind};
use serde::Serialize;

use super::snapshot::{check_owned, guests_of};
use super::{confirm, pve_failure, run_err, with_conn, Conn, Failure};
use crate::cli::snapshots::{BackupArgs, RestoreArgs};
use crate::render::resources::{self as out, Columns};

/// One guest's backup.
#[derive(Clone, Debug, Serialize)]
pub struct BackupOutcome {
    pub vmid: u32,
    pub guest: String,
    /// `done` or `failed`.
    pub result: &'static str,
    pub volid: Option<String>,
    /// Older driver-made backups deleted by `--keep-last`.
    pub pruned: Vec<String>,
    pub error: Option<String>,
}

impl Columns for BackupOutcome {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["VMID", "GUEST", "RESULT", "BACKUP", "PRUNED", "ERROR"]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        vec![
            self.vmid.to_string(),
            self.guest.clone(),
            self.result.into(),
            self.volid.clone().unwrap_or_default(),
            self.pruned.len().to_string(),
            self.error.clone().unwrap_or_default(),
        ]
    }
}

async fn storage_for(c: &Conn, asked: Option<&str>) -> Result<Vec<String>, Failure> {
    let all = bk::backup_storages(&c.client).await.map_err(pve_failure)?;
    match asked {
        Some(s) if all.iter().any(|x| x == s) => Ok(vec![s.to_string()]),
        Some(s) => Err(Failure::usage(miette::miette!(
            help = format!("storages holding backups on {}: {}", c.host, all.join(", ")),
            "storage '{s}' does not hold backups on {}",
            c.host
        ))),
        None if all.is_empty() => Err(run_err(format!(
            "no storage on {} holds backups (content 'backup')",
            c.host
        ))),
        None => Ok(all),
    }
}

pub fn backup(a: &BackupArgs, site: Option<&Path>) -> Result<(), Failure> {
    let timeout = Duration::from_secs(a.timeout);
    let outcomes = with_conn(&a.host, site, async |c: &Conn| {
        let guests = guests_of(c, &a.guests).await?;
        let storages = storage_for(c, a.storage.as_deref()).await?;
        let storage = &storages[0];
        let mut outcomes = Vec::new();
        for g in &guests {
            let mut o = BackupOutcome {
                vmid: g.vmid,
                guest: g.name.clone(),
                result: "done",
                volid: None,
                pruned: Vec::new(),
                error: None,
            };
            match bk::backup(&c.client, g, storage, timeout).await {
                Ok(v) => o.volid = Some(v),
                Err(e) => {
                    o.result = "failed";
                    o.error = Some(e.to_string());
                }
            }
            if let (Some(n), Some(_)) = (a.keep_last, &o.volid) {
                let all = bk::list(&c.client, &g.node, storage, Some(g.vmid))
                    .await
                    .map_err(pve_failure)?;
                for old in bk::to_prune(&all, g.vmid, n) {
                    match bk::delete(&c.client, &g.node, &old.volid, timeout).await {
                        Ok(()) => o.pruned.push(old.volid),
                        Err(e) => {
                            o.result = "failed";
                            o.error = Some(format!("pruning {}: {e}", old.volid));
                        }
                    }
                }
            }
            outcomes.push(o);
        }
        Ok(outcomes)
    })?;
    crate::render::out(&out::rows("backups", &outcomes, a.output));
    match outcomes.iter().filter(|o| o.result == "failed").count() {
        0 => Ok(()),
        n => Err(run_err(format!(
            "{n} of {} backup(s) failed",
            outcomes.len()
        ))),
    }
}

/// What `restore` did.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    pub vmid: u32,
    pub kind: Kind,
    pub from: String,
    /// It replaced an existing guest.
    pub replaced: bool,
    pub started: bool,
    /// `done` or `planned` (a dry run).
    pub result: &'static str,
}

impl Columns for Restored {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["VMID", "KIND", "FROM", "REPLACED", "STARTED", "RESULT"]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        vec![
            self.vmid.to_string(),
            self.kind.name().into(),
            self.from.clone(),
            self.replaced.to_string(),
            self.started.to_string(),
            self.result.into(),
        ]
    }
}

/// The backups TARGET may mean: of the existing guest it names, else of the vmid it is,
/// else those whose driver notes name it.
fn of_target(all: &[BackupRow], target: &str, existing: Option<u32>) -> Vec<BackupRow> {
    let vmid = existing.or_else(|| target.parse().ok());
    all.iter()
        .filter(|b| match vmid {
            Some(v) => b.vmid == Some(v),
            None => b.guest.as_deref() == Some(target),
        })
        .cloned()
        .collect()
}

pub fn restore(a: &RestoreArgs, site: Option<&Path>) -> Result<(), Failure> {
    let timeout = Duration::from_secs(a.timeout);
    let r = with_conn(&a.host, site, async |c: &Conn| {
        let rows = res::guests(&c.client).await.map_err(pve_failure)?;
        let t = actions::resources::select::Target::parse(&a.target);
        let existing: Vec<_> = rows
            .iter()
            .filter(|g| t.matches(g) && !g.template)
            .collect();
        if existing.len() > 1 {
            return Err(Failure::usage(miette::miette!(
                help = "name it by vmid",
                "'{}' names {} guests",
                a.target,
                existing.len()
            )));
        }
        let existing = existing.first().map(|g| (*g).clone());
        let mut all = Vec::new();
        for s in storage_for(c, a.storage.as_deref()).await? {
            all.extend(
                bk::list(&c.client, c.client.node(), &s, None)
                    .await
                    .map_err(pve_failure)?,
            );
        }
        let candidates = of_target(&all, &a.target, existing.as_ref().map(|g| g.vmid));
        let chosen = match &a.from {
            Some(v) => all
                .iter()
                .find(|b| &b.volid == v)
                .cloned()
                .ok_or_else(|| run_err(format!("no backup '{v}' on {}", c.host)))?,
            None => candidates
                .iter()
                .max_by(|x, y| x.ctime.cmp(&y.ctime).then(x.volid.cmp(&y.volid)))
                .cloned()
                .ok_or_else(|| run_err(format!("no backup of '{}' on {}", a.target, c.host)))?,
        };
        let kind = chosen
            .kind
            .ok_or_else(|| run_err(format!("'{}': not a VM or container backup", chosen.volid)))?;
        let vmid = match (&existing, chosen.vmid) {
            (Some(g), _) => g.vmid,
            (None, Some(v)) => a.target.parse().unwrap_or(v),
            (None, None) => return Err(run_err(format!("'{}' names no guest", chosen.volid))),
        };
        let was_running = existing.as_ref().is_some_and(|g| g.status == "running");
        let mut done = Restored {
            vmid,
            kind,
            from: chosen.volid.clone(),
            replaced: existing.is_some(),
            started: a.start || was_running,
            result: "planned",
        };
        if let Some(g) = &existing {
            if g.kind != kind {
                return Err(run_err(format!(
                    "'{}' is a {} backup, guest {} is a {}",
                    chosen.volid,
                    kind.name(),
                    g.vmid,
                    g.kind.name()
                )));
            }
            check_owned(c, std::slice::from_ref(g), a.force_unowned, "restore over").await?;
        }
        if a.dry_run {
            return Ok(done);
        }
        if let Some(g) = &existing {
            confirm(
                &format!(
                    "replace {} {} ({}) on {} with '{}' (its disks, config and snapshots)",
                    kind.name(),
                    g.name,
                    g.vmid,
                    c.host,
                    chosen.volid
                ),
                a.yes,
            )?;
            if was_running {
                c.client
                    .stop(kind.pve(), g.vmid, timeout)
                    .await
                    .map_err(pve_failure)?;
            }
        }
        bk::restore(
            &c.client,
            kind,
            vmid,
            &chosen.volid,
            existing.is_some(),
            done.started,
            timeout,
        )
        .await
        .map_err(pve_failure)?;
        done.result = "done";
        Ok(done)
    })?;
    crate::render::out(&out::rows("restores", std::slice::from_ref(&r), a.output));
    Ok(())
}
