//! Following `ansible-playbook`'s default callback output: plays, tasks,
//! failures (and whether they were ignored), ansible's own errors and the
//! `PLAY RECAP`, and the verdict drawn from them when the run ends.

use serde_json::Value;

use super::{AnsibleError, HostRecap, PlaybookOutcome, TaskFailure};

/// Follows the default callback's output.
#[derive(Default)]
pub(super) struct OutputParser {
    play: Option<String>,
    pub(super) task: Option<String>,
    failures: Vec<TaskFailure>,
    in_recap: bool,
    recap: Vec<HostRecap>,
    /// `[ERROR]: ...` / `ERROR! ...` lines (ansible's own errors).
    errors: Vec<String>,
}

fn bracketed<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    let end = rest.rfind("] ")?;
    Some(&rest[..end])
}

impl OutputParser {
    pub(super) fn line(&mut self, line: &str) {
        if let Some(p) = bracketed(line, "PLAY [") {
            self.play = Some(p.to_string());
            self.in_recap = false;
        } else if line.starts_with("PLAY RECAP ") {
            self.in_recap = true;
        } else if let Some(t) = bracketed(line, "TASK [") {
            self.task = Some(t.to_string());
        } else if let Some(t) = bracketed(line, "RUNNING HANDLER [") {
            self.task = Some(format!("handler {t}"));
        } else if let Some(rest) = line.strip_prefix("fatal: [") {
            // fatal: [host]: FAILED! => {...}   /   UNREACHABLE! => {...}
            if let Some((host, rest)) = rest.split_once("]: ") {
                let unreachable = rest.starts_with("UNREACHABLE!");
                self.failure(host, rest, unreachable);
            }
        } else if let Some(rest) = line.strip_prefix("failed: [") {
            // failed: [host] (item=...) => {...}
            if let Some((host, rest)) = rest.split_once(']') {
                self.failure(host, rest, false);
            }
        } else if line.trim() == "...ignoring" {
            if let Some(f) = self.failures.last_mut() {
                f.ignored = true;
            }
        } else if line.starts_with("[ERROR]: ") || line.starts_with("ERROR! ") {
            self.errors.push(line.to_string());
        } else if self.in_recap {
            if let Some(r) = parse_recap(line) {
                self.recap.push(r);
            }
        }
    }

    fn failure(&mut self, host: &str, rest: &str, unreachable: bool) {
        let message = rest
            .split_once("=> ")
            .map(|(_, j)| result_message(j))
            .unwrap_or_else(|| rest.trim().to_string());
        self.failures.push(TaskFailure {
            play: self.play.clone(),
            task: self.task.clone().unwrap_or_else(|| "?".into()),
            host: host.to_string(),
            message,
            unreachable,
            ignored: false,
        });
    }

    pub(super) fn verdict(
        self,
        code: Option<i32>,
        tail: &[String],
    ) -> Result<PlaybookOutcome, AnsibleError> {
        if code == Some(0) {
            return Ok(PlaybookOutcome {
                recap: self.recap,
                tolerated_failures: self.failures,
            });
        }
        // The hosts that failed per the recap; else any unignored failure.
        let bad: Vec<&str> = self
            .recap
            .iter()
            .filter(|r| r.failed > 0 || r.unreachable > 0)
            .map(|r| r.host.as_str())
            .collect();
        let f = self
            .failures
            .iter()
            .rev()
            .find(|f| !f.ignored && (bad.is_empty() || bad.contains(&f.host.as_str())))
            .or_else(|| self.failures.iter().rev().find(|f| !f.ignored));
        if let Some(f) = f {
            let f = f.clone();
            return Err(if f.unreachable {
                AnsibleError::Unreachable {
                    task: f.task,
                    host: f.host,
                    message: f.message,
                }
            } else {
                AnsibleError::TaskFailed {
                    task: f.task,
                    host: f.host,
                    play: f.play,
                    message: f.message,
                }
            });
        }
        let detail = if self.errors.is_empty() {
            tail.iter()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ")
        } else {
            self.errors.join(" | ")
        };
        Err(AnsibleError::Failed {
            code: code.unwrap_or(-1),
            detail,
        })
    }
}

