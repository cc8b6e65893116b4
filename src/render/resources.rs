//! The resource verbs' output: rows as kubectl-style columns (`table`, `wide`), or the same
//! data as JSON or YAML (`{"kind": ..., "items": [...]}` for lists). Formatting only.

use actions::resources::{GuestRow, NodeRow, StorageRow, TaskRow};
use serde::Serialize;
use serde_json::Value;
use yaml_rust2::yaml::{Hash, Yaml};

use crate::cli::resources::Output;

/// A row that can be shown as columns.
pub trait Columns {
    fn headers(wide: bool) -> Vec<&'static str>;
    fn cells(&self, wide: bool) -> Vec<String>;
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// `3d4h`, `5h12m`, `7m`, `42s` (kubectl's AGE style).
pub fn age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

impl Columns for GuestRow {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["VMID", "NAME", "KIND", "STATUS", "CORES", "MEMORY", "DISK"];
        if wide {
            h.extend(["NODE", "UPTIME", "LOCK", "TAGS", "DRIVER-STATE"]);
        }
        h
    }

    fn cells(&self, wide: bool) -> Vec<String> {
        let status = match (self.template, self.lock.as_deref()) {
            (true, _) => "template".to_string(),
            (false, Some(l)) if !wide => format!("{} (locked: {l})", self.status),
            _ => self.status.clone(),
        };
        let mut c = vec![
            self.vmid.to_string(),
            self.name.clone(),
            self.kind.name().to_string(),
            status,
            opt(self.cores),
            opt(self.memory_mb.map(|m| format!("{m}Mi"))),
            opt(self.disk_gb.map(|d| format!("{d}Gi"))),
        ];
        if wide {
            c.extend([
                self.node.clone(),
                self.uptime_s
                    .filter(|u| *u > 0)
                    .map_or_else(|| "-".into(), age),
                opt(self.lock.clone()),
                if self.tags.is_empty() {
                    "-".into()
                } else {
                    self.tags.join(",")
                },
                opt(self.driver_state.clone()),
            ]);
        }
        c
    }
}

impl Columns for NodeRow {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NODE", "STATUS", "CPUS", "MEMORY"];
        if wide {
            h.extend(["MEMORY-USED", "UPTIME"]);
        }
        h
    }

    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            self.node.clone(),
            self.status.clone(),
            opt(self.cpus),
            opt(self.memory_mb.map(|m| format!("{m}Mi"))),
        ];
        if wide {
            c.extend([
                opt(self.memory_used_mb.map(|m| format!("{m}Mi"))),
                self.uptime_s.map_or_else(|| "-".into(), age),
            ]);
        }
        c
    }
}

impl Columns for StorageRow {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["STORAGE", "TYPE", "ACTIVE", "AVAIL", "TOTAL"];
        if wide {
            h.extend(["USED", "CONTENT"]);
        }
        h
    }

    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            self.storage.clone(),
            self.kind.clone(),
            if self.active { "yes" } else { "no" }.into(),
            opt(self.avail_gb.map(|g| format!("{g}Gi"))),
            opt(self.total_gb.map(|g| format!("{g}Gi"))),
        ];
        if wide {
            c.extend([
                opt(self.used_gb.map(|g| format!("{g}Gi"))),
                self.content.join(","),
            ]);
        }
        c
    }
}

/// How long ago epoch second `at` was, kubectl's AGE style (`-` for none).
fn ago(at: Option<u64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    at.map_or_else(|| "-".into(), |t| age(now.saturating_sub(t)))
}

/// Epoch second `at` as a UTC time to the second (`-` for none).
fn utc(at: Option<u64>) -> String {
    at.map_or_else(
        || "-".into(),
        |t| {
            let mut s =
                engine::clock::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
            // `...:43.000Z` -> `...:43Z`: tasks have whole seconds.
            s.replace_range(s.len() - 5..s.len() - 1, "");
            s
        },
    )
}

impl Columns for TaskRow {
    fn headers(wide: bool) -> Vec<&'static str> {
        // AGE as kubectl has it; the times themselves (UTC) in wide (JSON keeps epoch seconds).
        let mut h = vec!["TYPE", "ID", "STATUS", "USER", "AGE"];
        if wide {
            h.extend(["STARTED", "ENDED", "UPID"]);
        }
        h
    }

    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            self.kind.clone(),
            if self.id.is_empty() {
                "-".into()
            } else {
                self.id.clone()
            },
            self.status.clone(),
            self.user.clone(),
            ago(self.starttime),
        ];
        if wide {
            c.extend([utc(self.starttime), utc(self.endtime), self.upid.clone()]);
        }
        c
    }
}

/// Columns aligned, separated by three spaces, headers first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 3));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A list in the asked format; `kind` names it in JSON and YAML.
pub fn rows<T: Columns + Serialize>(kind: &str, items: &[T], output: Output) -> String {
    match output {
        Output::Table | Output::Wide => {
            let wide = output == Output::Wide;
            let cells: Vec<Vec<String>> = items.iter().map(|r| r.cells(wide)).collect();
            table(&T::headers(wide), &cells)
        }
        Output::Json | Output::Yaml => {
            let doc = serde_json::json!({ "kind": kind, "items": items });
            document(&doc, output)
        }
    }
}

/// One value as JSON or YAML (table and wide fall back to YAML: the caller has no columns).
pub fn document<T: Serialize>(value: &T, output: Output) -> String {
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        _ => yaml(&v),
    }
}

fn to_yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml).collect()),
        Value::Object(o) => {
            let mut h = Hash::new();
            for (k, v) in o {
                h.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(h)
        }
    }
}

/// A JSON value as a YAML document.
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    let mut e = yaml_rust2::YamlEmitter::new(&mut out);
    e.multiline_strings(true);
    if e.dump(&to_yaml(v)).is_err() {
        return String::new();
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_yaml_reads_back() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A     LONGER\nxyz   1\nq     22\n");
        let v = serde_json::json!({"kind": "vms", "items": [{"vmid": 100, "name": "a: b", "tags": []}]});
        let y = yaml(&v);
        let back = yaml_rust2::YamlLoader::load_from_str(&y).unwrap();
        assert_eq!(back[0]["items"][0]["name"].as_str(), Some("a: b"));
        assert_eq!(back[0]["items"][0]["vmid"].as_i64(), Some(100));
        assert_eq!(age(90_000), "1d1h");
        assert_eq!(age(59), "59s");
    }

    #[test]
    fn a_task_shows_its_age_not_epoch_seconds() {
        let t = TaskRow {
            upid: "UPID:sim:1".into(),
            kind: "qmstart".into(),
            id: "100".into(),
            user: "root@pam".into(),
            starttime: Some(1_764_037_663),
            endtime: None,
            status: "running".into(),
        };
        let c = t.cells(true);
        // Started in 2025: older than a day, in days and hours.
        assert!(c[4].ends_with('h') && c[4].contains('d'), "{c:?}");
        assert_eq!(c[5], "2025-11-25T02:27:43Z");
        assert_eq!(c[6], "-");
    }
}
