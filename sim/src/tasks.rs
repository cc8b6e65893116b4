//! The task runner: it makes an operation take simulated time, hold guests' config locks,
//! honour injected faults and end with `TASK OK` or `TASK ERROR: ...`. (UPIDs are made in
//! `ids`, task records kept in the state's registry, shown by `api::tasks`.)

use std::time::{Duration, Instant};

use crate::state::{Shared, State};

/// The effect of a task, applied under the state lock when its time is up. It returns extra
/// log lines, or the error the task ends with.
pub(crate) type Apply = Box<dyn FnOnce(&mut State, &Shared) -> Result<Vec<String>, String> + Send>;
/// Undoes what the request reserved (e.g. the new guest of a clone) when the task fails.
pub(crate) type Rollback = Box<dyn FnOnce(&mut State, &Shared) + Send>;

/// An operation to run as a task.
pub(crate) struct Job {
    pub ttype: &'static str,
    pub id: String,
    pub user: String,
    /// Guests whose config lock the worker takes (waiting up to `lock_wait`).
    pub lock: Vec<u32>,
    /// Guests already marked busy by the request (a clone's new vmid); released at the end.
    pub held: Vec<u32>,
    /// `(simulated duration, log line)` steps before the effect.
    pub steps: Vec<(Duration, String)>,
    /// Injected failure: the task ends with this message instead of applying.
    pub fail: Option<String>,
    /// Injected lock timeout on this vmid.
    pub lock_fault: Option<u32>,
    /// Runs once the locks are held, before the steps (PVE's `__snapshot_prepare`: check
    /// and set the config's `lock` property); its error ends the task with nothing to undo.
    pub prepare: Option<Apply>,
    /// A full clone onto a contended storage: `(storage, hold per clone in flight)`,
    /// simulated time (see `contention`).
    pub storage_lock: Option<(String, Duration)>,
    pub apply: Apply,
    pub rollback: Rollback,
}

impl Job {
    pub fn new(ttype: &'static str, id: impl Into<String>, user: &str, apply: Apply) -> Self {
        Job {
            ttype,
            id: id.into(),
            user: user.to_string(),
            lock: Vec::new(),
            held: Vec::new(),
            steps: Vec::new(),
            fail: None,
            lock_fault: None,
            prepare: None,
            storage_lock: None,
            apply,
            rollback: Box::new(|_, _| {}),
        }
    }
}

/// Registers the task and runs it: inline when the time scale is 0 (so it has stopped before
/// its UPID is returned), else in the background. Returns the UPID.
pub(crate) async fn submit(shared: &std::sync::Arc<Shared>, job: Job) -> String {
    let upid = {
        let mut st = shared.lock();
        st.new_task(&shared.node, job.ttype, &job.id, &job.user)
    };
    if shared.time_scale() > 0.0 {
        let shared = shared.clone();
        let u = upid.clone();
        tokio::spawn(async move { run(&shared, &u, job).await });
    } else {
        run(shared, &upid, job).await;
    }
    upid
}

async fn sleep_scaled(shared: &Shared, d: Duration) {
    let real = shared.scaled(d);
    if !real.is_zero() {
        tokio::time::sleep(real).await;
    }
}

/// Waits for the config lock of `vmid` and takes it; `false` on timeout.
pub(crate) async fn acquire(shared: &Shared, vmid: u32, holder: &str) -> bool {
    let deadline = Instant::now() + shared.scaled(shared.timings.lock_wait);
    loop {
        {
            let mut st = shared.lock();
            match st.guests.get_mut(&vmid) {
                None => return true, // nothing to lock; the effect reports the missing guest
                Some(g) if g.busy.is_none() => {
                    g.busy = Some(holder.to_string());
                    return true;
                }
                Some(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A full clone's turn at its contended storage's lock: waits for it and
/// holds it, or fails after the lock timeout with PVE's message.
async fn storage_turn(
    shared: &Shared,
    upid: &str,
    storage: &str,
    hold: Duration,
) -> Option<String> {
    use crate::contention::{timeout_message, Turn};
    let turn = shared.storage_locks.enter(
        storage,
        Instant::now(),
        shared.scaled(hold),
        shared.scaled(shared.timings.lock_wait),
    );
    let waits = !matches!(turn, Turn::Got { wait, .. } if wait.is_zero());
    if waits {
        // What `lock_file_full` prints while it waits.
        shared.lock().task_log(upid, "trying to acquire lock...");
    }
    match turn {
        Turn::Got { wait, hold } => {
            tokio::time::sleep(wait + hold).await;
            if waits {
                shared.lock().task_log(upid, " OK");
            }
            None
        }
        Turn::TimedOut { after } => {
            tokio::time::sleep(after).await;
            Some(timeout_message(storage, false))
        }
    }
}

async fn run(shared: &Shared, upid: &str, job: Job) {
    let Job {
        ttype,
        lock,
        mut held,
        steps,
        fail,
        lock_fault,
        prepare,
        storage_lock,
        apply,
        rollback,
        ..
    } = job;
    let mut error = None;
    if let Some((storage, hold)) = &storage_lock {
        error = storage_turn(shared, upid, storage, *hold).await;
    }
    for vmid in lock {
        if error.is_some() {
            break;
        }
        if lock_fault == Some(vmid) {
            sleep_scaled(shared, shared.timings.lock_wait).await;
            error = Some(shared.lock_message(vmid));
            break;
        }
        if acquire(shared, vmid, ttype).await {
            held.push(vmid);
        } else {
            error = Some(shared.lock_message(vmid));
            break;
        }
    }
    let mut unprepared = false;
    if let (None, Some(p)) = (&error, prepare) {
        let mut st = shared.lock();
        match p(&mut st, shared) {
            Ok(lines) => {
                for l in lines {
                    st.task_log(upid, l);
                }
                shared.persist(&st);
            }
            Err(e) => {
                error = Some(e);
                unprepared = true;
            }
        }
    }
    if error.is_none() {
        for (d, line) in steps {
            sleep_scaled(shared, d).await;
            shared.lock().task_log(upid, line);
        }
    }
    if let Some((storage, _)) = &storage_lock {
        shared.storage_locks.leave(storage);
    }
    let mut st = shared.lock();
    let result = match (error, fail) {
        (Some(e), _) | (None, Some(e)) => {
            if !unprepared {
                rollback(&mut st, shared);
            }
            Err(e)
        }
        (None, None) => apply(&mut st, shared),
    };
    for vmid in held {
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.busy = None;
        }
    }
    match result {
        Ok(lines) => {
            for l in lines {
                st.task_log(upid, l);
            }
            st.finish_task(upid, "OK".to_string());
        }
        Err(e) => {
            tracing::info!(upid, error = %e, "task failed");
            st.finish_task(upid, e);
        }
    }
    shared.persist(&st);
}
