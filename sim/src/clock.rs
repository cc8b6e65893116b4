//! Time: the Unix clock PVE's timestamps are in (UPIDs, uptimes, tickets, volumes' `ctime`) and
//! the time scale that maps simulated durations (a clone's 6 s) to real ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 on a clock set before it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `d` at `time_scale` (0, negative or NaN: no time at all).
pub(crate) fn scale(d: Duration, time_scale: f64) -> Duration {
    if time_scale.is_nan() || time_scale <= 0.0 || !time_scale.is_finite() {
        return Duration::ZERO;
    }
    // Client-given durations (a shutdown `timeout`) times a large scale may not fit.
    Duration::try_from_secs_f64(d.as_secs_f64() * time_scale).unwrap_or(Duration::MAX)
}

/// A simulator's time scale, changeable while it runs (`PUT /sim/time-scale`) without a lock.
#[derive(Debug)]
pub(crate) struct TimeScale(AtomicU64);

impl TimeScale {
    pub fn new(scale: f64) -> Self {
        TimeScale(AtomicU64::new(scale.to_bits()))
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Anything but a finite positive number means instant.
    pub fn set(&self, s: f64) {
        let s = if s.is_finite() && s > 0.0 { s } else { 0.0 };
        self.0.store(s.to_bits(), Ordering::Relaxed);
    }

    /// A simulated duration in real time.
    pub fn scaled(&self, d: Duration) -> Duration {
        scale(d, self.get())
    }
}
