//! What the resource verbs do to one guest: power (start, stop, shutdown, reboot), delete
//! (and who made the guest, which decides whether delete may go ahead), and a config change
//! read as a diff against the guest's config before it is applied.

use std::time::Duration;

use engine::ownership::{self, Marker};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::{GuestRow, Kind};
use crate::pve::{PveClient, PveError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    Start,
    Stop,
    Shutdown,
    Reboot,
}

impl Power {
    pub fn name(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Stop => "stop",
            Power::Shutdown => "shutdown",
            Power::Reboot => "reboot",
        }
    }

    /// The status the guest ends in.
    pub fn ends(self) -> &'static str {
        match self {
            Power::Start | Power::Reboot => "running",
            Power::Stop | Power::Shutdown => "stopped",
        }
    }
}

/// Starts, stops, shuts down (then stops, past `timeout`) or reboots a guest; a guest
/// already where the verb leads is left as it is (a reboot of a stopped guest starts it).
pub async fn power(
    client: &PveClient,
    g: &GuestRow,
    verb: Power,
    timeout: Duration,
) -> Result<(), PveError> {
    let kind = g.kind.pve();
    match verb {
        Power::Start => client.start(kind, g.vmid, timeout).await,
        Power::Shutdown => client.shutdown(kind, g.vmid, timeout).await,
        Power::Stop => match client.status(kind, g.vmid).await?.as_deref() {
            None | Some("stopped") => Ok(()),
            _ => client.stop(kind, g.vmid, timeout).await,
        },
        Power::Reboot => {
            if client.status(kind, g.vmid).await?.as_deref() != Some("running") {
                return client.start(kind, g.vmid, timeout).await;
            }
            let path = format!(
                "/nodes/{}/{}/{}/status/reboot",
                g.node,
                kind.segment(),
                g.vmid
            );
            client.run_task(Method::POST, &path, &[], timeout).await
        }
    }
}

/// Who made a guest, as its config says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "made_by", rename_all = "snake_case")]
pub enum Provenance {
    /// driver, for a node of a manifest (its description's marker).
    Driver {
        manifest: String,
        node: String,
        state: String,
    },
    /// driver (its tag), with the description's marker edited away.
    DriverTag { state: String },
    /// Nothing says driver made it: someone else's.
    Unknown,
    /// A template other guests are cloned from.
    Template,
}

impl Provenance {
    pub fn of_config(cfg: &Value) -> Provenance {
        if cfg.get("template").is_some_and(|t| t == 1 || t == "1") {
            return Provenance::Template;
        }
        let s = |k: &str| cfg.get(k).and_then(Value::as_str).unwrap_or_default();
        if let Some(m) = Marker::parse(s("description")) {
            return Provenance::Driver {
                manifest: m.manifest,
                node: m.node,
                state: m.state,
            };
        }
        match ownership::state_in_tags(s("tags")) {
            Some(state) => Provenance::DriverTag {
                state: state.to_string(),
            },
            None => Provenance::Unknown,
        }
    }

    /// Made by driver.
    pub fn by_driver(&self) -> bool {
        matches!(
            self,
            Provenance::Driver { .. } | Provenance::DriverTag { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Provenance::Driver {
                manifest,
                node,
                state,
            } => format!("driver, node '{node}' of manifest '{manifest}' (state {state})"),
            Provenance::DriverTag { state } => format!("driver (state {state})"),
            Provenance::Unknown => "not driver (no ownership marker)".into(),
            Provenance::Template => "a template".into(),
        }
    }
}

/// Deletes a guest with its disks, stopping it first (PVE refuses to delete a running one).
pub async fn delete(client: &PveClient, g: &GuestRow, timeout: Duration) -> Result<(), PveError> {
    let kind = g.kind.pve();
    if client.status(kind, g.vmid).await?.as_deref() == Some("running") {
        client.stop(kind, g.vmid, timeout).await?;
    }
    client.delete_guest(kind, g.vmid, timeout).await
}

/// A config change asked for on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub cores: Option<u32>,
    pub memory_mb: Option<u64>,
    /// Grow the disk to this size (GiB); PVE never shrinks one.
    pub disk_gb: Option<u32>,
    /// Which disk (`scsi0`, `rootfs`, ...): default the guest's boot disk.
    pub disk: Option<String>,
    pub tags: Option<Vec<String>>,
    pub description: Option<String>,
}

