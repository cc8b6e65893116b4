//! Renderers of the executor's event stream, all fed the same `Event`s:
//! - `Bars`: on a terminal, one live line per running node (indicatif);
//! - `Lines`: off a terminal, plain timestamped lines;
//! - `Ndjson`: one JSON object per line on stdout (`--events`), which a
//!   parent driver relays.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use engine::outcome::{Event, EventKind};
use engine::plan::PhaseKind;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub trait Render: Send {
    fn event(&mut self, e: &Event);
    fn finish(&mut self) {}
}

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        engine::clock::human(Duration::from_secs_f64(s))
    }
}

/// A line of text for an event, or `None` for events not worth a line.
pub fn line(e: &Event) -> Option<String> {
    let node = e.node_str();
    Some(match &e.kind {
        EventKind::RunStarted {
            verb,
            manifest,
            host,
            nodes,
            ..
        } => format!("{} '{manifest}' on {host}: {nodes} node(s)", verb.as_str()),
        EventKind::PhaseStarted { phase, steps } => {
            format!("phase {}: {steps} step(s) here", phase.as_str())
        }
        EventKind::StepStarted { .. } => return None,
        EventKind::ActionStarted { action, .. } => format!("{node}: {} ...", action.name()),
        EventKind::ActionFinished {
            action,
            seconds,
            error,
            ..
        } => match error {
            None => format!("{node}: {} done ({})", action.name(), secs(*seconds)),
            Some(e) => format!(
                "{node}: {} FAILED after {}: {e}",
                action.name(),
                secs(*seconds)
            ),
        },
        EventKind::StepFinished {
            phase,
            status,
            seconds,
            error,
        } => {
            let what = match phase {
                PhaseKind::Create => "created",
                PhaseKind::Verify => "verified",
                PhaseKind::Destroy => "destroyed",
            };
            match error {
                None => format!("{node}: {what} ({})", secs(*seconds)),
                Some(e) => format!("{node}: {} ({e})", status.as_str()),
            }
        }
        EventKind::Log { line } => format!("{node}| {line}"),
        EventKind::Stopping { reason, .. } => format!("stopping: {reason}"),
        EventKind::RunFinished { success, seconds } => format!(
            "{} in {}",
            if *success { "succeeded" } else { "FAILED" },
            secs(*seconds)
        ),
    })
}

/// Plain lines on stderr, each with the time of day.
pub struct Lines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> Lines<W> {
    pub fn new(out: W) -> Self {
        Lines { out }
    }
}

impl<W: Write + Send> Render for Lines<W> {
    fn event(&mut self, e: &Event) {
        if let Some(l) = line(e) {
            // "2026-11-25T02:27:43.123Z" -> "02:27:43"
            let time = e.at.get(11..19).unwrap_or(&e.at);
            let _ = writeln!(self.out, "[{time}] {l}");
        }
    }
}

/// NDJSON on stdout, flushed per event so a parent sees it at once.
pub struct Ndjson<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> Ndjson<W> {
    pub fn new(out: W) -> Self {
        Ndjson { out }
    }
}

impl<W: Write + Send> Render for Ndjson<W> {
    fn event(&mut self, e: &Event) {
        if serde_json::to_writer(&mut self.out, e).is_ok() {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }
}

/// The terminal view: a spinner per running node with its current action
/// and elapsed time; finished lines scroll above.
pub struct Bars {
    multi: MultiProgress,
    running: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    pub fn new() -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Bars {
            multi: MultiProgress::new(),
            running: HashMap::new(),
            style,
        }
    }
}

impl Render for Bars {
    fn event(&mut self, e: &Event) {
        let node = e.node_str();
        match &e.kind {
            EventKind::StepStarted { .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.style.clone());
                bar.set_prefix(node.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(node.to_string(), bar);
            }
            EventKind::ActionStarted { action, .. } => {
                if let Some(bar) = self.running.get(node) {
                    bar.set_message(action.name());
                }
            }
            EventKind::StepFinished { .. } => {
                if let Some(bar) = self.running.remove(node) {
                    bar.finish_and_clear();
                }
                if let Some(l) = line(e) {
                    let _ = self.multi.println(l);
                }
            }
            EventKind::ActionFinished { error: None, .. } => {}
            _ => {
                if let Some(l) = line(e) {
                    let _ = self.multi.println(l);
                }
            }
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::outcome::{NodePath, NodeStatus};
    use engine::plan::Action;

    fn events() -> Vec<Event> {
        let edge = || NodePath::node("edge");
        vec![
            Event::node(
                edge(),
                EventKind::ActionStarted {
                    phase: PhaseKind::Create,
                    action: Action::WaitIp,
                    timeout_seconds: 300,
                },
            ),
            Event::node(
                edge(),
                EventKind::ActionFinished {
                    phase: PhaseKind::Create,
                    action: Action::WaitIp,
                    seconds: 2.25,
                    error: None,
                },
            ),
            Event::node(
                edge(),
                EventKind::StepFinished {
                    phase: PhaseKind::Destroy,
                    status: NodeStatus::Failed,
                    seconds: 3.0,
                    error: Some("destroy_vm: locked".into()),
                },
            ),
        ]
    }

    #[test]
    fn plain_lines_are_timestamped() {
        let mut buf = Vec::new();
        {
            let mut r = Lines::new(&mut buf);
            for e in events() {
                r.event(&e);
            }
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("] edge: wait_ip ..."), "{text}");
        assert!(lines[1].ends_with("] edge: wait_ip done (2.2 s)"), "{text}");
        assert!(
            lines[2].ends_with("] edge: failed (destroy_vm: locked)"),
            "{text}"
        );
        assert_eq!(&lines[0][..1], "[");
        assert_eq!(&lines[0][9..11], "] ");
    }

    #[test]
    fn ndjson_is_one_object_per_line() {
        let mut buf = Vec::new();
        {
            let mut r = Ndjson::new(&mut buf);
            for e in events() {
                r.event(&e);
            }
        }
        let text = String::from_utf8(buf).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0]["event"], "action_started");
        assert_eq!(parsed[0]["node"], "edge");
        assert!(parsed[0]["at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(parsed[0]["action"], "wait_ip");
        assert_eq!(parsed[2]["status"], "failed");
    }
}
