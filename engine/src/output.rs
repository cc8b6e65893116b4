//! The `--json-output` document: a superset of the original driver's
//! `{verb, success, duration_seconds, nodes[], context, error}`. Fields may
//! be added; these are never renamed, because parent drivers and CI parse them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Only in dry runs: what would be done.
    Planned,
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Destroyed,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Planned => "planned",
            NodeStatus::Pending => "pending",
            NodeStatus::Running => "running",
            NodeStatus::Completed => "completed",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Destroyed => "destroyed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeOutput {
    pub name: String,
    pub status: NodeStatus,
    pub vm_id: Option<u32>,
    pub ip: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunOutput<'m> {
    pub verb: String,
    pub success: bool,
    pub duration_seconds: f64,
    pub nodes: Vec<NodeOutput>,
    /// `{name}_ip`, `{name}_vm_id`, ...
    pub context: BTreeMap<String, serde_json::Value>,
    pub error: Option<String>,
    /// Stopped when asked to (a signal, the time limit), so resumable.
    pub interrupted: bool,
    pub manifest: Option<String>,
    pub host: String,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan<'m>>,
    /// Validation problems, when the manifest was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemOutput>,
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

impl RunOutput<'static> {
    /// The `--json-output` document of a finished run.
    pub fn from_result(
        verb: &str,
        manifest: &str,
        host: &str,
        r: &crate::executor::RunResult,
    ) -> Self {
        RunOutput {
            verb: verb.to_string(),
            success: r.success,
            duration_seconds: r.duration,
            nodes: r
                .nodes
                .iter()
                .map(|n| NodeOutput {
                    name: n.name.clone(),
                    status: n.status,
                    vm_id: n.vm_id,
                    ip: n.ip.clone(),
                    duration: n.duration,
                    error: n.error.clone(),
                })
                .collect(),
            context: r.context.clone(),
            error: r.error.clone(),
            interrupted: r.interrupted,
            manifest: Some(manifest.to_string()),
            host: host.to_string(),
            dry_run: false,
            plan: None,
            problems: Vec::new(),
        }
    }
}
