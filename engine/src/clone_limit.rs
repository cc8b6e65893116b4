//! How many full clones may run at once on one storage: an AIMD limit, as
//! TCP finds a link's capacity. It starts from a default, grows by one
//! after each `limit` clean clones in a row (additive increase), and
//! halves when a clone hits the storage's lock timeout or takes much
//! longer than the recent median (multiplicative decrease). A decrease is
//! taken once per window: clones started before it ran under the old,
//! higher limit, so their ends do not halve it again.
//!
//! Pure: it is told what happened and when it took how long, and keeps no
//! clock of its own, so its tests are deterministic. The executor keeps one
//! per (host, storage) key (`executor/clones.rs`). A leaf: imports nothing
//! from the crate.

use std::collections::VecDeque;
use std::time::Duration;

/// How many clean clone durations the median is taken over.
const WINDOW: usize = 8;
/// A median needs this many samples before a slow clone counts.
const MIN_SAMPLES: usize = 3;
/// A clone slower than this many times the recent median is a sign of a
/// saturated storage (its allocation queued behind others').
const SLOW_FACTOR: f64 = 1.5;

/// How a clone ended, as far as the limit cares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CloneEnd {
    /// Made, in this long.
    Clean(Duration),
    /// The storage's (or the guest config's) lock timed out: nothing was
    /// made; try again later.
    LockTimeout,
    /// Failed for another reason, or given up: says nothing about the storage.
    Other,
}

/// What an end did to the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Same,
    Grew(usize),
    /// Halved to this, because of a lock timeout.
    HalvedOnTimeout(usize),
    /// Halved to this, because a clone was slower than the recent median.
    HalvedOnSlow(usize),
}

/// A clone that [`Aimd::try_start`] let start: handed back to [`Aimd::end`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a started clone must be ended, or the slot is lost"]
pub struct Started {
    window: u64,
}

/// The limit of one storage.
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: usize,
    ceiling: usize,
    in_flight: usize,
    /// Clean ends since the limit last changed.
    clean: usize,
    recent: VecDeque<Duration>,
    /// Bumped at every decrease.
    window: u64,
}

