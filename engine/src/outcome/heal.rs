//! What `create --heal` repaired: kept in the run state and reported in the run's output.

use serde::{Deserialize, Serialize};

/// One repair `create` made (or meant to make) to a node whose guest was found
/// changed behind driver's back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heal {
    pub node: String,
    /// `start`, `recreate`, `resize` or `leave` (a problem not repaired).
    pub what: String,
    /// The problem and the repair, in words.
    pub detail: String,
    pub at: String,
    pub run_id: String,
    pub result: HealResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealResult {
    Done,
    Failed,
    /// Handed to the run's create steps (restart, rebuild): settled when the run ends.
    Pending,
    /// Not repaired (the mode does not, or it cannot be).
    Skipped,
    /// What a dry run would do (never in a state file).
    Planned,
}

impl HealResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HealResult::Done => "done",
            HealResult::Failed => "failed",
            HealResult::Pending => "pending",
            HealResult::Skipped => "skipped",
            HealResult::Planned => "planned",
        }
    }
}
