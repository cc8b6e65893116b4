//! A PVE cluster's API endpoints, tried in turn: calls go to the one that answered last;
//! when it cannot be reached (the request was never sent) the next is tried, and so on
//! around the list once. Errors that PVE answered are never a reason to switch.

use std::sync::atomic::{AtomicUsize, Ordering};

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
