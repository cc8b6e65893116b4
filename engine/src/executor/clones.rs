//! Clone slots: how many guests may be in the making at once. Without
//! `--clones-per-host`, full clones are limited per (host, storage) by an
//! adaptive [`Aimd`] limit and linked ones not at all; with it, every
//! clone on a host counts against that fixed cap. A step takes its slot
//! before it takes a step slot (`walker.rs`), and gives it back with how
//! the clone went ([`CloneSlot::end`]), which is what the limit learns from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::runner::CloneClass;
use crate::clone_limit::{Aimd, Change, CloneEnd, Started};

/// Never more full clones at once per storage than this, however well
/// they go (the step slots bound them too).
const CEILING: usize = 64;

pub(super) struct ClonePool {
    /// `--clones-per-host`: a fixed cap per host (no adaptation).
    cap: Option<usize>,
    /// Where an adaptive limit starts.
    start: usize,
    inner: Mutex<Inner>,
    /// Bumped whenever a slot comes free or a limit changes.
    version: AtomicU64,
    notify: Notify,
}

#[derive(Default)]
struct Inner {
    /// Clones running per host (all kinds), for the fixed cap.
    per_host: HashMap<String, usize>,
    limits: HashMap<String, Aimd>,
}

/// A clone slot held; [`end`](Self::end) it with how the clone went, or
/// drop it (which says nothing about the storage).
pub(super) struct CloneSlot {
    pool: Arc<ClonePool>,
    host: String,
    /// The adaptive limit it counts against, if any.
    adaptive: Option<(String, Started)>,
}

impl ClonePool {
    pub fn new(cap: Option<usize>, start: usize) -> Arc<Self> {
        Arc::new(ClonePool {
            cap: cap.map(|c| c.max(1)),
            start: start.max(1),
            inner: Mutex::new(Inner::default()),
            version: AtomicU64::new(0),
            notify: Notify::new(),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a clone of `class` on `host`, if one is free now.
    pub fn try_acquire(self: &Arc<Self>, host: &str, class: &CloneClass) -> Option<CloneSlot> {
        let mut inner = self.inner();
        let running = inner.per_host.get(host).copied().unwrap_or(0);
        let adaptive = match self.cap {
            Some(cap) if running >= cap => return None,
            Some(_) => None,
            None if !class.adaptive => None,
            None => {
                let start = self.start;
                let limit = inner
                    .limits
                    .entry(class.key.clone())
                    .or_insert_with(|| Aimd::new(start, CEILING));
                Some((class.key.clone(), limit.try_start()?))
            }
        };
        *inner.per_host.entry(host.to_string()).or_default() += 1;
        Some(CloneSlot {
            pool: self.clone(),
            host: host.to_string(),
            adaptive,
        })
    }

    /// Waits for a slot (for a step that found it needs one only once
    /// it ran; the walker parks steps instead).
    pub async fn acquire(self: &Arc<Self>, host: &str, class: &CloneClass) -> CloneSlot {
        loop {
            let seen = self.version();
            if let Some(s) = self.try_acquire(host, class) {
                return s;
            }
            self.changed(seen).await;
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Returns once something changed since `seen` (a slot came free, a
    /// limit moved).
    pub async fn changed(&self, seen: u64) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.version() != seen {
                return;
            }
            n.await;
        }
    }

    /// The adaptive limit of `key` now (for messages).
    pub fn limit_of(&self, key: &str) -> Option<usize> {
        self.inner().limits.get(key).map(Aimd::limit)
    }

    fn release(&self, host: &str, adaptive: Option<(String, Started)>, end: CloneEnd) -> Change {
        let change = {
            let mut inner = self.inner();
            if let Some(n) = inner.per_host.get_mut(host) {
                *n = n.saturating_sub(1);
            }
            match adaptive {
                Some((key, started)) => inner
                    .limits
                    .get_mut(&key)
                    .map_or(Change::Same, |l| l.end(started, end)),
                None => Change::Same,
            }
        };
        self.version.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        change
    }
}

impl CloneSlot {
    /// The key of the adaptive limit this slot counts against.
    pub fn key(&self) -> Option<&str> {
        self.adaptive.as_ref().map(|(k, _)| k.as_str())
    }

    /// Gives the slot back, telling the limit how the clone went.
    pub fn end(mut self, end: CloneEnd) -> Change {
        let adaptive = self.adaptive.take();
        let host = std::mem::take(&mut self.host);
        self.pool.release(&host, adaptive, end)
    }
}

impl Drop for CloneSlot {
    fn drop(&mut self) {
        // Not ended (an empty host): given up (a stop, a failure before
        // the clone), which says nothing about the storage.
        if !self.host.is_empty() {
            let adaptive = self.adaptive.take();
            let host = std::mem::take(&mut self.host);
            self.pool.release(&host, adaptive, CloneEnd::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn full(key: &str) -> CloneClass {
        CloneClass {
            key: key.into(),
            adaptive: true,
        }
    }

    #[test]
    fn full_clones_are_limited_per_storage_and_linked_ones_not() {
        let p = ClonePool::new(None, 2);
        let a: Vec<_> = (0..3)
            .filter_map(|_| p.try_acquire("h", &full("h/a")))
            .collect();
        assert_eq!(a.len(), 2);
        assert!(
            p.try_acquire("h", &full("h/b")).is_some(),
            "another storage"
        );
        let linked = CloneClass {
            key: "h/a".into(),
            adaptive: false,
        };
        let l: Vec<_> = (0..10)
            .filter_map(|_| p.try_acquire("h", &linked))
            .collect();
        assert_eq!(l.len(), 10);
    }

    #[test]
    fn a_fixed_cap_counts_every_clone_on_the_host() {
        let p = ClonePool::new(Some(3), 1);
        let linked = CloneClass {
            key: "h/a".into(),
            adaptive: false,
        };
        let s: Vec<_> = (0..5)
            .filter_map(|i| match i % 2 {
                0 => p.try_acquire("h", &full("h/a")),
                _ => p.try_acquire("h", &linked),
            })
            .collect();
        assert_eq!(s.len(), 3, "the cap, not the start, and linked too");
        assert!(p.try_acquire("other", &full("other/a")).is_some());
        drop(s);
        assert!(p.try_acquire("h", &full("h/a")).is_some(), "freed on drop");
    }

    #[test]
    fn ends_teach_the_limit_and_bump_the_version() {
        let p = ClonePool::new(None, 4);
        let s = p.try_acquire("h", &full("k")).unwrap();
        let v = p.version();
        assert_eq!(s.end(CloneEnd::LockTimeout), Change::HalvedOnTimeout(2));
        assert_eq!(p.limit_of("k"), Some(2));
        assert!(p.version() > v);
        let s = p.try_acquire("h", &full("k")).unwrap();
        assert_eq!(s.end(CloneEnd::Clean(Duration::from_secs(1))), Change::Same);
        let s = p.try_acquire("h", &full("k")).unwrap();
        assert_eq!(
            s.end(CloneEnd::Clean(Duration::from_secs(1))),
            Change::Grew(3)
        );
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_slot_comes_free() {
        let p = ClonePool::new(None, 1);
        let held = p.try_acquire("h", &full("k")).unwrap();
        let p2 = p.clone();
        let waiter =
            tokio::spawn(async move { p2.acquire("h", &full("k")).await.key().map(String::from) });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap().as_deref(), Some("k"));
    }
}
