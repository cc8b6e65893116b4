//! `create --snapshot [--keep-snapshot]` on a tree built before: every existing guest of
//! the tree that the run may change is snapshotted first (all or nothing: a failed one
//! deletes those made, and nothing runs), then the run goes on (heals, steps), then the
//! tree's health is checked as `driver check` does. When the run or the check fails, every
//! snapshotted guest is rolled back, children first (each started again if it ran), and the
//! state's records of those nodes (and of the nodes inside them) are put back to what they
//! were before the run, since their guests are; the snapshots are deleted after a rollback
//! and after success, unless `--keep-snapshot`. A failed rollback keeps them and says how
//! to finish it by hand.
//!
//! Which guests "may change": a node the state does not record as completed (the run
//! resumes its steps on its guest), and a completed one that healing starts or resizes. A
//! guest healing deletes and rebuilds, or one that is gone, cannot be kept by a snapshot
//! (its snapshots go with it); a guest left alone (locked, not this state's) is not touched.
//! The guests inside a nested PVE are covered by its own guest's snapshot: they live on its
//! disks (on the simulator, in its folder), and its driver changes them only when the run
//! hands it the subtree, which it does for a node it resumes or restarts, so snapshotted.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use actions::heal::{Planned, Step};
use actions::health::{self, Options};
use actions::pve::PveClient;
use actions::resources::snapshots as snaps;
use actions::resources::{self as res, GuestRow};
use engine::outcome::{NodeStatus, RunOutcome};
use engine::ownership::Claim;
use engine::site_config::run::NodeSize;
use engine::site_config::HostConfig;
use engine::state::{GuardResult, GuardedGuest, NodeState, RunState, SnapshotGuard, StateStore};
use engine::{Manifest, Verb};

use super::resources::check::expects;
use super::{target, Failure};
use crate::cli::RunArgs;

/// Each snapshot, rollback or delete of one guest may take this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// `--snapshot` on this run: `create`'s flag, refused on the other verbs.
pub fn wanted(verb: Verb, args: &RunArgs) -> Result<bool, Failure> {
    match (verb, args.snapshot) {
        (_, false) => Ok(false),
        (Verb::Create, true) => Ok(true),
        (v, true) => Err(Failure::usage(miette::miette!(
            help = "`driver snapshot create -M NAME -H HOST` snapshots a tree by itself",
            "--snapshot is a flag of `create`, not of `{}`",
            v.as_str()
        ))),
    }
}

/// The snapshots taken before a run, for [`finish`] after it.
pub struct Taken {
    record: SnapshotGuard,
    /// Parents first, each as it was when snapshotted (its status says whether it ran).
    guests: Vec<(String, GuestRow)>,
    /// The state's node records before the run (and before healing changed them).
    before: Vec<NodeState>,
    keep: bool,
}

/// What [`take`] did.
pub enum Guarding {
    Taken(Taken),
    /// Nothing to snapshot (why, in words); the record says so.
    Nothing(SnapshotGuard),
}

/// The snapshot's name: `driver-create-<unix time>` (a PVE config id: a letter first).
fn name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("driver-create-{now}")
}

fn record(
    name: &str,
    run_id: &str,
    guests: &[(String, GuestRow)],
    result: GuardResult,
) -> SnapshotGuard {
    SnapshotGuard {
        snapshot: name.to_string(),
        run_id: run_id.to_string(),
        at: engine::clock::now(),
        guests: guests
            .iter()
            .map(|(node, g)| GuardedGuest {
                node: node.clone(),
                vmid: g.vmid,
            })
            .collect(),
        result,
        reason: None,
        error: None,
    }
}

