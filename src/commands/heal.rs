//! `create --heal`: before a `create` acts on a tree an earlier run built, the nodes the
//! state says are complete are checked against the host (`actions::health`) and repaired
//! per the mode (`actions::heal`): drift is set back in place here; a stopped guest's node
//! is handed back to create's start / wait steps, a missing (or, under `recreate`, broken)
//! guest's node is reset so create builds it anew, its old SSH host key forgotten (in the
//! state and in the known_hosts file). Every repair is recorded in the state's `heals`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use actions::heal::{self, Mode, Planned, Step};
use actions::health::{self, Options};
use actions::pve::PveClient;
use engine::plan::Action;
use engine::site_config::run::NodeSize;
use engine::site_config::HostConfig;
use engine::state::{Heal, HealResult, NodeState, RunState};
use engine::{Manifest, Verb};

use super::resources::check::expects;
use super::target;
use super::Failure;
use crate::cli::{HealArg, RunArgs};

/// A config lock older than this is a problem (as `driver check`'s default).
const LOCK_AFTER: Duration = Duration::from_secs(600);
/// How long deleting a broken guest (under `recreate`) may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Create's steps that run again when a stopped guest is started: the start itself, and
/// the waits for its address and SSH (a nested PVE's delegation too: its own driver then
/// heals its guests).
pub(crate) const RESTART_ACTIONS: [Action; 4] = [
    Action::StartVm,
    Action::WaitIp,
    Action::WaitSsh,
    Action::Delegate,
];

/// `--heal` as given (`None` when not: each driver then heals with its default).
pub fn given(args: &RunArgs) -> Option<Mode> {
    args.heal.map(|h| match h {
        HealArg::Restart => Mode::Restart,
        HealArg::None => Mode::None,
        HealArg::Recreate => Mode::Recreate,
    })
}

/// The heal mode of a run: `create`'s (default restart); `--heal` on another verb is refused.
pub fn mode(verb: Verb, args: &RunArgs) -> Result<Option<Mode>, Failure> {
    let mode = given(args).unwrap_or(Mode::Restart);
    match (verb, args.heal) {
        (Verb::Create, _) => Ok(Some(mode)),
        (_, None) => Ok(None),
        (v, Some(_)) => Err(Failure::usage(miette::miette!(
            help = "`driver create` heals a tree built before; `driver check` reports on one",
            "--heal is a flag of `create`, not of `{}`",
            v.as_str()
        ))),
    }
}

/// What the heal needs of the run.
pub struct Setup<'a> {
    pub manifest: &'a Manifest,
    pub sizes: &'a HashMap<String, NodeSize>,
    pub host: &'a HostConfig,
    pub known_hosts: PathBuf,
    /// `-M NAME` or `--manifest-file PATH`, for messages.
    pub flag: String,
}

/// What healing `previous`'s completed nodes would do, read only. Under `Mode::None` a
/// tree with problems is refused.
pub async fn inspect(
    client: &PveClient,
    s: &Setup<'_>,
    mode: Mode,
    previous: Option<&RunState>,
) -> Result<Vec<Planned>, Failure> {
    let Some(st) = previous else {
        return Ok(Vec::new());
    };
    let nodes = expects(s.manifest, st, s.sizes, &s.host.bridge, true);
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let opts = Options {
        lock_after: LOCK_AFTER,
        ssh_port: Some(target::guest_ssh_port(s.host)),
        ssh_timeout: Duration::from_secs(5),
    };
    let owner = st.owner();
    let found = heal::retrying("check the tree on the host", || {
        health::check(client, &owner, &nodes, &opts)
    })
    .await
    .map_err(|e| {
        Failure::Run(Some(miette::miette!(
            "cannot check '{}' on {} before healing it: {e}",
            s.manifest.name,
            s.host.name
        )))
    })?;
    let planned = heal::plan(&found, mode);
    if mode == Mode::None && !planned.is_empty() {
        let bad: Vec<String> = planned
            .iter()
            .map(|p| format!("{} ({})", p.node, p.reason))
            .collect();
        let would: Vec<String> = planned
            .iter()
            .filter(|p| p.step != Step::Leave)
            .map(|p| format!("{} {}", p.step.name(), p.node))
            .collect();
        return Err(Failure::Unhealthy(Some(miette::miette!(
            help = format!(
                "--heal restart (the default) would: {}; `driver check {} -H {}` shows the problems",
                if would.is_empty() {
                    "nothing it can repair".to_string()
                } else {
                    would.join(", ")
                },
                s.flag,
                s.host.name
            ),
            "--heal none: not going on, {} node(s) of '{}' on {} have problems: {}; nothing was changed",
            found.iter().filter(|n| !n.healthy).count(),
            s.manifest.name,
            s.host.name,
            bad.join("; ")
        ))));
    }
    Ok(planned)
}

