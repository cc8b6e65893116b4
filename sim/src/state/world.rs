//! [`State`]: everything one simulator knows, as kept behind its lock: guests and tokens
//! (tracked for the journal), tickets, tasks (the registry: new, logged, finished, the oldest
//! forgotten) and the active faults.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;

use super::tracked::Tracked;
use crate::clock::now_unix;
use crate::faults::FaultSet;
use crate::ids::format_upid;
use crate::model::{Guest, Task, Ticket, TokenEntry};

/// How many finished tasks are kept (PVE keeps an index of recent ones too).
pub(crate) const TASKS_KEPT: usize = 5000;

/// Everything one simulator knows (behind [`super::Shared::lock`]).
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Changes to guests and tokens are tracked for the journal ([`super::persist`]).
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