/// The existing guests of `previous`'s tree on this host that the run may change, parents
/// first (see the module's doc), given what healing will do (`planned`).
pub async fn candidates(
    client: &PveClient,
    manifest: &Manifest,
    previous: Option<&RunState>,
    planned: &[Planned],
) -> Result<Vec<(String, GuestRow)>, Failure> {
    let Some(st) = previous else {
        return Ok(Vec::new());
    };
    let changes = |n: &NodeState| match n.status {
        NodeStatus::Completed => planned
            .iter()
            .any(|p| p.node == n.name && matches!(p.step, Step::Start | Step::Resize { .. })),
        NodeStatus::Destroyed => false,
        _ => true,
    };
    let wanted: Vec<(&str, u32)> = manifest
        .nodes
        .iter()
        .filter(|m| m.parent.is_none())
        .filter_map(|m| st.node(&m.name))
        .filter(|n| changes(n))
        .filter_map(|n| Some((n.name.as_str(), n.vm_id?)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let rows = res::guests(client).await.map_err(pve)?;
    let owner = st.owner();
    let mut out = Vec::new();
    for (node, vmid) in wanted {
        let Some(g) = rows.iter().find(|g| g.vmid == vmid) else {
            continue;
        };
        let cfg = client.config(g.kind.pve(), vmid).await.map_err(pve)?;
        if health::claim(&owner, node, g.kind, &cfg) == Claim::Ours {
            out.push((node.to_string(), g.clone()));
        }
    }
    Ok(out)
}

fn pve(e: actions::pve::PveError) -> Failure {
    Failure::Run(Some(miette::miette!("{e}")))
}

/// A dry run's record for a tree with no guest yet.
pub fn nothing(run_id: &str) -> SnapshotGuard {
    record(&name(), run_id, &[], GuardResult::Nothing)
}

/// What a dry run of `create --snapshot` would snapshot.
pub async fn plan(
    client: &PveClient,
    manifest: &Manifest,
    previous: Option<&RunState>,
    planned: &[Planned],
    run_id: &str,
) -> Result<SnapshotGuard, Failure> {
    let guests = candidates(client, manifest, previous, planned).await?;
    let result = match guests.is_empty() {
        true => GuardResult::Nothing,
        false => GuardResult::Planned,
    };
    Ok(record(&name(), run_id, &guests, result))
}

/// Snapshots the guests the run may change, all or nothing; fails (nothing changed) when
/// one cannot be taken.
pub async fn take(
    client: &PveClient,
    manifest: &Manifest,
    previous: Option<&RunState>,
    planned: &[Planned],
    args: &RunArgs,
    run_id: &str,
) -> Result<Guarding, Failure> {
    let guests = candidates(client, manifest, previous, planned).await?;
    let name = name();
    if guests.is_empty() {
        let why = match previous.is_some_and(|p| p.nodes.iter().any(|n| n.vm_id.is_some())) {
            true => "the run changes no existing guest",
            false => "no guest of the tree exists yet",
        };
        crate::errln!("--snapshot: nothing to snapshot ({why}); going on without one");
        return Ok(Guarding::Nothing(record(
            &name,
            run_id,
            &guests,
            GuardResult::Nothing,
        )));
    }
    let rows: Vec<GuestRow> = guests.iter().map(|(_, g)| g.clone()).collect();
    let description = format!("taken by driver before `create` (run {run_id})");
    if let Err(steps) =
        snaps::create_all(client, &rows, &name, Some(&description), STEP_TIMEOUT).await
    {
        let said: Vec<String> = steps
            .iter()
            .map(|s| match &s.error {
                Some(e) => format!("{} ({}): {}: {e}", s.guest, s.vmid, s.result),
                None => format!("{} ({}): {}", s.guest, s.vmid, s.result),
            })
            .collect();
        return Err(Failure::Run(Some(miette::miette!(
            "--snapshot: snapshot '{name}' could not be taken of every guest, so nothing was run \
             (those made were deleted again):\n  {}",
            said.join("\n  ")
        ))));
    }
    crate::errln!(
        "snapshot '{name}' taken of {} guest(s) before the run: {}",
        guests.len(),
        list(&guests)
    );
    Ok(Guarding::Taken(Taken {
        record: record(&name, run_id, &guests, GuardResult::Deleted),
        before: previous.map(|p| p.nodes.clone()).unwrap_or_default(),
        guests,
        keep: args.keep_snapshot,
    }))
}

fn list(guests: &[(String, GuestRow)]) -> String {
    guests
        .iter()
        .map(|(n, g)| format!("{n} ({})", g.vmid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Before a run: what healing will do, the snapshot of what it and the run may change
/// (with `--snapshot`; a snapshot that cannot be taken fails the run before anything
/// changed), then the heals themselves.
pub async fn before_run(
    client: &PveClient,
    setup: &super::heal::Setup<'_>,
    verb: Verb,
    args: &RunArgs,
    previous: &mut Option<RunState>,
    run_id: &str,
) -> Result<Option<Guarding>, Failure> {
    let snapshot = wanted(verb, args)?;
    let Some(mode) = super::heal::mode(verb, args)? else {
        return Ok(None);
    };
    let planned = super::heal::inspect(client, setup, mode, previous.as_ref()).await?;
    let guarding = match snapshot {
        true => Some(
            take(
                client,
                setup.manifest,
                previous.as_ref(),
                &planned,
                args,
                run_id,
            )
            .await?,
        ),
        false => None,
    };
    let heals = super::heal::apply(client, setup, &planned, previous, run_id).await;
    if !heals.is_empty() {
        crate::render::err(&super::heal::text(&heals, false));
    }
    Ok(guarding)
}

/// What the check after the run needs.
pub struct After<'a> {
    pub client: &'a PveClient,
    pub manifest: &'a Manifest,
    pub sizes: &'a HashMap<String, NodeSize>,
    pub host: &'a HostConfig,
    pub state_dir: &'a Path,
    /// `-M NAME` or `--manifest-file PATH`, for messages.
    pub flag: String,
}

impl Taken {
    /// After the run: checks the tree when the run passed, rolls back when either failed
    /// (not after an abort: a second Ctrl-C wants out at once), else deletes the snapshots
    /// (unless kept); records it all in the state (under the run's lock, `store`) and in
    /// `outcome` (a failed check fails the run).
    pub async fn finish(
        self,
        a: &After<'_>,
        outcome: &mut RunOutcome,
        store: Option<StateStore>,
    ) -> SnapshotGuard {
        let Taken {
            mut record,
            guests,
            before,
            keep,
        } = self;
        let name = record.snapshot.clone();
        let mut st = StateStore::peek(a.state_dir, &a.manifest.name, &a.host.name)
            .ok()
            .flatten();
        let failed = match (&outcome.error, st.as_ref()) {
            (Some(e), _) => Some(format!("the run failed: {e}")),
            (None, Some(st)) => check(a, st).await.err(),
            (None, None) => Some("the run left no state to check".into()),
        };
        if outcome.stop == Some(engine::outcome::StopReason::Aborted) {
            record.result = GuardResult::RollbackFailed;
            record.reason = failed;
            record.error = Some(format!(
                "aborted: nothing rolled back; the snapshots are kept: `driver snapshot rollback \
                 -M {} -H {} --name {name} --yes` puts the guests back",
                a.manifest.name, a.host.name
            ));
        } else if let Some(why) = failed {
            record.reason = Some(why.clone());
            crate::errln!(
                "{why}; rolling back {} guest(s) to snapshot '{name}'",
                guests.len()
            );
            let back: Vec<GuestRow> = guests.iter().rev().map(|(_, g)| g.clone()).collect();
            let ran = |g: &GuestRow| g.status == "running";
            match snaps::rollback_all(a.client, &back, &name, ran, STEP_TIMEOUT).await {
                Ok(_) => {
                    record.result = GuardResult::RolledBack;
                    if !keep {
                        record.error = delete(a.client, &guests, &name).await;
                    }
                    if let Some(st) = st.as_mut() {
                        restore(a.manifest, st, &before, &guests);
                    }
                }
                Err(steps) => {
                    let done: Vec<(String, GuestRow)> = guests
                        .iter()
                        .filter(|(_, g)| {
                            steps.iter().any(|s| s.vmid == g.vmid && s.result == "done")
                        })
                        .cloned()
                        .collect();
                    if let Some(st) = st.as_mut() {
                        restore(a.manifest, st, &before, &done);
                    }
                    record.result = GuardResult::RollbackFailed;
                    record.error = Some(rollback_failed(a, &steps, &name));
                }
            }
            if outcome.error.is_none() {
                outcome.success = false;
                outcome.error = record.reason.clone();
            }
        } else if keep {
            record.result = GuardResult::Kept;
        } else {
            record.result = GuardResult::Deleted;
            record.error = delete(a.client, &guests, &name).await;
        }
        if let Some(e) = &record.error {
            crate::errln!("warning: {e}");
        }
        match (store, st) {
            (Some(mut store), Some(mut st)) => {
                st.record_guard(record.clone());
                if let Err(e) = store.snapshot(&st) {
                    crate::errln!("warning: cannot record the snapshot guard in the state: {e}");
                }
            }
            _ => crate::errln!(
                "warning: the state could not be reread: the snapshot guard is not recorded in it"
            ),
        }
        outcome.snapshot = Some(record.clone());
        record
    }
}

/// `driver check`'s verdict on the tree after the run: `Err` names each problem.
async fn check(a: &After<'_>, st: &RunState) -> Result<(), String> {
    let nodes = expects(a.manifest, st, a.sizes, &a.host.bridge, false);
    let opts = Options {
        lock_after: Duration::from_secs(600),
        ssh_port: a
            .manifest
            .settings
            .verify_ssh
            .then(|| target::guest_ssh_port(a.host)),
        ssh_timeout: Duration::from_secs(10),
    };
    let found = health::check(a.client, &st.owner(), &nodes, &opts)
        .await
        .map_err(|e| format!("the health check after the run could not run: {e}"))?;
    let bad: Vec<String> = found
        .iter()
        .filter(|n| !n.healthy)
        .map(|n| {
            let p: Vec<String> = n
                .problems
                .iter()
                .map(|p| {
                    serde_json::to_value(p)
                        .ok()
                        .and_then(|v| v["problem"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "?".into())
                })
                .collect();
            format!("{} ({})", n.name, p.join(", "))
        })
        .collect();
    match bad.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "the health check after the run failed: {} (`driver check {} -H {}` shows more)",
            bad.join("; "),
            a.flag,
            a.host.name
        )),
    }
}

/// Deletes snapshot `name` of every guest; what failed, if anything.
async fn delete(client: &PveClient, guests: &[(String, GuestRow)], name: &str) -> Option<String> {
    let mut failed = Vec::new();
    for (node, g) in guests {
        if let Err(e) = snaps::delete(client, g, name, STEP_TIMEOUT).await {
            failed.push(format!("{node} ({}): {e}", g.vmid));
        }
    }
    (!failed.is_empty()).then(|| format!("snapshot '{name}' not deleted of: {}", failed.join("; ")))
}

/// The state's records of the rolled-back nodes and of every node inside them, as they
/// were before the run (their guests are again). A rolled-back node not complete gets its
/// start and waits (and delegation) run again when resumed: the rollback stopped its guest
/// (and started it again if it ran), so its address must be learned anew.
fn restore(
    manifest: &Manifest,
    st: &mut RunState,
    before: &[NodeState],
    back: &[(String, GuestRow)],
) {
    let mut nodes: Vec<String> = back.iter().map(|(n, _)| n.clone()).collect();
    let rolled = nodes.len();
    // Children come after their parent in a manifest's node list.
    for n in &manifest.nodes {
        if n.parent.as_ref().is_some_and(|p| nodes.contains(p)) {
            nodes.push(n.name.clone());
        }
    }
    for (i, name) in nodes.iter().enumerate() {
        let old = before.iter().find(|n| &n.name == name);
        if let (Some(old), Some(now)) = (old, st.nodes.iter_mut().find(|n| &n.name == name)) {
            *now = old.clone();
            if i < rolled && now.status != NodeStatus::Completed {
                now.done
                    .retain(|a| !super::heal::RESTART_ACTIONS.contains(a));
            }
        }
    }
}

/// A rollback that stopped part way: which guests are back, which not, and what to do.
fn rollback_failed(a: &After<'_>, steps: &[snaps::Step], name: &str) -> String {
    let by = |r: &str| snaps::guests_with(steps, r);
    let why = steps
        .iter()
        .find(|s| s.result == "failed")
        .and_then(|s| s.error.clone())
        .unwrap_or_default();
    let failed = steps.iter().find(|s| s.result == "failed");
    let unlock = failed.map_or(String::new(), |s| {
        format!(
            "if {} is left locked (rollback), `driver vm unlock {} -H {}` first; then ",
            s.guest, s.guest, a.host.name
        )
    });
    format!(
        "the rollback to snapshot '{name}' failed at {} ({why}); rolled back: {}; not rolled \
         back: {}. The snapshots are kept: {unlock}`driver snapshot rollback -M {} -H {} --name \
         {name} --yes --start`",
        by("failed"),
        none(by("done")),
        none(by("not_done")),
        a.manifest.name,
        a.host.name
    )
}

fn none(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

/// The guard's outcome in words, for the end of a run's output.
pub fn text(g: &SnapshotGuard) -> String {
    let guests = g
        .guests
        .iter()
        .map(|x| format!("{} ({})", x.node, x.vmid))
        .collect::<Vec<_>>()
        .join(", ");
    match g.result {
        GuardResult::Planned => format!(
            "snapshot before the run (--snapshot): {guests}; all rolled back, children first, \
             if the run or the health check after it fails\n"
        ),
        GuardResult::Nothing => {
            "snapshot before the run (--snapshot): nothing to snapshot (no existing guest the run \
             may change)\n"
                .into()
        }
        GuardResult::Deleted => format!(
            "snapshot '{}' of {guests}: deleted after the run\n",
            g.snapshot
        ),
        GuardResult::Kept => format!(
            "snapshot '{}' of {guests}: kept (--keep-snapshot)\n",
            g.snapshot
        ),
        GuardResult::RolledBack => format!(
            "rolled back to snapshot '{}' (children first): {guests}\n",
            g.snapshot
        ),
        GuardResult::RollbackFailed => format!(
            "NOT all rolled back to snapshot '{}': {}\n",
            g.snapshot,
            g.error.as_deref().unwrap_or("")
        ),
    }
}
