//! What `create --snapshot` did around a run on a tree that existed already: the guests it
//! snapshotted first, and whether the snapshots were deleted, kept, or rolled back to when
//! the run or the health check after it failed. Kept in the run state and reported in the
//! run's output.

use serde::{Deserialize, Serialize};

/// One guest snapshotted before the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedGuest {
    pub node: String,
    pub vmid: u32,
}

/// A run's snapshot guard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotGuard {
    /// The snapshot's name on every guest.
    pub snapshot: String,
    pub run_id: String,
    pub at: String,
    /// Parents first (a rollback goes the other way).
    pub guests: Vec<GuardedGuest>,
    pub result: GuardResult,
    /// Why it rolled back (the run's error, or what the health check found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What failed in the rollback or in deleting the snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardResult {
    /// A dry run's: what would be snapshotted.
    Planned,
    /// No guest of the tree existed yet (or none the run could change): nothing taken.
    Nothing,
    /// Run and check passed; the snapshots were deleted.
    Deleted,
    /// Run and check passed; the snapshots were kept (`--keep-snapshot`).
    Kept,
    /// The run or the check failed: every guest was rolled back.
    RolledBack,
    /// The rollback itself failed part way (`error` says where); the snapshots are kept.
    RollbackFailed,
}

impl GuardResult {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardResult::Planned => "planned",
            GuardResult::Nothing => "nothing",
            GuardResult::Deleted => "deleted",
            GuardResult::Kept => "kept",
            GuardResult::RolledBack => "rolled_back",
            GuardResult::RollbackFailed => "rollback_failed",
        }
    }
}
