//! Self-healing of a built tree (`driver create --heal`): what each problem [`health::check`]
//! found calls for under a [`Mode`], and the repairs made in place on the host (config drift:
//! cores, memory, a disk grown back; deleting a broken guest of this state's so that it is
//! rebuilt). Starting a stopped guest and building a missing one are the create steps' own
//! work: the caller resets the node's state so that they run again (and wait for the
//! guest's address and SSH as a first create does).
//!
//! API calls a heal makes are retried with back-off when the failure is transient (the API
//! unreachable, a proxy's 502-504/595/596, a config lock timeout); every write here is
//! idempotent (absolute sizes and values, a start or delete that first looks), so a retry
//! after a lost answer cannot do it twice.

use std::future::Future;
use std::time::Duration;

use engine::ownership::{Claim, Owner};
use serde::Serialize;

use crate::health::{NodeHealth, Problem};
use crate::pve::{PveClient, PveError};
use crate::resources::{self as res, ops};

/// What `create` repairs on a tree that exists already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report only; a tree with problems is refused.
    None,
    /// Start stopped guests, rebuild missing ones, repair drift in place.
    Restart,
    /// Also rebuild guests whose problem cannot be repaired in place.
    Recreate,
}

impl Mode {
    /// Its `--heal` value (what a parent passes on to nested drivers).
    pub fn flag(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Restart => "restart",
            Mode::Recreate => "recreate",
        }
    }
}

/// One repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Step {
    /// Start the stopped guest (create's start / wait steps run again).
    Start,
    /// Its guest is gone: build it anew (its old host key forgotten).
    Rebuild,
    /// Delete this state's broken guest, then build it anew.
    Recreate,
    /// Set its config back in place.
    Resize {
        cores: Option<u32>,
        memory_mb: Option<u64>,
        disk_gb: Option<u32>,
    },
    /// Not repaired.
    Leave,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::Rebuild | Step::Recreate => "recreate",
            Step::Resize { .. } => "resize",
            Step::Leave => "leave",
        }
    }
}

/// A repair of one node, and the problem(s) it answers, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub node: String,
    pub vmid: Option<u32>,
    #[serde(flatten)]
    pub step: Step,
    pub reason: String,
}

/// The repairs for `nodes` under `mode` (`None` plans as `Restart` would: the caller shows
/// that plan and refuses). Nodes never created are not heals: create builds them anyway.
pub fn plan(nodes: &[NodeHealth], mode: Mode) -> Vec<Planned> {
    let mut out = Vec::new();
    for n in nodes {
        let mut steps: Vec<(Step, String)> = Vec::new();
        let mut resize = (None, None, None);
        let mut resized = Vec::new();
        let mut rebuild: Option<String> = None;
        for p in &n.problems {
            match p {
                Problem::NotCreated => {}
                Problem::Missing { vmid } => {
                    rebuild = Some(format!("guest {vmid} is gone from the host"));
                }
                Problem::Replaced { vmid, detail } => steps.push((
                    Step::Leave,
                    format!("vmid {vmid} is now held by {detail}: not this state's to touch"),
                )),
                Problem::Locked { lock, seconds, .. } => steps.push((
                    Step::Leave,
                    match seconds {
                        Some(s) => {
                            format!("locked ({lock} for {s}s): `driver tasks` shows what holds it")
                        }
                        None => format!(
                            "locked ({lock}), no task holds it: `driver vm|ct unlock {}` clears it",
                            n.name
                        ),
                    },
                )),
                Problem::Drift {
                    key, want, have, ..
                } => {
                    let (c, m, d) = &mut resize;
                    match key.as_str() {
                        "cores" => *c = want.parse().ok(),
                        "memory" => *m = want.parse().ok(),
                        "scsi0" | "rootfs" => *d = want.trim_end_matches('G').parse().ok(),
                        _ => {
                            let why = format!("{key} is {have}, not {want}");
                            if mode == Mode::Recreate {
                                rebuild.get_or_insert(why);
                            } else {
                                steps.push((
                                    Step::Leave,
                                    format!("{why}: not repaired in place (--heal recreate rebuilds it)"),
                                ));
                            }
                            continue;
                        }
                    }
                    resized.push(format!("{key} {have} -> {want}"));
                }
                Problem::Stopped { vmid } => {
                    steps.push((Step::Start, format!("guest {vmid} is stopped")))
                }
                Problem::AgentSilent { .. } | Problem::SshFailing { .. } => {
                    let why = match p {
                        Problem::SshFailing {
                            address, detail, ..
                        } => format!("SSH at {address} fails ({detail})"),
                        _ => "its guest agent gives no address".into(),
                    };
                    if mode == Mode::Recreate {
                        rebuild.get_or_insert(why);
                    } else {
                        steps.push((Step::Leave, format!("{why} (--heal recreate rebuilds it)")));
                    }
                }
            }
        }
        let missing = n
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Missing { .. }));
        let held = n
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Replaced { .. } | Problem::Locked { .. }));
        match rebuild {
            Some(why) if missing || !held => {
                // A rebuild makes everything else moot.
                let step = if missing {
                    Step::Rebuild
                } else {
                    Step::Recreate
                };
                out.push(Planned {
                    node: n.name.clone(),
                    vmid: n.vmid,
                    step,
                    reason: why,
                });
                continue;
            }
            Some(why) => steps.push((Step::Leave, format!("{why}; not rebuilt while held"))),
            None => {}
        }
        if resize != (None, None, None) {
            let (cores, memory_mb, disk_gb) = resize;
            // Config first: a stopped guest then starts with it.
            steps.insert(
                0,
                (
                    Step::Resize {
                        cores,
                        memory_mb,
                        disk_gb,
                    },
                    resized.join(", "),
                ),
            );
        }
        out.extend(steps.into_iter().map(|(step, reason)| Planned {
            node: n.name.clone(),
            vmid: n.vmid,
            step,
            reason,
        }));
    }
    out
}

