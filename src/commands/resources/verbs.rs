//! `driver vm|ct start|stop|shutdown|reboot|delete|unlock|set|create`: bulk verbs over the
//! guests a selection picks (several at once), each guest's outcome reported; destructive
//! verbs ask first; delete acts only on guests driver made unless told otherwise, unlock
//! only on those.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actions::resources::ops::{self, Change, Power, Provenance};
use actions::resources::{locks, GuestRow, Kind};
use serde::Serialize;

use super::{confirm, pick, pick_for_verb, pve_failure, run_err, with_conn, Conn, Failure};
use crate::cli::resources::{DeleteArgs, GuestCmd, KindArg, Output, SetArgs, VerbArgs};
use crate::render::resources::{self as out, Columns};

/// Guests acted on at once.
const AT_ONCE: usize = 8;

/// What happened to one guest.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub vmid: u32,
    pub name: String,
    pub action: &'static str,
    /// `done`, `failed`, or `planned` (a dry run).
    pub result: &'static str,
    pub error: Option<String>,
}

impl Columns for Outcome {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["VMID", "NAME", "ACTION", "RESULT", "ERROR"]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        vec![
            self.vmid.to_string(),
            self.name.clone(),
            self.action.into(),
            self.result.into(),
            self.error.clone().unwrap_or_default(),
        ]
    }
}

pub fn run(kind: KindArg, cmd: &GuestCmd, site: Option<&Path>) -> Result<(), Failure> {
    let kind = Kind::from(kind);
    match cmd {
        GuestCmd::Start(a) => power(kind, Power::Start, a, site),
        GuestCmd::Stop(a) => power(kind, Power::Stop, a, site),
        GuestCmd::Shutdown(a) => power(kind, Power::Shutdown, a, site),
        GuestCmd::Reboot(a) => power(kind, Power::Reboot, a, site),
        GuestCmd::Delete(a) => delete(kind, a, site),
        GuestCmd::Unlock(a) => unlock(kind, a, site),
        GuestCmd::Set(a) => set(kind, a, site),
        GuestCmd::Create(a) => super::create::run(kind, a, site),
    }
}

fn plural(n: usize, kind: Kind) -> String {
    format!("{n} {}{}", kind.name(), if n == 1 { "" } else { "s" })
}

/// Runs `act` on every guest, [`AT_ONCE`] at a time; the outcomes in the guests' order.
async fn each<F, Fut>(guests: &[GuestRow], action: &'static str, act: F) -> Vec<Outcome>
where
    F: Fn(GuestRow) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for (i, g) in guests.iter().enumerate() {
        let fut = act(g.clone());
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<Option<Result<(), String>>> = vec![None; guests.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            results[i] = Some(r);
        }
    }
    guests
        .iter()
        .zip(results)
        .map(|(g, r)| {
            let r = r.unwrap_or_else(|| Err("the task was lost".into()));
            Outcome {
                vmid: g.vmid,
                name: g.name.clone(),
                action,
                result: if r.is_ok() { "done" } else { "failed" },
                error: r.err(),
            }
        })
        .collect()
}

fn planned(guests: &[GuestRow], action: &'static str) -> Vec<Outcome> {
    guests
        .iter()
        .map(|g| Outcome {
            vmid: g.vmid,
            name: g.name.clone(),
            action,
            result: "planned",
            error: None,
        })
        .collect()
}

/// Prints the outcomes; an error (exit 1) when any failed.
fn report(outcomes: &[Outcome], output: Output) -> Result<(), Failure> {
    crate::render::out(&out::rows("outcomes", outcomes, output));
    let failed = outcomes.iter().filter(|o| o.result == "failed").count();
    match failed {
        0 => Ok(()),
        n => Err(Failure::Run(Some(miette::miette!(
            "{n} of {} guest(s) failed",
            outcomes.len()
        )))),
    }
}

fn nothing_selected(kind: Kind, host: &str) -> Failure {
    Failure::usage(miette::miette!(
        help = format!("`driver get {}s -H {host}` lists them", kind.name()),
        "the selection matches no {} on {host}",
        kind.name()
    ))
}

