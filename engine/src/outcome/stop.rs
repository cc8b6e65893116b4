//! Why a run starts nothing new: one ordered reason, which the executor's
//! stop token carries and events and results report.

use serde::{Deserialize, Serialize};

/// Why a run (or one of its phases) stops, weakest first: a stronger
/// reason replaces a weaker one, never the other way round (a Ctrl-C
/// after a failure is still a Ctrl-C; an abort overrides them all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A step failed under `on_error: stop` or `rollback`: its phase
    /// starts nothing new; running steps reach a safe point.
    Failed,
    /// The run's time limit (`--timeout`) ran out.
    TimeLimit,
    /// A signal (Ctrl-C, SIGTERM, a hang-up): running steps reach a safe
    /// point, and the run can be resumed.
    Interrupted,
    /// A second Ctrl-C: running actions are dropped at once (their intents
    /// are in the state already).
    Aborted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Failed => "failed",
            StopReason::TimeLimit => "time_limit",
            StopReason::Interrupted => "interrupted",
            StopReason::Aborted => "aborted",
        }
    }

    /// Stopped when asked to (a signal, the time limit), not by a failure:
    /// the run is left to be resumed.
    pub fn is_interruption(self) -> bool {
        self >= StopReason::TimeLimit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stronger_reasons_order_after_weaker_ones() {
        use StopReason::*;
        assert!(None < Some(Failed));
        assert!(Failed < TimeLimit && TimeLimit < Interrupted && Interrupted < Aborted);
        assert!(!Failed.is_interruption() && TimeLimit.is_interruption());
        assert_eq!(
            serde_json::to_string(&TimeLimit).unwrap(),
            r#""time_limit""#
        );
    }
}