/// Whether a failed call may succeed if made again (nothing was done, or doing it again is
/// harmless for the idempotent writes made here).
pub fn transient(e: &PveError) -> bool {
    match e {
        PveError::Connect { .. } => true,
        PveError::Api { status, .. } => matches!(status, 502..=504 | 595 | 596),
        other => other.is_lock_timeout(),
    }
}

/// Runs `f` until it succeeds, fails for good, or `ATTEMPTS` transient failures went by,
/// waiting 0.5 s, 1 s, 2 s ... between them.
pub async fn retrying<T, F, Fut>(what: &str, mut f: F) -> Result<T, PveError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PveError>>,
{
    const ATTEMPTS: u32 = 5;
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!("{what}: {e}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            r => return r,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error(transparent)]
    Change(#[from] ops::ChangeError),
    #[error("guest {vmid} is not on the host any more")]
    Gone { vmid: u32 },
    #[error("guest {vmid} is not this state's guest for '{node}' ({why}): left alone")]
    NotOurs {
        vmid: u32,
        node: String,
        why: String,
    },
}

/// Sets a guest's cores, memory and boot disk size back to what the manifest asks.
pub async fn resize(client: &PveClient, vmid: u32, step: &Step) -> Result<(), HealError> {
    let Step::Resize {
        cores,
        memory_mb,
        disk_gb,
    } = step
    else {
        return Ok(());
    };
    let change = ops::Change {
        cores: *cores,
        memory_mb: *memory_mb,
        disk_gb: *disk_gb,
        ..ops::Change::default()
    };
    let row = row(client, vmid).await?;
    let cfg = retrying("read the guest's config", || {
        client.config(row.kind.pve(), vmid)
    })
    .await?;
    let planned = ops::plan_change(&row, &cfg, &change)?;
    if planned.is_empty() {
        return Ok(());
    }
    retrying("change the guest's config", || {
        ops::apply_change(client, &row, &planned)
    })
    .await?;
    Ok(())
}

/// Deletes this state's guest of `node` (so that create builds it anew); refuses a guest
/// that does not carry this state's marker for it.
pub async fn remove(
    client: &PveClient,
    owner: &Owner,
    node: &str,
    vmid: u32,
    timeout: Duration,
) -> Result<(), HealError> {
    let row = row(client, vmid).await?;
    let cfg = retrying("read the guest's config", || {
        client.config(row.kind.pve(), vmid)
    })
    .await?;
    match crate::health::claim(owner, node, row.kind, &cfg) {
        Claim::Ours => {}
        Claim::Foreign(m) => {
            return Err(HealError::NotOurs {
                vmid,
                node: node.into(),
                why: m.describe(),
            })
        }
        Claim::Unmarked => {
            return Err(HealError::NotOurs {
                vmid,
                node: node.into(),
                why: "it carries no driver marker".into(),
            })
        }
    }
    retrying("delete the guest", || ops::delete(client, &row, timeout)).await?;
    Ok(())
}

async fn row(client: &PveClient, vmid: u32) -> Result<res::GuestRow, HealError> {
    retrying("list the guests", || res::guests(client))
        .await?
        .into_iter()
        .find(|g| g.vmid == vmid)
        .ok_or(HealError::Gone { vmid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(problems: Vec<Problem>) -> NodeHealth {
        NodeHealth {
            name: "a".into(),
            vmid: Some(100),
            status: None,
            healthy: problems.is_empty(),
            problems,
        }
    }

    fn steps(n: &NodeHealth, mode: Mode) -> Vec<&'static str> {
        plan(std::slice::from_ref(n), mode)
            .iter()
            .map(|p| p.step.name())
            .collect()
    }

    #[test]
    fn stopped_and_drifted_is_resized_then_started() {
        let n = node(vec![
            Problem::Drift {
                vmid: 100,
                key: "cores".into(),
                want: "1".into(),
                have: "3".into(),
            },
            Problem::Stopped { vmid: 100 },
        ]);
        assert_eq!(steps(&n, Mode::Restart), ["resize", "start"]);
        let p = plan(&[n], Mode::Restart);
        assert_eq!(
            p[0].step,
            Step::Resize {
                cores: Some(1),
                memory_mb: None,
                disk_gb: None
            }
        );
    }

    #[test]
    fn missing_is_rebuilt_in_every_mode_but_none_plans_it_too() {
        let n = node(vec![Problem::Missing { vmid: 100 }]);
        for m in [Mode::None, Mode::Restart, Mode::Recreate] {
            assert_eq!(steps(&n, m), ["recreate"]);
        }
    }

    #[test]
    fn what_restart_cannot_repair_recreate_rebuilds() {
        let n = node(vec![Problem::SshFailing {
            vmid: 100,
            address: "10.0.0.5:22".into(),
            detail: "refused".into(),
        }]);
        assert_eq!(steps(&n, Mode::Restart), ["leave"]);
        assert_eq!(steps(&n, Mode::Recreate), ["recreate"]);
        // Never a guest someone else holds, nor one a task has locked.
        let held = node(vec![
            Problem::Locked {
                vmid: 100,
                lock: "backup".into(),
                seconds: Some(900),
            },
            Problem::AgentSilent { vmid: 100 },
        ]);
        assert_eq!(steps(&held, Mode::Recreate), ["leave", "leave"]);
        assert!(plan(&[node(vec![Problem::NotCreated])], Mode::Recreate).is_empty());
    }
}