fn power(kind: Kind, verb: Power, a: &VerbArgs, site: Option<&Path>) -> Result<(), Failure> {
    let timeout = Duration::from_secs(a.timeout);
    let outcomes = with_conn(&a.host, site, async |c: &Conn| {
        let guests = pick_for_verb(c, kind, &a.select).await?;
        if guests.is_empty() {
            return Err(nothing_selected(kind, &c.host));
        }
        if a.dry_run {
            return Ok(planned(&guests, verb.name()));
        }
        if matches!(verb, Power::Stop | Power::Reboot) {
            confirm(
                &format!(
                    "{} {} on {}",
                    verb.name(),
                    plural(guests.len(), kind),
                    c.host
                ),
                a.yes,
            )?;
        }
        let client = c.client.clone();
        Ok(each(&guests, verb.name(), move |g| {
            let client = client.clone();
            async move {
                ops::power(&client, &g, verb, timeout)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await)
    })?;
    report(&outcomes, a.output)
}

fn delete(kind: Kind, a: &DeleteArgs, site: Option<&Path>) -> Result<(), Failure> {
    let v = &a.verb;
    let timeout = Duration::from_secs(v.timeout);
    let outcomes = with_conn(&v.host, site, async |c: &Conn| {
        let guests = pick_for_verb(c, kind, &v.select).await?;
        if guests.is_empty() {
            return Err(nothing_selected(kind, &c.host));
        }
        // Who made each: checked for all before anything is deleted.
        let mut refused = Vec::new();
        for g in &guests {
            let cfg = c
                .client
                .config(kind.pve(), g.vmid)
                .await
                .map_err(pve_failure)?;
            match Provenance::of_config(&cfg) {
                p if p.by_driver() => {}
                Provenance::Template => {
                    refused.push(format!("{} ({}): a template", g.name, g.vmid))
                }
                p if a.force_unowned => crate::errln!(
                    "warning: deleting {} {} ({}), made by {}: --force-unowned",
                    kind.name(),
                    g.name,
                    g.vmid,
                    p.describe()
                ),
                p => refused.push(format!("{} ({}): {}", g.name, g.vmid, p.describe())),
            }
        }
        if !refused.is_empty() {
            return Err(Failure::usage(miette::miette!(
                help = "driver deletes only guests it made; narrow the selection (-l owned=true), \
                        or pass --force-unowned to delete guests it did not make (never templates)",
                "refusing to delete, nothing was deleted:\n  {}",
                refused.join("\n  ")
            )));
        }
        if v.dry_run {
            return Ok(planned(&guests, "delete"));
        }
        confirm(
            &format!(
                "delete {} on {} with their disks",
                plural(guests.len(), kind),
                c.host
            ),
            v.yes,
        )?;
        let client = c.client.clone();
        Ok(each(&guests, "delete", move |g| {
            let client = client.clone();
            async move {
                ops::delete(&client, &g, timeout)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await)
    })?;
    report(&outcomes, v.output)
}

fn unlock(kind: Kind, a: &VerbArgs, site: Option<&Path>) -> Result<(), Failure> {
    let timeout = Duration::from_secs(a.timeout);
    let outcomes = with_conn(&a.host, site, async |c: &Conn| {
        let guests = pick_for_verb(c, kind, &a.select).await?;
        if guests.is_empty() {
            return Err(nothing_selected(kind, &c.host));
        }
        let refused = super::snapshot::unowned(c, &guests).await?;
        if !refused.is_empty() {
            return Err(Failure::usage(miette::miette!(
                help = "driver clears locks only on guests it made (on others: `qm unlock VMID` \
                        on the host, once sure no task holds the lock)",
                "refusing to unlock, nothing was done:\n  {}",
                refused.join("\n  ")
            )));
        }
        let Some(shell) = c.shell.clone() else {
            return Err(Failure::usage(miette::miette!(
                help = format!(
                    "set `ip:` (and `ssh_user:`) in the node file of {}, or run `{}` on the host",
                    c.host,
                    locks::unlock_command(kind, guests[0].vmid)
                ),
                "PVE clears a lock only on the host itself, and driver has no SSH address for {}",
                c.host
            )));
        };
        if a.dry_run {
            return Ok(planned(&guests, "unlock"));
        }
        confirm(
            &format!(
                "clear the config lock of {} on {} (refused where a task still holds it)",
                plural(guests.len(), kind),
                c.host
            ),
            a.yes,
        )?;
        let (client, host) = (c.client.clone(), c.host.clone());
        Ok(each(&guests, "unlock", move |g| {
            let (client, shell, host) = (client.clone(), shell.clone(), host.clone());
            async move {
                let lock = locks::unlock(&client, &shell, &g, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                crate::errln!(
                    "{} {} ({}): lock '{lock}' cleared{}",
                    g.kind.name(),
                    g.name,
                    g.vmid,
                    if lock == "rollback" {
                        format!(
                            "; the rollback did not complete, so its disks may be part rolled \
                             back: roll back again (`driver snapshot rollback {} -H {host} --name \
                             SNAPSHOT`)",
                            g.name
                        )
                    } else {
                        String::new()
                    }
                );
                Ok(())
            }
        })
        .await)
    })?;
    report(&outcomes, a.output)
}

#[derive(Serialize)]
struct SetResult {
    vmid: u32,
    name: String,
    diff: Vec<ops::DiffLine>,
    applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<super::snapshot::Guarded>,
}

fn set(kind: Kind, a: &SetArgs, site: Option<&Path>) -> Result<(), Failure> {
    let change = Change {
        cores: a.cores,
        memory_mb: a.memory,
        disk_gb: a.disk,
        disk: a.disk_name.clone(),
        tags: a.tags.clone(),
        description: None,
    };
    if change == Change::default() {
        return Err(Failure::usage(miette::miette!(
            "nothing to set: give --cores, --memory, --disk or --tags"
        )));
    }
    let json = matches!(a.output, Output::Json | Output::Yaml);
    let r = with_conn(&a.host, site, async |c: &Conn| {
        let sel = Default::default();
        let found = pick(c, Some(kind), std::slice::from_ref(&a.target), &sel, false).await?;
        let [g] = found.as_slice() else {
            return Err(Failure::usage(miette::miette!(
                help = "name it by vmid",
                "'{}' names {} guests: set changes one",
                a.target,
                found.len()
            )));
        };
        let cfg = c
            .client
            .config(kind.pve(), g.vmid)
            .await
            .map_err(pve_failure)?;
        let p = ops::plan_change(g, &cfg, &change).map_err(run_err)?;
        if !json {
            if p.is_empty() {
                crate::outln!("{} {} ({}): nothing to change", kind.name(), g.name, g.vmid);
            } else {
                crate::outln!("{} {} ({}):", kind.name(), g.name, g.vmid);
                for d in &p.diff {
                    crate::outln!(
                        "  {}: {} -> {}",
                        d.key,
                        d.from.as_deref().unwrap_or("(unset)"),
                        d.to
                    );
                }
            }
        }
        let apply = !a.dry_run && !p.is_empty();
        let mut guarded = None;
        if apply && a.snapshot {
            let g2 = super::snapshot::guarded_change(c, g, &change, &p, a.keep_snapshot).await?;
            if !json {
                crate::outln!("applied (snapshot '{}' {})", g2.snapshot, g2.outcome);
            }
            guarded = Some(g2);
        } else if apply {
            ops::apply_change(&c.client, g, &p)
                .await
                .map_err(pve_failure)?;
            if !json {
                crate::outln!("applied");
            }
        }
        Ok(SetResult {
            vmid: g.vmid,
            name: g.name.clone(),
            diff: p.diff.clone(),
            applied: apply,
            snapshot: guarded,
        })
    })?;
    if json {
        crate::render::out(&out::document(&r, a.output));
    }
    Ok(())
}
