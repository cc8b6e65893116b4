//! Reading what tofu prints: the machine-readable `-json` lines (messages,
//! diagnostics, change summaries), output values, and the text of a failed
//! `init` (the error summary, a stale-lockfile complaint).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `-json` diagnostic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: String,
    pub summary: String,
    #[serde(default)]
    pub detail: String,
    /// The resource address, when tofu gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `file:line`, when tofu gives a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(a) = &self.address {
            write!(f, " [{a}]")?;
        }
        if let Some(l) = &self.location {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

/// `type: change_summary`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    #[serde(default)]
    pub add: u64,
    #[serde(default)]
    pub change: u64,
    #[serde(default)]
    pub remove: u64,
    #[serde(default)]
    pub operation: String,
}

/// One line of tofu's machine-readable UI.
#[derive(Clone, Debug, PartialEq)]
pub struct TofuMessage {
    pub level: String,
    pub message: String,
    /// `type` (version, planned_change, apply_start, apply_complete,
    /// diagnostic, change_summary, outputs, ...).
    pub kind: String,
    pub diagnostic: Option<Diagnostic>,
    pub changes: Option<ChangeSummary>,
}

/// Parses one `-json` line (`None` for anything else).
pub fn parse_message(line: &str) -> Option<TofuMessage> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let o = v.as_object()?;
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let diagnostic = o.get("diagnostic").and_then(|d| {
        let mut diag: Diagnostic = serde_json::from_value(d.clone()).ok()?;
        diag.location = d.get("range").and_then(|r| {
            let file = r.get("filename")?.as_str()?;
            let line = r
                .get("start")
                .and_then(|s| s.get("line"))
                .and_then(Value::as_u64);
            Some(match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_string(),
            })
        });
        Some(diag)
    });
    let changes = o
        .get("changes")
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    if !o.contains_key("@message") && !o.contains_key("type") {
        return None;
    }
    Some(TofuMessage {
        level: s("@level"),
        message: s("@message"),
        kind: s("type"),
        diagnostic,
        changes,
    })
}

/// An output value (`tofu output -json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TofuOutput {
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub value: Value,
}

pub(super) fn summarize(diags: &[Diagnostic], tail: &[String]) -> String {
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == "error")
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    // Text output (init): the `Error:` lines and what follows them.
    let mut out: Vec<&str> = Vec::new();
    let mut on = false;
    for l in tail {
        let t = l.trim().trim_start_matches('│').trim();
        if t.starts_with("Error:") {
            on = true;
        }
        if on && !t.is_empty() {
            out.push(t);
        }
    }
    if out.is_empty() {
        out = tail
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(3)
            .collect();
        out.reverse();
    }
    let s = out.join(" ");
    match s.char_indices().nth(600) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// `tofu init`'s complaint about a lockfile pinning a provider version the
/// configuration's constraints no longer allow.
pub(super) fn is_lockfile_mismatch(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.contains("does not match configured version constraint")
            || l.contains("locked provider") && l.contains("does not match")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_machine_readable_lines() {
        let m = parse_message(r#"{"@level":"info","@message":"OpenTofu 1.9.0","@module":"tofu.ui","@timestamp":"2025-01-01T00:00:00Z","tofu":"1.9.0","type":"version","ui":"1.2"}"#)
            .expect("parsed");
        assert_eq!(m.kind, "version");
        assert_eq!(m.message, "OpenTofu 1.9.0");

        let m = parse_message(r#"{"@level":"error","@message":"Error: creating VM failed","type":"diagnostic","diagnostic":{"severity":"error","summary":"creating VM failed","detail":"500 no such storage","address":"proxmox_virtual_environment_vm.vm[\"test\"]","range":{"filename":"main.tf","start":{"line":12,"column":1,"byte":200},"end":{"line":12,"column":9,"byte":208}}}}"#)
            .expect("parsed");
        let d = m.diagnostic.expect("diagnostic");
        assert_eq!(d.severity, "error");
        assert_eq!(d.location.as_deref(), Some("main.tf:12"));
        assert_eq!(
            d.to_string(),
            "creating VM failed: 500 no such storage [proxmox_virtual_environment_vm.vm[\"test\"]] (main.tf:12)"
        );

        let m = parse_message(r#"{"@level":"info","@message":"Apply complete! Resources: 1 added, 0 changed, 0 destroyed.","type":"change_summary","changes":{"add":1,"change":0,"import":0,"remove":0,"operation":"apply"}}"#)
            .expect("parsed");
        assert_eq!(
            m.changes,
            Some(ChangeSummary {
                add: 1,
                change: 0,
                remove: 0,
                operation: "apply".into()
            })
        );
        assert!(parse_message("Initializing the backend...").is_none());
        assert!(parse_message("{\"unrelated\":1}").is_none());
    }

    #[test]
    fn lockfile_mismatch_detection_and_text_error_summary() {
        let tail: Vec<String> = [
            "Initializing provider plugins...",
            "╷",
            "│ Error: Failed to query available provider packages",
            "│ ",
            "│ locked provider registry.opentofu.org/bpg/proxmox 0.60.0 does not match configured version constraint >= 0.66.0",
            "╵",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(is_lockfile_mismatch(&tail));
        let s = summarize(&[], &tail);
        assert!(
            s.starts_with("Error: Failed to query available provider packages"),
            "{s}"
        );
        assert!(
            s.contains("does not match configured version constraint"),
            "{s}"
        );
    }
}
