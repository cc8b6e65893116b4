//! Backups: `POST /nodes/{node}/vzdump` (pve-manager `API2/VZDump.pm`, `VZDump.pm`) writes one
//! archive per guest into `local`'s `dump/` folder under PVE's name
//! (`vzdump-{qemu|lxc}-{vmid}-{YYYY_MM_DD-HH_MM_SS}.{vma|tar}[.zst|.gz|.lzo]`, UTC here) with
//! its notes (`notes-template`) beside it as `{archive}.notes`; the archives are listed as
//! `backup` content, read by restores, and removed by `DELETE .../storage/{s}/content/{volume}`
//! (an `imgdel` task, which removes any file volume of `local`). While a guest is backed up
//! its config carries the `backup` lock; a guest that cannot be (locked, missing) is logged
//! `ERROR: Backup of VM {vmid} failed - ...` and the job ends `job errors`. The archive holds
//! the guest's config and its whole directory tree (see [`crate::trees`]); `mode` is checked
//! but every mode makes the same consistent copy here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::request::ApiRequest;
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, GuestCtx, Op};
use crate::model::GuestKind;
use crate::schema::{validate, ParamSpec, Ty};
use crate::state::Shared;
use crate::tasks::{submit, Apply, Job};
use crate::trees::Archive;

const SPEC: &[ParamSpec] = &[
    ("node", Ty::Str, true),
    ("vmid", Ty::Str, false),
    ("storage", Ty::Str, false),
    ("mode", Ty::Enum(&["snapshot", "suspend", "stop"]), false),
    (
        "compress",
        Ty::Enum(&["0", "1", "gzip", "lzo", "zstd"]),
        false,
    ),
    ("notes-template", Ty::Str, false),
];

/// The folder of `local` that holds backups (pve-storage's `get_subdir('backup')`).
fn dump_dir(shared: &Shared) -> PathBuf {
    shared.storage_root.join("local").join("dump")
}

/// `vzdump.pm`'s `$verify_notes_template`: only `{{cluster|guestname|node|vmid}}` and the
/// escapes `\n` and `\\`.
fn check_template(t: &str) -> Result<(), String> {
    if t.contains('\n') {
        return Err("contains a line feed".into());
    }
    let mut problems = Vec::new();
    let b = t.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            if !matches!(b[i + 1], b'n' | b'\\') {
                problems.push(format!(
                    "escape sequence '\\{}' at char {i}",
                    b[i + 1] as char
                ));
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    let mut rest = t;
    let mut at = 0;
    while let Some(s) = rest.find("{{") {
        let after = &rest[s + 2..];
        let Some(e) = after.find("}}") else { break };
        let var = &after[..e];
        let well_formed =
            !var.is_empty() && !var.contains(char::is_whitespace) && !var.contains(['{', '}']);
        if well_formed && !matches!(var, "cluster" | "guestname" | "node" | "vmid") {
            problems.push(format!("variable '{var}' at char {}", at + s + 2));
        }
        at += s + 2 + e + 2;
        rest = &after[e + 2..];
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("found unknown: {}", problems.join(", ")))
    }
}

