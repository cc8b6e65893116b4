//! Polling until a deadline: the one helper every wait of the actions goes
//! through (a guest's address, a config lock, a PVE task, an SSH login, a
//! nested PVE's API).
//!
//! It polls, sleeps with back-off (a first interval, a factor, a cap), and
//! polls one last time exactly at the deadline, so a limit of 5 s means 5 s
//! of waiting and not "whenever the next interval would have overshot". A
//! wait that gives up says how long it really waited and how many polls it
//! made, with the last answer it saw ([`GaveUp`]).
//!
//! Time is tokio's, so tests run it under paused time.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long to sleep between polls: `first`, then times `factor` each
/// time, never more than `cap` (nor past the deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub factor: u32,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, factor: u32, cap: Duration) -> Self {
        Backoff { first, factor, cap }
    }

    fn next(&self, d: Duration) -> Duration {
        d.saturating_mul(self.factor.max(1)).min(self.cap)
    }
}

/// What one poll saw.
#[derive(Debug)]
pub enum Poll<T, E> {
    /// Done: the wait returns it.
    Ready(T),
    /// Not yet; what was seen, reported if the wait gives up.
    Pending(E),
    /// Waiting will not help (e.g. a refused host key): give up now.
    Fail(E),
}

/// How long a wait went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waited {
    pub elapsed: Duration,
    pub polls: u32,
}

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.elapsed.as_secs_f64();
        let polls = match self.polls {
            1 => "1 poll".to_string(),
            n => format!("{n} polls"),
        };
        write!(f, "{s:.1} s ({polls})")
    }
}

/// A wait that ended without its answer.
#[derive(Debug)]
pub struct GaveUp<E> {
    /// The last poll's answer (a [`Poll::Fail`]'s, or the one at the deadline).
    pub last: E,
    pub waited: Waited,
    /// The deadline passed (not a [`Poll::Fail`]).
    pub timed_out: bool,
}

/// Polls `poll` until it is ready, fails, or `limit` has passed: back-off
/// between polls, and one last poll at the deadline itself.
pub async fn until<T, E, F, Fut>(
    limit: Duration,
    backoff: Backoff,
    mut poll: F,
) -> Result<(T, Waited), GaveUp<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Poll<T, E>>,
{
    let start = Instant::now();
    let deadline = start + limit;
    let mut delay = backoff.first;
    let mut polls = 0u32;
    loop {
        polls += 1;
        let answer = poll().await;
        let waited = Waited {
            elapsed: start.elapsed(),
            polls,
        };
        let last = match answer {
            Poll::Ready(t) => return Ok((t, waited)),
            Poll::Fail(last) => {
                return Err(GaveUp {
                    last,
                    waited,
                    timed_out: false,
                })
            }
            Poll::Pending(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(GaveUp {
                last,
                waited,
                timed_out: true,
            });
        }
        // Never past the deadline: the last sleep ends on it, for the last poll.
        tokio::time::sleep_until((now + delay).min(deadline)).await;
        delay = backoff.next(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const B: Backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(1));

    /// Polls that never succeed, recording when each happened (ms from start).
    async fn never(limit: Duration) -> (GaveUp<u32>, Vec<u128>) {
        let start = Instant::now();
        let at = Arc::new(Mutex::new(Vec::new()));
        let seen = at.clone();
        let r: Result<((), Waited), GaveUp<u32>> = until(limit, B, || {
            let seen = seen.clone();
            async move {
                let mut s = seen.lock().unwrap();
                s.push(start.elapsed().as_millis());
                Poll::Pending(s.len() as u32)
            }
        })
        .await;
        let at = at.lock().unwrap().clone();
        (r.unwrap_err(), at)
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_and_polls_last_at_the_deadline() {
        let (e, at) = never(Duration::from_secs(5)).await;
        // 0, +100, +200, +400, +800, then capped at 1 s, and the deadline.
        assert_eq!(at, [0, 100, 300, 700, 1500, 2500, 3500, 4500, 5000]);
        assert!(e.timed_out);
        assert_eq!(e.last, 9, "the last answer is the one at the deadline");
        assert_eq!(
            e.waited,
            Waited {
                elapsed: Duration::from_secs(5),
                polls: 9
            }
        );
        assert_eq!(e.waited.to_string(), "5.0 s (9 polls)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_limit_still_polls_at_its_end() {
        let (e, at) = never(Duration::from_millis(250)).await;
        assert_eq!(at, [0, 100, 250]);
        assert_eq!(e.waited.elapsed, Duration::from_millis(250));
        // No time at all: one poll.
        let (e, at) = never(Duration::ZERO).await;
        assert_eq!(at, [0]);
        assert_eq!(e.waited.to_string(), "0.0 s (1 poll)");
    }

    #[tokio::test(start_paused = true)]
    async fn ready_returns_at_once_with_the_time_taken() {
        let mut n = 0;
        let (v, w) = until(Duration::from_secs(10), B, || {
            n += 1;
            let n = n;
            async move {
                match n {
                    3 => Poll::Ready("up"),
                    _ => Poll::<_, ()>::Pending(()),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, "up");
        assert_eq!(
            w,
            Waited {
                elapsed: Duration::from_millis(300),
                polls: 3
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_ends_the_wait_without_waiting() {
        let e = until(Duration::from_secs(10), B, || async {
            Poll::<(), _>::Fail("refused")
        })
        .await
        .unwrap_err();
        assert!(!e.timed_out);
        assert_eq!(e.last, "refused");
        assert_eq!(e.waited.polls, 1);
        assert_eq!(e.waited.elapsed, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_poll_past_the_deadline_is_the_last() {
        // Each poll takes 2 s: polls at 0 and 2.1 s, and none after 4.1 s.
        let mut polls = 0;
        let e = until(Duration::from_secs(3), B, || {
            polls += 1;
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Poll::<(), _>::Pending(())
            }
        })
        .await
        .unwrap_err();
        assert_eq!(polls, 2);
        assert_eq!(e.waited.elapsed, Duration::from_millis(4100));
    }
}
