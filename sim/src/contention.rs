//! Contended storage: the queue for a storage's allocation lock, which a
//! full clone takes to allocate its volume (PVE: `vdisk_alloc` under
//! `cluster_lock_storage`, waiting up to 10 s). While the `contended_storage`
//! fault is active, each full clone onto the storage holds the lock for the
//! fault's hold time times the number of full clones then in flight on it
//! (a busy storage allocates slowly), so too many at once wait past the
//! timeout and fail as PVE's do. Where each clone's turn comes is worked out
//! when it joins the queue (first come, first served), so what happens
//! depends only on when the clones arrive. A leaf: it imports nothing from
//! the crate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One storage's lock: when it is next free, and the full clones in flight on it.
#[derive(Debug)]
struct Lane {
    free_at: Instant,
    in_flight: usize,
}

/// The lock queues of every storage.
#[derive(Debug, Default)]
pub(crate) struct StorageLocks(Mutex<HashMap<String, Lane>>);

/// A full clone's place in its storage's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// It waits `wait` for the lock, then holds it for `hold`.
    Got { wait: Duration, hold: Duration },
    /// It would wait longer than the lock timeout: after that timeout it fails.
    TimedOut { after: Duration },
}

impl StorageLocks {
    /// A full clone onto `storage` starts at `now`: it joins the queue and
    /// counts as in flight until [`leave`](Self::leave). `hold_per`: the lock
    /// hold per clone in flight; `timeout`: how long it waits at most (both
    /// real time, already scaled).
    pub fn enter(
        &self,
        storage: &str,
        now: Instant,
        hold_per: Duration,
        timeout: Duration,
    ) -> Turn {
        let mut lanes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lanes.entry(storage.to_string()).or_insert(Lane {
            free_at: now,
            in_flight: 0,
        });
        lane.in_flight += 1;
        let hold = hold_per * lane.in_flight as u32;
        let start = lane.free_at.max(now);
        let wait = start - now;
        if wait > timeout {
            return Turn::TimedOut { after: timeout };
        }
        lane.free_at = start + hold;
        Turn::Got { wait, hold }
    }

    /// A full clone that [`enter`](Self::enter)ed is over (made or failed).
    pub fn leave(&self, storage: &str) {
        let mut lanes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get_mut(storage) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
        }
    }
}

/// What PVE's clone task ends with when the storage's lock timed out: the
/// lock file of a local storage (`PVE::Tools::lock_file_full`), or the
/// cluster lock of a shared one (`PVE::Cluster::cfs_lock`), after the
/// clone's own `clone failed: `.
pub(crate) fn timeout_message(storage: &str, shared: bool) -> String {
    match shared {
        false => format!(
            "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-{storage}' - got timeout"
        ),
        true => format!("clone failed: cfs-lock 'storage-{storage}' error: got lock request timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_hold_grows_with_clones_in_flight_and_late_ones_time_out() {
        let locks = StorageLocks::default();
        let t0 = Instant::now();
        let turns: Vec<Turn> = (0..5)
            .map(|_| locks.enter("local-lvm", t0, ms(100), ms(1000)))
            .collect();
        // Holds 100, 200, 300, 400, 500 ms: the fifth waits the 1000 ms the
        // first four hold it (not over the timeout), the sixth 1500 ms.
        assert_eq!(
            turns[0],
            Turn::Got {
                wait: ms(0),
                hold: ms(100)
            }
        );
        assert_eq!(
            turns[1],
            Turn::Got {
                wait: ms(100),
                hold: ms(200)
            }
        );
        assert_eq!(
            turns[3],
            Turn::Got {
                wait: ms(600),
                hold: ms(400)
            }
        );
        assert_eq!(
            turns[4],
            Turn::Got {
                wait: ms(1000),
                hold: ms(500)
            }
        );
        assert_eq!(
            locks.enter("local-lvm", t0, ms(100), ms(1000)),
            Turn::TimedOut { after: ms(1000) }
        );
        // Another storage has its own lock.
        assert_eq!(
            locks.enter("local-zfs", t0, ms(100), ms(1000)),
            Turn::Got {
                wait: ms(0),
                hold: ms(100)
            }
        );
    }

    #[test]
    fn clones_that_left_no_longer_slow_the_lock() {
        let locks = StorageLocks::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            let _ = locks.enter("s", t0, ms(100), ms(1000));
            locks.leave("s");
        }
        let later = t0 + ms(5000);
        assert_eq!(
            locks.enter("s", later, ms(100), ms(1000)),
            Turn::Got {
                wait: ms(0),
                hold: ms(100)
            }
        );
    }

    #[test]
    fn messages_are_pves() {
        assert_eq!(
            timeout_message("local-lvm", false),
            "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout"
        );
        assert_eq!(
            timeout_message("ceph", true),
            "clone failed: cfs-lock 'storage-ceph' error: got lock request timeout"
        );
    }
}