/// `$generate_notes`.
fn notes(t: &str, guestname: &str, node: &str, vmid: u32) -> String {
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out.replace("{{cluster}}", "standalone node")
        .replace("{{guestname}}", guestname)
        .replace("{{node}}", node)
        .replace("{{vmid}}", &vmid.to_string())
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2025_01_31-13_45_00` for a Unix time.
fn stamp(t: u64) -> String {
    let secs = t as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}_{m:02}_{d:02}-{:02}_{:02}_{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A backup file's name taken apart: kind, vmid, Unix time, format (`vma.zst`).
pub(crate) fn parse_name(name: &str) -> Option<(GuestKind, u32, u64, String)> {
    let rest = name.strip_prefix("vzdump-")?;
    let (kind, rest) = rest.split_once('-')?;
    let kind = match kind {
        "qemu" => GuestKind::Qemu,
        "lxc" => GuestKind::Lxc,
        _ => return None,
    };
    let (vmid, rest) = rest.split_once('-')?;
    let vmid: u32 = vmid.parse().ok()?;
    let (date, format) = rest.split_once('.')?;
    let n = |s: &str| s.parse::<u32>().ok();
    let parts: Vec<&str> = date.split(['_', '-']).collect();
    let [y, mo, d, h, mi, s] = parts.as_slice() else {
        return None;
    };
    let days = days_from_civil(i64::from(n(y)?), n(mo)?, n(d)?);
    let t = days * 86_400 + i64::from(n(h)? * 3600 + n(mi)? * 60 + n(s)?);
    let ok = matches!(
        (kind, format),
        (GuestKind::Qemu, "vma" | "vma.zst" | "vma.gz" | "vma.lzo")
            | (GuestKind::Lxc, "tar" | "tar.zst" | "tar.gz" | "tar.lzo")
    );
    ok.then(|| {
        (
            kind,
            vmid,
            u64::try_from(t).unwrap_or(0),
            format.to_string(),
        )
    })
}

/// The backups on `storage` (only `local` holds any), of `vmid` when given, as PVE lists
/// them in `GET .../content`.
pub(crate) fn backup_volumes(shared: &Shared, storage: &str, vmid: Option<u32>) -> Vec<Value> {
    if storage != "local" {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(dump_dir(shared)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Value)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let (kind, id, ctime, format) = parse_name(&name)?;
            if vmid.is_some_and(|v| v != id) {
                return None;
            }
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let mut v = json!({
                "volid": format!("local:backup/{name}"),
                "content": "backup",
                "format": format,
                "size": meta.len(),
                "ctime": ctime,
                "vmid": id,
                "subtype": kind_str(kind),
            });
            if let Ok(n) = std::fs::read_to_string(e.path().with_file_name(format!("{name}.notes")))
            {
                v["notes"] = json!(n);
            }
            Some((name, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

/// The archive file behind a backup volume id (`local:backup/vzdump-...`), if it exists.
pub(crate) fn backup_file(shared: &Shared, volid: &str) -> Option<(PathBuf, GuestKind, u32)> {
    let name = volid.strip_prefix("local:backup/")?;
    if name.contains('/') {
        return None;
    }
    let (kind, vmid, _, _) = parse_name(name)?;
    let path = dump_dir(shared).join(name);
    path.is_file().then_some((path, kind, vmid))
}

/// `POST /nodes/{node}/vzdump`.
pub(crate) async fn vzdump(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let mut p = req.params.clone();
    p.insert("node", shared.node.clone());
    let values = validate(&p, SPEC, None)?;
    let s = |k: &str| values.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(list) = s("vmid") else {
        return Err(ApiError::param("vmid", "property is missing"));
    };
    let mut vmids = Vec::new();
    for id in list.split([',', ';', ' ']).filter(|x| !x.is_empty()) {
        match id.parse::<u32>() {
            Ok(v) if v >= 100 => vmids.push(v),
            _ => {
                return Err(ApiError::param(
                    "vmid",
                    format!("value '{id}' does not look like a valid VM ID"),
                ))
            }
        }
    }
    let template = s("notes-template");
    if let Some(t) = &template {
        check_template(t).map_err(|e| ApiError::param("notes-template", e))?;
    }
    let storage = s("storage").unwrap_or_else(|| "local".into());
    let mode = s("mode").unwrap_or_else(|| "snapshot".into());
    let ext = match s("compress").as_deref() {
        Some("1" | "gzip") => ".gz",
        Some("lzo") => ".lzo",
        Some("zstd") => ".zst",
        _ => "",
    };
    let fault = {
        let st = shared.lock();
        let names: Vec<String> = vmids
            .iter()
            .filter_map(|v| st.guests.get(v).map(|g| g.name()))
            .collect();
        drop(st);
        let mut st = shared.lock();
        st.faults.guest_fault(&GuestCtx {
            op: Op::Backup,
            vmids: &vmids,
            name: names.first().map(String::as_str),
        })
    };
    // The guests the job locked, for the effect (and for undoing the locks).
    let locked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let failed: Arc<Mutex<usize>> = Arc::default();
    let (l1, l2, l3) = (locked.clone(), locked.clone(), locked);
    let (f1, f2) = (failed.clone(), failed);
    let ids = vmids.clone();
    let prepare: Apply = Box::new(move |st, _| {
        let mut lines = vec![format!(
            "INFO: starting new backup job: vzdump {} --storage {storage} --mode {mode}",
            ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
        )];
        if storage != "local" {
            let known = super::storage::STORAGES.contains(&storage.as_str());
            return Err(if known {
                format!("can't use storage '{storage}' for backups - wrong content type")
            } else {
                format!("storage '{storage}' does not exist")
            });
        }
        for vmid in &ids {
            let err = match st.guests.get_mut(vmid) {
                None => Some(format!("unable to find VM '{vmid}'")),
                Some(g) => match g.lock_prop() {
                    Some(l) => Some(format!("{} is locked ({l})", type_name(g.kind))),
                    None if g.template() && g.kind == GuestKind::Lxc => None,
                    None => {
                        g.config.insert("lock".into(), json!("backup"));
                        lock(&l1).push(*vmid);
                        None
                    }
                },
            };
            if let Some(e) = err {
                *lock(&f1) += 1;
                lines.push(format!("ERROR: Backup of VM {vmid} failed - {e}"));
            }
        }
        Ok(lines)
    });
    let node = shared.node.clone();
    let apply: Apply = Box::new(move |st, shared| {
        let mut lines = Vec::new();
        let dir = dump_dir(shared);
        for vmid in lock(&l2).clone() {
            let Some(g) = st.guests.get_mut(&vmid) else {
                continue;
            };
            g.config.remove("lock");
            let kind = g.kind;
            let config: BTreeMap<String, Value> = g
                .config
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "lock" | "parent"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let gname = g.name();
            let result = write_archive(shared, &dir, kind, vmid, config, ext);
            match result {
                Ok(path) => {
                    lines.push(format!(
                        "INFO: Starting Backup of VM {vmid} ({})",
                        kind_str(kind)
                    ));
                    lines.push(format!(
                        "INFO: creating vzdump archive '{}'",
                        path.display()
                    ));
                    if let Some(t) = &template {
                        lines.push("INFO: adding notes to backup".into());
                        let text = notes(t, &gname, &node, vmid);
                        let np = path.with_file_name(format!(
                            "{}.notes",
                            path.file_name()
                                .map(|n| n.to_string_lossy())
                                .unwrap_or_default()
                        ));
                        if let Err(e) = std::fs::write(&np, text) {
                            lines.push(format!("WARN: unable to add notes - {e}"));
                        }
                    }
                    lines.push(format!("INFO: Finished Backup of VM {vmid} (00:00:01)"));
                }
                Err(e) => {
                    *lock(&f2) += 1;
                    lines.push(format!("ERROR: Backup of VM {vmid} failed - {e}"));
                }
            }
        }
        if *lock(&f2) > 0 {
            // The per-guest errors are in the log already (prepare); a write error is not.
            let writes: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR:")).collect();
            let mut msg = writes.iter().map(|l| format!("{l}\n")).collect::<String>();
            msg.push_str("job errors");
            return Err(msg);
        }
        lines.push("INFO: Backup job finished successfully".into());
        Ok(lines)
    });
    let id = if vmids.len() == 1 {
        vmids[0].to_string()
    } else {
        String::new()
    };
    let mut job = Job::new("vzdump", id, &req.user, apply);
    job.prepare = Some(prepare);
    job.steps = vec![(shared.timings.clone_full, String::new())];
    job.rollback = Box::new(move |st, _| {
        for vmid in lock(&l3).iter() {
            if let Some(g) = st.guests.get_mut(vmid) {
                if g.lock_prop().as_deref() == Some("backup") {
                    g.config.remove("lock");
                }
            }
        }
    });
    match fault {
        Some(FaultKind::TaskFailure { message }) => {
            job.fail = Some(message.unwrap_or_else(|| "job errors".into()));
        }
        Some(FaultKind::LockTimeout) => {
            job.fail = Some("can't acquire lock '/var/run/vzdump.lock' - got timeout".into())
        }
        _ => {}
    }
    let upid = submit(shared, job).await;
    let mut st = shared.lock();
    if let Some(t) = st.tasks.get_mut(&upid) {
        t.log.retain(|l| !l.is_empty());
    }
    Ok(json!(upid))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn kind_str(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "qemu",
        GuestKind::Lxc => "lxc",
    }
}

fn type_name(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "CT",
    }
}

/// Writes one guest's archive; two backups of a guest in one second get consecutive
/// seconds in their names (PVE's would collide).
fn write_archive(
    shared: &Shared,
    dir: &std::path::Path,
    kind: GuestKind,
    vmid: u32,
    config: BTreeMap<String, Value>,
    ext: &str,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let base = match kind {
        GuestKind::Qemu => "vma",
        GuestKind::Lxc => "tar",
    };
    let taken = |t: u64| {
        let prefix = format!("vzdump-{}-{vmid}-{}.", kind_str(kind), stamp(t));
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
    };
    let mut t = now_unix();
    while taken(t) {
        t += 1;
    }
    let name = format!("vzdump-{}-{vmid}-{}.{base}{ext}", kind_str(kind), stamp(t));
    let path = dir.join(name);
    Archive::pack(kind_str(kind), vmid, config, &shared.ssh.guest_dir(vmid))?.write(&path)?;
    Ok(path)
}

/// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`: an `imgdel` task removing a
/// file volume of `local` (a backup with its notes).
pub(crate) async fn delete_volume(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    storage: &str,
    volume: &str,
) -> ApiResult<Value> {
    let volid = if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{storage}:{volume}")
    };
    let (path, owner) = if let Some((p, _, vmid)) = backup_file(shared, &volid) {
        (p, Some(vmid))
    } else if let Some((p, _)) = super::content::volume_file(shared, &volid) {
        (p, None)
    } else {
        return Err(ApiError::internal(format!(
            "volume '{volid}' does not exist"
        )));
    };
    let store = volid.split(':').next().unwrap_or(storage).to_string();
    let id = match owner {
        Some(v) => format!("{v}@{store}"),
        None => store,
    };
    let v2 = volid.clone();
    let job = Job::new(
        "imgdel",
        id,
        &req.user,
        Box::new(move |_, _| {
            std::fs::remove_file(&path).map_err(|e| format!("unable to remove '{v2}': {e}"))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = std::fs::remove_file(path.with_file_name(format!("{name}.notes")));
            Ok(vec![format!("Removed volume '{v2}'")])
        }),
    );
    Ok(json!(submit(shared, job).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t = 1_735_689_600 + 13 * 3600 + 45 * 60 + 7; // 2025-01-01 13:45:07 UTC
        assert_eq!(stamp(t), "2025_01_01-13_45_07");
        let name = format!("vzdump-qemu-100-{}.vma.zst", stamp(t));
        let (k, v, back, f) = parse_name(&name).unwrap();
        assert_eq!(
            (k, v, back, f.as_str()),
            (GuestKind::Qemu, 100, t, "vma.zst")
        );
        assert!(parse_name("vzdump-lxc-100-2025_01_01-00_00_00.vma").is_none());
    }

    #[test]
    fn notes_templates() {
        assert!(check_template("driver {{guestname}} {{vmid}}").is_ok());
        assert_eq!(
            check_template("{{nope}}").unwrap_err(),
            "found unknown: variable 'nope' at char 2"
        );
        assert_eq!(notes("a\\nb {{vmid}}", "g", "pve", 101), "a\nb 101");
    }
}