impl Aimd {
    /// Starts at `start`, never above `ceiling` (both at least 1).
    pub fn new(start: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Aimd {
            limit: start.clamp(1, ceiling),
            ceiling,
            in_flight: 0,
            clean: 0,
            recent: VecDeque::with_capacity(WINDOW),
            window: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// A clone may start if fewer than `limit` run.
    pub fn try_start(&mut self) -> Option<Started> {
        (self.in_flight < self.limit).then(|| {
            self.in_flight += 1;
            Started {
                window: self.window,
            }
        })
    }

    /// The recent clean clones' median duration, once there are enough.
    pub fn median(&self) -> Option<Duration> {
        if self.recent.len() < MIN_SAMPLES {
            return None;
        }
        let mut v: Vec<Duration> = self.recent.iter().copied().collect();
        v.sort_unstable();
        Some(v[v.len() / 2])
    }

    /// A clone `s` ended so.
    pub fn end(&mut self, s: Started, end: CloneEnd) -> Change {
        self.in_flight = self.in_flight.saturating_sub(1);
        let current = s.window == self.window;
        match end {
            CloneEnd::Other => Change::Same,
            CloneEnd::LockTimeout if current => Change::HalvedOnTimeout(self.halve()),
            CloneEnd::LockTimeout => Change::Same,
            CloneEnd::Clean(took) => {
                let slow = self
                    .median()
                    .is_some_and(|m| took.as_secs_f64() > m.as_secs_f64() * SLOW_FACTOR);
                if self.recent.len() == WINDOW {
                    self.recent.pop_front();
                }
                self.recent.push_back(took);
                if !current {
                    Change::Same
                } else if slow {
                    Change::HalvedOnSlow(self.halve())
                } else {
                    self.clean += 1;
                    if self.clean >= self.limit && self.limit < self.ceiling {
                        self.limit += 1;
                        self.clean = 0;
                        Change::Grew(self.limit)
                    } else {
                        Change::Same
                    }
                }
            }
        }
    }

    fn halve(&mut self) -> usize {
        self.limit = (self.limit / 2).max(1);
        self.clean = 0;
        self.window += 1;
        self.limit
    }
}

/// How long to wait before trying a clone again after its `attempt`-th
/// lock timeout (1-based): `first`, doubling, at most 16 times `first`.
/// Spread by `salt` (e.g. the step's index) by up to a quarter, so that
/// the clones that timed out together do not all come back at once.
pub fn backoff(first: Duration, attempt: u32, salt: usize) -> Duration {
    let base = first * (1u32 << attempt.saturating_sub(1).min(4));
    let spread = (salt % 8) as u32;
    base + base * spread / 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn starts_at_its_default_and_lets_no_more_run() {
        let mut a = Aimd::new(3, 64);
        let s: Vec<Started> = (0..3).filter_map(|_| a.try_start()).collect();
        assert_eq!(s.len(), 3);
        assert!(a.try_start().is_none(), "a fourth waits");
        assert_eq!(a.in_flight(), 3);
        for x in s {
            a.end(x, CloneEnd::Other);
        }
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.limit(), 3, "other failures say nothing");
    }

    #[test]
    fn grows_by_one_per_window_of_clean_clones_up_to_the_ceiling() {
        let mut a = Aimd::new(2, 3);
        let mut changes = Vec::new();
        for _ in 0..8 {
            let s = a.try_start().unwrap();
            changes.push(a.end(s, CloneEnd::Clean(secs(6.0))));
        }
        assert_eq!(changes[1], Change::Grew(3), "{changes:?}");
        assert_eq!(a.limit(), 3, "never above the ceiling");
        assert!(changes.iter().filter(|c| **c != Change::Same).count() == 1);
    }

    #[test]
    fn halves_once_per_window_on_lock_timeouts() {
        let mut a = Aimd::new(8, 64);
        let s: Vec<Started> = (0..8).filter_map(|_| a.try_start()).collect();
        let mut ends = s.into_iter();
        // Eight started under 8: the first timeout halves, the others of
        // the same window do not halve again.
        let first = a.end(ends.next().unwrap(), CloneEnd::LockTimeout);
        assert_eq!(first, Change::HalvedOnTimeout(4));
        for x in ends {
            assert_eq!(a.end(x, CloneEnd::LockTimeout), Change::Same);
        }
        assert_eq!(a.limit(), 4);
        // One started under the new limit that times out halves it again.
        let s = a.try_start().unwrap();
        assert_eq!(a.end(s, CloneEnd::LockTimeout), Change::HalvedOnTimeout(2));
        let s = a.try_start().unwrap();
        assert_eq!(a.end(s, CloneEnd::LockTimeout), Change::HalvedOnTimeout(1));
        let s = a.try_start().unwrap();
        assert_eq!(a.end(s, CloneEnd::LockTimeout), Change::HalvedOnTimeout(1));
        assert_eq!(a.limit(), 1, "never below one");
    }

    #[test]
    fn a_clone_much_slower_than_the_recent_median_halves_it() {
        let mut a = Aimd::new(8, 64);
        for took in [6.0, 6.2, 5.9] {
            let s = a.try_start().unwrap();
            assert_eq!(a.end(s, CloneEnd::Clean(secs(took))), Change::Same);
        }
        assert_eq!(a.median(), Some(secs(6.0)));
        let s = a.try_start().unwrap();
        assert_eq!(
            a.end(s, CloneEnd::Clean(secs(8.5))),
            Change::Same,
            "within 1.5x"
        );
        let s = a.try_start().unwrap();
        assert_eq!(
            a.end(s, CloneEnd::Clean(secs(9.5))),
            Change::HalvedOnSlow(4)
        );
    }

    #[test]
    fn no_median_before_three_samples() {
        let mut a = Aimd::new(4, 64);
        let s = a.try_start().unwrap();
        a.end(s, CloneEnd::Clean(secs(1.0)));
        let s = a.try_start().unwrap();
        assert_eq!(a.end(s, CloneEnd::Clean(secs(100.0))), Change::Same);
        assert_eq!(a.median(), None);
    }

    #[test]
    fn the_median_is_of_the_last_eight() {
        let mut a = Aimd::new(64, 64);
        for i in 0..20 {
            let s = a.try_start().unwrap();
            a.end(s, CloneEnd::Clean(secs(f64::from(i))));
        }
        // 12..=19: the median of eight is the fifth.
        assert_eq!(a.median(), Some(secs(16.0)));
    }

    #[test]
    fn back_off_doubles_to_sixteen_seconds_and_spreads() {
        let s1 = secs(1.0);
        let b: Vec<u64> = (1..=7)
            .map(|n| backoff(s1, n, 0).as_millis() as u64)
            .collect();
        assert_eq!(b, [1000, 2000, 4000, 8000, 16000, 16000, 16000]);
        assert_eq!(backoff(s1, 1, 7), secs(1.21875));
        assert_eq!(backoff(s1, 1, 8), backoff(s1, 1, 0));
    }
}
