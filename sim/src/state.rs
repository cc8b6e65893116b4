//! The simulated world behind its lock: [`State`] (guests, tokens, tickets, tasks, faults) and
//! [`Shared`], what every request handler and task shares (the lock, the time scale, the
//! node's identity, the guests' SSH servers and the state folder's files).
//! One mutex guards the state (held only for short, non-async sections). With a state folder
//! the lasting part (guests, tokens, finished tasks) is saved after every change (see
//! [`crate::persist`]: a journal of what changed, compacted into `state.json`), so
//! `driver sim serve --state-dir D` survives restarts and kills.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::{now_unix, TimeScale};
use crate::config::{ApiToken, SimConfig, Timings};
use crate::faults::FaultSet;
use crate::ids::format_upid;
use crate::model::{lock_message, Guest, GuestKind, Task, Ticket, TokenEntry};
use crate::persist::{Store, Tracked, TASKS_KEPT};

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Changes to guests and tokens are tracked for the journal ([`crate::persist`]).
    pub guests: Tracked<u32, Guest>,
    /// `user@realm!name` → token.
    pub tokens: Tracked<String, TokenEntry>,
    pub tickets: HashMap<String, Ticket>,
    pub tasks: HashMap<String, Task>,
    pub task_order: VecDeque<String>,
    pub faults: FaultSet,
    pub next_pid: u32,
    /// Tasks finished since the journal last took them.
    pub finished: RefCell<Vec<String>>,
}

impl State {
    pub fn ips(&self) -> BTreeSet<Ipv4Addr> {
        self.guests.values().map(|g| g.ip).collect()
    }

    pub fn new_task(&mut self, node: &str, ttype: &str, id: &str, user: &str) -> String {
        self.next_pid = self.next_pid.wrapping_add(1).max(0x1000);
        let pid = self.next_pid;
        let starttime = now_unix();
        // pstart is the process start in clock ticks since boot; any increasing number will do.
        let pstart = (pid.wrapping_mul(37)) & 0x0fff_ffff;
        let upid = format_upid(node, pid, pstart, starttime, ttype, id, user);
        let task = Task {
            upid: upid.clone(),
            node: node.to_string(),
            pid,
            pstart,
            starttime,
            ttype: ttype.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            running: true,
            exitstatus: None,
            endtime: None,
            log: Vec::new(),
        };
        self.tasks.insert(upid.clone(), task);
        self.task_order.push_back(upid.clone());
        while self.task_order.len() > TASKS_KEPT {
            let Some(old) = self.task_order.front().cloned() else {
                break;
            };
            if self.tasks.get(&old).is_some_and(|t| t.running) {
                break;
            }
            self.task_order.pop_front();
            self.tasks.remove(&old);
        }
        upid
    }

    pub fn task_log(&mut self, upid: &str, line: impl Into<String>) {
        if let Some(t) = self.tasks.get_mut(upid) {
            t.log.push(line.into());
        }
    }

    /// Ends a task: `OK`, or an error message (logged as `TASK ERROR: ...`).
    pub fn finish_task(&mut self, upid: &str, exit: String) {
        if let Some(t) = self.tasks.get_mut(upid) {
            if exit == "OK" {
                t.log.push("TASK OK".to_string());
            } else {
                for line in exit.lines() {
                    t.log.push(format!("TASK ERROR: {line}"));
                }
            }
            t.running = false;
            t.exitstatus = Some(exit.lines().next().unwrap_or("").to_string());
            t.endtime = Some(now_unix());
            self.finished.borrow_mut().push(upid.to_string());
        }
    }
}

/// What every request handler and task shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    time_scale: TimeScale,
    pub timings: Timings,
    pub node: String,
    pub state_dir: Option<PathBuf>,
    pub root_password: Option<String>,
    pub fingerprint: String,
    pub started: Instant,
    pub token: ApiToken,
    /// The guests' SSH servers and folders.
    pub ssh: crate::ssh::GuestSsh,
    /// Set once the handle is shut down or dropped: late tasks of this instance must not
    /// overwrite the state file a new instance may already own.
    closed: std::sync::atomic::AtomicBool,
    /// The state folder's files (taken only while the state lock is held).
    store: Mutex<Option<Store>>,
}

impl Shared {
    /// `me` is the `Arc` this will live in (see `Arc::new_cyclic`): guest SSH servers reach
    /// the state through it without keeping the simulator alive.
    pub fn new(
        config: &SimConfig,
        state: State,
        fingerprint: String,
        token: ApiToken,
        me: std::sync::Weak<Shared>,
    ) -> Self {
        Shared {
            ssh: crate::ssh::GuestSsh::new(
                config.guest_ssh_port,
                config.effective_guest_net(),
                config.state_dir.as_deref(),
                me,
            ),
            state: Mutex::new(state),
            time_scale: TimeScale::new(config.time_scale),
            timings: config.timings,
            node: config.node_name.clone(),
            state_dir: config.state_dir.clone(),
            root_password: config.root_password.clone(),
            fingerprint,
            started: Instant::now(),
            token,
            closed: std::sync::atomic::AtomicBool::new(false),
            store: Mutex::new(
                config
                    .state_dir
                    .as_deref()
                    .map(|d| Store::new(d, &config.node_name)),
            ),
        }
    }

    /// The state; a panic in another holder does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale.get()
    }

    pub fn set_time_scale(&self, s: f64) {
        self.time_scale.set(s);
    }

    pub fn scaled(&self, d: Duration) -> Duration {
        self.time_scale.scaled(d)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// PVE's lock-timeout wording for a guest's config lock file.
    pub fn lock_message(&self, vmid: u32) -> String {
        let kind = self.lock().guests.get(&vmid).map(|g| g.kind);
        lock_message(kind.unwrap_or(GuestKind::Qemu), vmid)
    }

    /// Saves what changed when there is a state folder (errors are logged: a request that
    /// changed the simulation has already happened). Called under the state lock, before
    /// the change is answered.
    pub fn persist(&self, st: &State) {
        self.save(st, false);
    }

    /// Saves everything as a new snapshot (at start and at a clean shutdown).
    pub fn snapshot(&self, st: &State) {
        self.save(st, true);
    }

    fn save(&self, st: &State, full: bool) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let Some(store) = store
            .as_mut()
            .filter(|_| !self.closed.load(Ordering::SeqCst))
        else {
            // Nothing is saved: forget what changed, so it does not pile up.
            st.guests.take_dirty();
            st.tokens.take_dirty();
            st.finished.borrow_mut().clear();
            return;
        };
        let result = match full {
            true => store.snapshot(st),
            false => store.append(st),
        };
        if let Err(e) = result {
            tracing::warn!("pvesim: cannot save state: {e}");
        }
    }
}
