//! The `--json-output` document: a superset of the original driver's
//! `{verb, success, duration_seconds, nodes[], context, error}`, and the
//! tagged line that closes an `--events` stream with it. Fields may be
//! added; these are never renamed, because parent drivers and CI parse them
//! (`schemas/v1/run-output.schema.json` describes the whole document).

use serde::{Deserialize, Serialize};

use crate::outcome::{RunOutcome, PROTOCOL, RESULT_EVENT};
use crate::plan::Plan;

/// A run's outcome with what it ran on: the document `--json-output` prints.
#[derive(Debug, Serialize)]
pub struct RunOutput<'m> {
    /// `verb`, `success`, `duration_seconds`, `nodes`, `context`, `error`, ...
    #[serde(flatten)]
    pub outcome: RunOutcome,
    pub manifest: Option<String>,
    pub host: String,
    pub dry_run: bool,
    /// The [`PROTOCOL`] version of this document's shape.
    pub protocol: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan<'m>>,
    /// A dry run's answer to where each node's disks go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<crate::placement::Placement>,
    /// Validation problems, when the manifest was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemOutput>,
}

impl<'m> RunOutput<'m> {
    /// The document of `outcome`, for `manifest` (when it got that far) on `host`.
    pub fn new(outcome: RunOutcome, manifest: Option<String>, host: &str) -> Self {
        RunOutput {
            outcome,
            manifest,
            host: host.to_string(),
            dry_run: false,
            protocol: PROTOCOL,
            plan: None,
            placement: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// The line that closes a `--events` stream: the `--json-output` document
/// with the time and `"event": "result"`, so a parent tells it from the
/// events (and from anything else on the terminal) by its tag.
#[derive(Debug, Serialize)]
pub struct ResultLine<'a, 'm> {
    pub at: String,
    pub event: &'static str,
    #[serde(flatten)]
    pub output: &'a RunOutput<'m>,
}

impl<'a, 'm> ResultLine<'a, 'm> {
    pub fn new(output: &'a RunOutput<'m>) -> Self {
        ResultLine {
            at: crate::clock::now(),
            event: RESULT_EVENT,
            output,
        }
    }
}

/// A validation problem as JSON: where it is and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemOutput {
    pub origin: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub help: Option<String>,
}

impl ProblemOutput {
    pub fn all(invalid: &crate::manifest::InvalidManifest) -> Vec<ProblemOutput> {
        invalid
            .problems
            .iter()
            .map(|p| ProblemOutput {
                origin: invalid.origin.clone(),
                message: p.message.clone(),
                line: p.line,
                column: p.column,
                help: p.help.clone(),
            })
            .collect()
    }
}

impl ProblemOutput {
    /// A site-config file that does not load: the file as origin, and the
    /// place in it where the error has one.
    pub fn from_config(e: &crate::site_config::ConfigError) -> ProblemOutput {
        use crate::site_config::ConfigError;
        let (origin, line, column, message) = match e {
            ConfigError::Yaml {
                file,
                line,
                col,
                message,
            } => (
                file.clone(),
                Some(*line),
                Some(*col),
                format!("YAML syntax error: {message}"),
            ),
            ConfigError::Invalid { file, message } => (file.clone(), None, None, message.clone()),
            ConfigError::Read { file, reason } => (
                file.clone(),
                None,
                None,
                format!("cannot read it: {reason}"),
            ),
            other => ("site-config".to_string(), None, None, other.to_string()),
        };
        ProblemOutput {
            origin,
            message,
            line,
            column,
            help: e.help(),
        }
    }
}
