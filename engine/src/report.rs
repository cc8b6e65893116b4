//! A test report's content: the run's outcome with the manifest, host and
//! driver version, and the report file's JSON shape. Rendering it (markdown)
//! and writing it to `reports/` is the binary's (`src/render/report.rs`).

use serde::{Serialize, Serializer};

use crate::manifest::Manifest;
use crate::outcome::RunOutcome;

/// A finished run, with what it ran and where.
#[derive(Debug)]
pub struct Report<'a> {
    pub host: &'a str,
    pub driver_version: &'a str,
    pub finished_at: String,
    pub manifest: &'a Manifest,
    pub outcome: &'a RunOutcome,
}

/// The report's JSON file: the run's summary at the top and the whole
/// outcome under `result` (the file's shape from before the outcome types
/// were one; fields are only added).
#[derive(Serialize)]
struct ReportFile<'a> {
    verb: &'a str,
    host: &'a str,
    driver_version: &'a str,
    finished_at: &'a str,
    success: bool,
    duration_seconds: f64,
    error: Option<&'a str>,
    interrupted: bool,
    rolled_back: bool,
    manifest: &'a Manifest,
    result: ResultFile<'a>,
}

#[derive(Serialize)]
struct ResultFile<'a> {
    #[serde(flatten)]
    outcome: &'a RunOutcome,
    /// `duration_seconds` under the name reports gave it first.
    duration: f64,
}

impl Serialize for Report<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.outcome;
        ReportFile {
            verb: o.verb.as_str(),
            host: self.host,
            driver_version: self.driver_version,
            finished_at: &self.finished_at,
            success: o.success,
            duration_seconds: o.duration_seconds,
            error: o.error.as_deref(),
            interrupted: o.interrupted,
            rolled_back: o.rolled_back,
            manifest: self.manifest,
            result: ResultFile {
                outcome: o,
                duration: o.duration_seconds,
            },
        }
        .serialize(s)
    }
}