/// One key's change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub key: String,
    pub from: Option<String>,
    pub to: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("guest {vmid} has no disk '{disk}' (its disks: {have})")]
    NoDisk {
        vmid: u32,
        disk: String,
        have: String,
    },
    #[error(
        "disk {disk} of guest {vmid} is {from} GiB: PVE cannot shrink a disk to {to} GiB \
         (make a new guest with a smaller disk and move the data instead)"
    )]
    Shrink {
        vmid: u32,
        disk: String,
        from: u32,
        to: u32,
    },
    #[error(transparent)]
    Pve(#[from] PveError),
}

/// The disk keys of a guest's config, boot disk first.
fn disks(kind: Kind, cfg: &Value) -> Vec<String> {
    let Some(obj) = cfg.as_object() else {
        return Vec::new();
    };
    let boot = match kind {
        Kind::Ct => vec!["rootfs".to_string()],
        Kind::Vm => ["scsi0", "virtio0", "sata0", "ide0"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let is_disk = |k: &str, v: &Value| {
        let prefixes: &[&str] = match kind {
            Kind::Ct => &["rootfs", "mp"],
            Kind::Vm => &["scsi", "virtio", "sata", "ide"],
        };
        prefixes.iter().any(|p| {
            k.strip_prefix(p)
                .is_some_and(|n| n.is_empty() || n.chars().all(|c| c.is_ascii_digit()))
        }) && v.as_str().is_some_and(|s| !s.contains("media=cdrom"))
    };
    let mut out: Vec<String> = boot
        .into_iter()
        .filter(|k| obj.get(k).is_some_and(|v| is_disk(k, v)))
        .collect();
    let mut rest: Vec<String> = obj
        .iter()
        .filter(|(k, v)| is_disk(k, v) && !out.contains(k))
        .map(|(k, _)| k.clone())
        .collect();
    rest.sort();
    out.extend(rest);
    out
}

/// `size=32G` (or `512M`, `1T`) of a disk's config value, in whole GiB (rounded up).
pub fn disk_size_gb(value: &str) -> Option<u32> {
    let size = value
        .split(',')
        .find_map(|p| p.trim().strip_prefix("size="))?;
    let (n, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = n.parse().ok()?;
    let gb = match unit {
        "T" => n * 1024.0,
        "G" => n,
        "M" => n / 1024.0,
        "K" => n / (1024.0 * 1024.0),
        _ => return None,
    };
    Some(gb.ceil() as u32)
}

/// A plan of a change: the diff, and what applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub diff: Vec<DiffLine>,
    params: Vec<(&'static str, String)>,
    resize: Option<(String, u32)>,
}

impl Planned {
    pub fn is_empty(&self) -> bool {
        self.diff.is_empty()
    }

    /// Sets the guest's tags too (a new clone carries its template's).
    pub fn set_tags(&mut self, tags: String) {
        self.params.retain(|(k, _)| *k != "tags");
        self.params.push(("tags", tags));
    }
}

/// What `change` would do to the guest whose config is `cfg`: only what differs.
pub fn plan_change(g: &GuestRow, cfg: &Value, change: &Change) -> Result<Planned, ChangeError> {
    let cur = |k: &str| {
        cfg.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let mut p = Planned {
        diff: Vec::new(),
        params: Vec::new(),
        resize: None,
    };
    let set = |p: &mut Planned, key: &'static str, to: String| {
        let from = cur(key);
        if from.as_deref() != Some(to.as_str()) {
            p.diff.push(DiffLine {
                key: key.into(),
                from,
                to: to.clone(),
            });
            p.params.push((key, to));
        }
    };
    if let Some(c) = change.cores {
        set(&mut p, "cores", c.to_string());
    }
    if let Some(m) = change.memory_mb {
        set(&mut p, "memory", m.to_string());
    }
    if let Some(t) = &change.tags {
        // driver's own tag stays: it is how driver knows its guests.
        let mut all: Vec<String> = t.clone();
        if let Some(s) = &g.driver_state {
            let mine = format!("{}{s}", ownership::TAG_PREFIX);
            if !all.contains(&mine) {
                all.push(mine);
            }
        }
        set(&mut p, "tags", all.join(";"));
    }
    if let Some(d) = &change.description {
        set(&mut p, "description", d.clone());
    }
    if let Some(size) = change.disk_gb {
        let have = disks(g.kind, cfg);
        let disk = match &change.disk {
            Some(d) => d.clone(),
            None => have.first().cloned().unwrap_or_else(|| match g.kind {
                Kind::Vm => "scsi0".into(),
                Kind::Ct => "rootfs".into(),
            }),
        };
        let value = cfg
            .get(&disk)
            .and_then(Value::as_str)
            .filter(|_| have.contains(&disk));
        let Some(value) = value else {
            return Err(ChangeError::NoDisk {
                vmid: g.vmid,
                disk,
                have: if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                },
            });
        };
        let from = disk_size_gb(value);
        match from {
            Some(f) if f > size => {
                return Err(ChangeError::Shrink {
                    vmid: g.vmid,
                    disk,
                    from: f,
                    to: size,
                })
            }
            Some(f) if f == size => {}
            _ => {
                p.diff.push(DiffLine {
                    key: format!("{disk} size"),
                    from: from.map(|f| format!("{f}G")),
                    to: format!("{size}G"),
                });
                p.resize = Some((disk, size));
            }
        }
    }
    Ok(p)
}

/// Applies a planned change: config keys in one call, then the disk.
pub async fn apply_change(client: &PveClient, g: &GuestRow, p: &Planned) -> Result<(), PveError> {
    let kind = g.kind.pve();
    let params: Vec<(&str, String)> = p.params.iter().map(|(k, v)| (*k, v.clone())).collect();
    client.set_config(kind, g.vmid, &params).await?;
    if let Some((disk, size)) = &p.resize {
        client.resize(kind, g.vmid, disk, *size).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm() -> GuestRow {
        GuestRow {
            vmid: 100,
            name: "a".into(),
            kind: Kind::Vm,
            node: "pve".into(),
            status: "running".into(),
            cores: Some(1),
            memory_mb: Some(512),
            disk_gb: Some(3),
            uptime_s: None,
            tags: vec!["driver-s1".into()],
            template: false,
            lock: None,
            driver_state: Some("s1".into()),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(disk_size_gb("local-lvm:vm-1-disk-0,size=32G"), Some(32));
        assert_eq!(disk_size_gb("local:1/x.raw,size=512M"), Some(1));
        assert_eq!(disk_size_gb("local:x,size=1T,ssd=1"), Some(1024));
        assert_eq!(disk_size_gb("local:x"), None);
    }

    #[test]
    fn a_change_is_only_what_differs_and_never_a_shrink() {
        let cfg = json!({"cores": 1, "memory": "512", "scsi0": "local-lvm:vm-100-disk-0,size=3G",
                         "ide2": "local:iso/x.iso,media=cdrom", "tags": "driver-s1"});
        let c = Change {
            cores: Some(2),
            memory_mb: Some(512),
            disk_gb: Some(8),
            tags: Some(vec!["web".into()]),
            ..Change::default()
        };
        let p = plan_change(&vm(), &cfg, &c).unwrap();
        let keys: Vec<&str> = p.diff.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["cores", "tags", "scsi0 size"]);
        assert_eq!(p.diff[1].to, "web;driver-s1");
        assert_eq!(p.diff[2].from.as_deref(), Some("3G"));
        let shrink = Change {
            disk_gb: Some(2),
            ..Change::default()
        };
        assert!(matches!(
            plan_change(&vm(), &cfg, &shrink),
            Err(ChangeError::Shrink { from: 3, to: 2, .. })
        ));
        let cdrom = Change {
            disk_gb: Some(9),
            disk: Some("ide2".into()),
            ..Change::default()
        };
        assert!(matches!(
            plan_change(&vm(), &cfg, &cdrom),
            Err(ChangeError::NoDisk { .. })
        ));
        assert!(plan_change(&vm(), &cfg, &Change::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn provenance_from_marker_tag_or_nothing() {
        let owner = engine::ownership::Owner {
            manifest: "m".into(),
            host: "h".into(),
            state: "s1".into(),
        };
        let cfg = json!({"description": owner.marker("a").description()});
        assert!(matches!(
            Provenance::of_config(&cfg),
            Provenance::Driver { .. }
        ));
        assert_eq!(
            Provenance::of_config(&json!({"tags": "x;driver-s9"})),
            Provenance::DriverTag { state: "s9".into() }
        );
        assert_eq!(Provenance::of_config(&json!({})), Provenance::Unknown);
        assert_eq!(
            Provenance::of_config(&json!({"template": 1})),
            Provenance::Template
        );
    }
}
