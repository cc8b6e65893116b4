//! A PVE cluster's API endpoints, tried in turn: calls go to the one that answered last;
//! when it cannot be reached (the request was never sent) the next is tried, and so on
//! around the list once. Errors that PVE answered are never a reason to switch. Every call
//! (API calls and uploads alike) goes through [`PveClient::across_endpoints`], which also
//! retries what is safe to retry.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;

use super::client::{Failure, PveClient, PveError};

/// The endpoints (`https://host:8006`, no trailing slash) and the one in use.
#[derive(Debug)]
pub(super) struct Endpoints {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    /// `first`, then `others` (without repeats).
    pub fn new(first: &str, others: &[String]) -> Self {
        let mut urls = vec![first.trim_end_matches('/').to_string()];
        for o in others {
            let o = o.trim_end_matches('/').to_string();
            if !urls.contains(&o) {
                urls.push(o);
            }
        }
        Endpoints {
            urls,
            current: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// The endpoint in use: its index and URL.
    pub fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Relaxed) % self.urls.len();
        (i, &self.urls[i])
    }

    /// After endpoint `failed` could not be reached: the next one is used (unless another
    /// call already moved on).
    pub fn failed(&self, failed: usize) {
        let next = (failed + 1) % self.urls.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
        tracing::warn!(
            "PVE API at {} cannot be reached; trying {}",
            self.urls[failed],
            self.urls[next]
        );
    }
}

impl PveClient {
    /// Sends one call with `send` (given the endpoint's base URL, `https://host:8006`; it
    /// builds the request anew each time, so a body is read again from its source): to the
    /// endpoint in use, to the next one at once when it was not reached, and again after a
    /// backoff when trying again is safe ([`Failure::retryable`]; `repeatable`: the call may
    /// happen twice, as a read or an upload may). The error names every endpoint tried when
    /// none could be reached.
    pub(super) async fn across_endpoints<T, F, Fut>(
        &self,
        method: &Method,
        path: &str,
        repeatable: bool,
        send: F,
    ) -> Result<T, PveError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut wait = self.backoff;
        let mut attempt = 1;
        let mut unreachable: Vec<(String, String)> = Vec::new();
        loop {
            let (at, base) = self.endpoints.current();
            let base = base.to_string();
            let failure = match send(base.clone()).await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            // Another endpoint of the cluster, at once, when this one was not reached.
            if let Failure::NotSent(m) = &failure {
                if !unreachable.iter().any(|(u, _)| *u == base) {
                    unreachable.push((base.clone(), m.clone()));
                }
                if unreachable.len() < self.endpoints.len() {
                    self.endpoints.failed(at);
                    continue;
                }
            }
            let mut err = self.to_error(method, path, failure.as_ref());
            if let PveError::Connect { endpoint, message } = &mut err {
                *endpoint = base.clone();
                if unreachable.len() > 1 {
                    *message = unreachable
                        .iter()
                        .map(|(u, m)| format!("{u}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    *endpoint = format!("any of its {} endpoints", unreachable.len());
                }
            }
            if !failure.retryable(repeatable, &err) || attempt >= self.attempts {
                return Err(err);
            }
            tracing::debug!("{method} {path}: {err}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
            unreachable.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoints;

    #[test]
    fn a_failed_endpoint_hands_over_to_the_next_and_round() {
        let e = Endpoints::new(
            "https://a:8006/",
            &["https://b:8006".into(), "https://a:8006".into()],
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e.current(), (0, "https://a:8006"));
        e.failed(0);
        assert_eq!(e.current(), (1, "https://b:8006"));
        // A stale report (another call already moved on) changes nothing.
        e.failed(0);
        assert_eq!(e.current(), (1, "https://b:8006"));
        e.failed(1);
        assert_eq!(e.current(), (0, "https://a:8006"));
    }
}