fn record(p: &Planned, run_id: &str, result: HealResult, error: Option<String>) -> Heal {
    Heal {
        node: p.node.clone(),
        what: p.step.name().to_string(),
        detail: p.reason.clone(),
        at: engine::clock::now(),
        run_id: run_id.to_string(),
        result,
        error,
    }
}

/// The plan as a dry run reports it.
pub fn planned_records(planned: &[Planned], run_id: &str) -> Vec<Heal> {
    planned
        .iter()
        .map(|p| record(p, run_id, HealResult::Planned, None))
        .collect()
}

/// Makes the repairs [`inspect`] planned, recording each in `previous.heals`; this run's
/// records.
pub async fn apply(
    client: &PveClient,
    s: &Setup<'_>,
    planned: &[Planned],
    previous: &mut Option<RunState>,
    run_id: &str,
) -> Vec<Heal> {
    let Some(st) = previous.as_mut() else {
        return Vec::new();
    };
    let owner = st.owner();
    let mut out = Vec::new();
    for p in planned {
        let (result, error) = match (&p.step, p.vmid) {
            (Step::Leave, _) | (_, None) => (HealResult::Skipped, None),
            (Step::Resize { .. }, Some(vmid)) => match heal::resize(client, vmid, &p.step).await {
                Ok(()) => (HealResult::Done, None),
                Err(e) => (HealResult::Failed, Some(e.to_string())),
            },
            (Step::Start, Some(_)) => {
                if let Some(n) = node_mut(st, &p.node) {
                    n.status = engine::outcome::NodeStatus::Pending;
                    n.action = None;
                    n.error = None;
                    n.done.retain(|a| !RESTART_ACTIONS.contains(a));
                }
                (HealResult::Pending, None)
            }
            (Step::Rebuild, Some(_)) => {
                forget(s, st, &p.node);
                (HealResult::Pending, None)
            }
            (Step::Recreate, Some(vmid)) => {
                match heal::remove(client, &owner, &p.node, vmid, REMOVE_TIMEOUT).await {
                    Ok(()) => {
                        forget(s, st, &p.node);
                        (HealResult::Pending, None)
                    }
                    Err(e) => (HealResult::Failed, Some(e.to_string())),
                }
            }
        };
        out.push(record(p, run_id, result, error));
    }
    st.heals.extend(out.iter().cloned());
    out
}

fn node_mut<'a>(st: &'a mut RunState, name: &str) -> Option<&'a mut NodeState> {
    st.nodes.iter_mut().find(|n| n.name == name)
}

/// Makes `node` (and every node inside it, for a PVE node) pending again, with nothing
/// recorded of its old guest: no vmid, address, or host key, and the key of its old
/// address removed from the known_hosts file, so the new guest's is accepted.
fn forget(s: &Setup<'_>, st: &mut RunState, node: &str) {
    let mut gone = vec![node.to_string()];
    // Children come after their parent in a manifest's node list.
    for n in &s.manifest.nodes {
        if n.parent.as_ref().is_some_and(|p| gone.contains(p)) {
            gone.push(n.name.clone());
        }
    }
    let port = target::guest_ssh_port(s.host);
    for name in &gone {
        let Some(n) = node_mut(st, name) else {
            continue;
        };
        if let Some(ip) = &n.ip {
            if let Err(e) = actions::ssh::known_hosts::forget(&s.known_hosts, ip, port) {
                tracing::warn!(
                    "cannot remove {ip}'s old host key from {}: {e}",
                    s.known_hosts.display()
                );
            }
        }
        *n = NodeState::pending(name);
    }
}

/// The heals as lines for a person.
pub fn text(heals: &[Heal], dry_run: bool) -> String {
    let w = heals.iter().map(|h| h.node.len()).max().unwrap_or(4);
    let mut s = String::from(if dry_run {
        "heal plan (what changed behind driver's back, and the repair):\n"
    } else {
        "healing (what changed behind driver's back, and the repair):\n"
    });
    for h in heals {
        let what = match h.what.as_str() {
            "leave" => "left as is",
            w => w,
        };
        s.push_str(&format!(
            "  {:w$}  {:10}  {}{}\n",
            h.node,
            what,
            h.detail,
            h.error
                .as_ref()
                .map(|e| format!(": FAILED: {e}"))
                .unwrap_or_default()
        ));
    }
    s
}