/// The useful part of a task result: `msg`, plus stderr when that is terse.
fn result_message(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(json.trim()) else {
        return truncate(json.trim(), 500);
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut msg = match v.get("msg") {
        Some(Value::String(m)) => m.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    };
    for k in ["stderr", "module_stderr"] {
        if let Some(e) = s(k) {
            if !msg.contains(e) {
                if !msg.is_empty() {
                    msg.push_str(": ");
                }
                msg.push_str(e);
            }
            break;
        }
    }
    if msg.is_empty() {
        msg = json.trim().to_string();
    }
    truncate(&msg, 500)
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `host : ok=1 changed=0 unreachable=0 failed=1 skipped=0 rescued=0 ignored=0`
fn parse_recap(line: &str) -> Option<HostRecap> {
    let (host, counts) = line.split_once(" : ")?;
    let mut r = HostRecap {
        host: host.trim().to_string(),
        ..Default::default()
    };
    let mut any = false;
    for kv in counts.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        any = true;
        match k {
            "ok" => r.ok = v,
            "changed" => r.changed = v,
            "unreachable" => r.unreachable = v,
            "failed" => r.failed = v,
            "skipped" => r.skipped = v,
            "rescued" => r.rescued = v,
            "ignored" => r.ignored = v,
            _ => {}
        }
    }
    any.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of ansible-core 2.19's default callback (trimmed).
    const OUTPUT: &str = r#"
PLAY [configure] ***************************************************************

TASK [ok task] *****************************************************************
changed: [h1]

TASK [ignored failure] *********************************************************
[ERROR]: Task failed: Module failed: non-zero return code
fatal: [h1]: FAILED! => {"changed": true, "cmd": ["false"], "msg": "non-zero return code", "rc": 1, "stderr": "", "stdout": ""}
...ignoring

TASK [write config] ************************************************************
fatal: [h2]: UNREACHABLE! => {"changed": false, "msg": "Failed to connect to the host via ssh: Connection refused", "unreachable": true}
failed: [h1] (item=false) => {"ansible_loop_var": "item", "msg": "non-zero return code", "rc": 2, "stderr": "boom: no such file"}

PLAY RECAP *********************************************************************
h1                         : ok=2    changed=2    unreachable=0    failed=1    skipped=0    rescued=0    ignored=1
h2                         : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"#;

    fn parsed() -> OutputParser {
        let mut p = OutputParser::default();
        for l in OUTPUT.lines() {
            p.line(l);
        }
        p
    }

    #[test]
    fn reports_the_failed_task_and_host() {
        let p = parsed();
        assert_eq!(p.recap.len(), 2);
        assert_eq!(p.recap[0].failed, 1);
        assert_eq!(p.recap[1].unreachable, 1);
        assert!(p.failures[0].ignored);
        match p.verdict(Some(2), &[]) {
            Err(AnsibleError::TaskFailed {
                task,
                host,
                play,
                message,
            }) => {
                assert_eq!(task, "write config");
                assert_eq!(host, "h1");
                assert_eq!(play.as_deref(), Some("configure"));
                assert_eq!(message, "non-zero return code: boom: no such file");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreachable_and_plain_errors() {
        let mut p = OutputParser::default();
        for l in OUTPUT.lines().filter(|l| !l.starts_with("failed: [h1]")) {
            p.line(l);
        }
        let e = p.verdict(Some(4), &[]).expect_err("fails");
        assert!(
            matches!(e, AnsibleError::Unreachable { ref host, .. } if host == "h2"),
            "{e:?}"
        );
        assert!(e.to_string().contains("Connection refused"));

        let mut p = OutputParser::default();
        p.line("[ERROR]: couldn't resolve module/action 'bogus'.");
        let e = p.verdict(Some(4), &[]).expect_err("fails");
        assert!(
            e.to_string()
                .contains("couldn't resolve module/action 'bogus'"),
            "{e}"
        );

        // Success keeps every failure seen (ignored, rescued) for the record.
        let p = parsed();
        let ok = p.verdict(Some(0), &[]).expect("ok");
        assert_eq!(ok.tolerated_failures.len(), 3);
    }
}
