//! The stop token: one ordered [`StopReason`] that whoever stops a run
//! raises (the signal handler, the phase walker on a failure or the time
//! limit) and that the walker, step runners and actions observe, from async
//! code (`stronger_than`, `stopping`) or from a blocking thread (`reason`,
//! `is_stopping`, `is_aborted`).
//!
//! Tokens form a tree, like cancellation tokens: a phase's token is a child
//! of the run's, so a signal stops the phase while a failure in it stops
//! only that phase (`test` still destroys what it made). A child may see
//! only its parent's stronger reasons: a rollback goes on through a
//! graceful stop but not through an abort.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

pub use crate::outcome::StopReason;

/// A handle on one stop reason; clones share it.
#[derive(Clone)]
pub struct StopToken {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` while the run goes on. A watch, so async waiters wake on a
    /// change and blocking threads can read it without a runtime.
    reason: watch::Sender<Option<StopReason>>,
    /// Tokens that take this one's reasons from their floor up.
    children: Mutex<Vec<(Weak<Inner>, StopReason)>>,
}

impl Default for StopToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StopToken").field(&self.reason()).finish()
    }
}

impl StopToken {
    /// A token nothing has stopped yet.
    pub fn new() -> Self {
        StopToken {
            inner: Arc::new(Inner {
                reason: watch::Sender::new(None),
                children: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A token that stops whenever this one does (from then on, or already),
    /// and can be stopped on its own without stopping this one.
    pub fn child(&self) -> StopToken {
        self.child_from(StopReason::Failed)
    }

    /// Like [`child`](Self::child), but it takes only reasons `floor` or
    /// stronger from this one.
    pub fn child_from(&self, floor: StopReason) -> StopToken {
        let child = StopToken::new();
        // Under the lock a raise propagates with, so none is missed
        // between reading the reason and registering.
        let mut children = self.children();
        if let Some(r) = self.reason().filter(|r| *r >= floor) {
            child.raise(r);
        }
        children.retain(|(c, _)| c.strong_count() > 0);
        children.push((Arc::downgrade(&child.inner), floor));
        child
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<Inner>, StopReason)>> {
        // A panic elsewhere while holding it leaves a plain list behind.
        self.inner
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Stops for `reason` unless already stopped for it or a stronger one;
    /// children follow. Returns whether the reason rose.
    pub fn raise(&self, reason: StopReason) -> bool {
        let children = self.children();
        let rose = self.inner.reason.send_if_modified(|cur| {
            let rises = *cur < Some(reason);
            if rises {
                *cur = Some(reason);
            }
            rises
        });
        if rose {
            for (child, floor) in children.iter() {
                if let (Some(inner), true) = (child.upgrade(), reason >= *floor) {
                    StopToken { inner }.raise(reason);
                }
            }
        }
        rose
    }

    /// The strongest reason raised so far; `None`: keep going.
    pub fn reason(&self) -> Option<StopReason> {
        *self.inner.reason.borrow()
    }

    /// Start nothing new (for whatever reason).
    pub fn is_stopping(&self) -> bool {
        self.reason().is_some()
    }

    /// Drop what is running now.
    pub fn is_aborted(&self) -> bool {
        self.reason() == Some(StopReason::Aborted)
    }

    /// Waits until the reason is stronger than `seen`, and returns it.
    pub async fn stronger_than(&self, seen: Option<StopReason>) -> StopReason {
        let mut rx = self.inner.reason.subscribe();
        if let Ok(r) = rx.wait_for(|r| *r > seen).await {
            if let Some(r) = *r {
                return r;
            }
        }
        // The sender lives as long as `self`: never reached.
        std::future::pending().await
    }

    /// Waits until the token stops, for whatever reason.
    pub async fn stopping(&self) -> StopReason {
        self.stronger_than(None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StopReason::*;

    #[test]
    fn a_reason_only_rises() {
        let t = StopToken::new();
        assert_eq!(t.reason(), None);
        assert!(t.raise(Interrupted));
        assert!(!t.raise(Failed), "weaker");
        assert!(!t.raise(Interrupted), "the same");
        assert_eq!(t.reason(), Some(Interrupted));
        assert!(t.is_stopping() && !t.is_aborted());
        assert!(t.raise(Aborted));
        assert!(t.is_aborted());
    }

    #[test]
    fn children_follow_their_parent_but_not_the_other_way() {
        let run = StopToken::new();
        let phase = run.child();
        let rollback = run.child_from(Aborted);
        phase.raise(Failed);
        assert_eq!(run.reason(), None, "a phase's failure stays in the phase");
        run.raise(Interrupted);
        assert_eq!(phase.reason(), Some(Interrupted));
        assert_eq!(rollback.reason(), None, "a rollback goes on through a stop");
        run.raise(Aborted);
        assert_eq!(rollback.reason(), Some(Aborted));
        // A child made after the fact starts stopped.
        assert_eq!(run.child().reason(), Some(Aborted));
    }

    #[tokio::test]
    async fn waiters_wake_on_a_stronger_reason() {
        let t = StopToken::new();
        let child = t.child();
        let (saw, seen) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn({
            let child = child.clone();
            async move {
                let first = child.stopping().await;
                let _ = saw.send(first);
                child.stronger_than(Some(first)).await
            }
        });
        t.raise(Interrupted);
        assert_eq!(seen.await.unwrap(), Interrupted);
        child.raise(Aborted);
        assert_eq!(waiter.await.unwrap(), Aborted);
    }
}
