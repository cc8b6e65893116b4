//! Cloud-init in a simulated guest: the user-data of its `cicustom: user=STORAGE:snippets/F`
//! (read from the simulator's storage folder when the guest starts, as qemu-server reads the
//! snippet into the guest's cloud-init drive) is run once per instance at its boot moment,
//! as cloud-init's modules run in a VM: `write_files` into the guest's folder (its filesystem
//! root) and `runcmd` as one shell script in the folder, with the guest's `HOME` and process
//! tags (so its processes end with the guest). Output goes to
//! `var/log/cloud-init-output.log` in the folder.
//!
//! The instance is the user-data's SHA-256 (PVE derives the NoCloud instance-id from the
//! user-data too), so changed user-data runs again at the next boot, the same one never twice.
//! What a simulated guest cannot do (other modules: `packages`, `users`, `hostname`, ...) is
//! not done, and the log says so; its SSH logins come from the guest's `ciuser`/`sshkeys`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::guest::GuestCtx;

/// Where the script, the log and the instance record go, in the guest's folder.
const SCRIPT: &str = "var/lib/cloud/instance/scripts/runcmd";
const LOG: &str = "var/log/cloud-init-output.log";
const INSTANCE: &str = "var/lib/cloud/data/instance-id";
/// The modules this simulation runs; every other top-level key is reported as not simulated.
const SIMULATED: &[&str] = &["write_files", "runcmd"];

/// The volume id of a guest config's `cicustom` user part (`user=local:snippets/x.yaml,...`).
pub(crate) fn user_volume(cicustom: &str) -> Option<&str> {
    cicustom
        .split(',')
        .find_map(|p| p.trim().strip_prefix("user="))
}

/// The file of a snippet volume (`local:snippets/NAME`) under the simulator's storage folder.
/// Only a plain file name in a storage's `snippets` folder (qemu-server refuses others).
pub(crate) fn snippet_path(storage_root: &Path, volid: &str) -> Result<PathBuf, String> {
    let (storage, rest) = volid
        .split_once(':')
        .ok_or_else(|| format!("{volid}: not a volume id"))?;
    let name = rest
        .strip_prefix("snippets/")
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
        .ok_or_else(|| format!("{volid} is not in the snippets directory"))?;
    if storage != "local" {
        return Err(format!(
            "{volid}: storage '{storage}' is not a directory storage"
        ));
    }
    Ok(storage_root.join(storage).join("snippets").join(name))
}

/// `path` of a `write_files` entry inside the guest's folder; `None` when it would leave it.
fn inside(dir: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// POSIX shell quoting of one word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One `runcmd` entry as a shell line (a list is a command and its arguments, a string a
/// shell line, as cloud-init has it).
fn command_line(entry: &Yaml) -> Option<String> {
    match entry {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Array(a) => Some(
            a.iter()
                .map(|w| match w {
                    Yaml::String(s) => quote(s),
                    Yaml::Integer(i) => i.to_string(),
                    _ => quote(""),
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// Writes the `write_files` entries; the lines to log.
fn write_files(dir: &Path, entries: &Yaml, log: &mut Vec<String>) {
    for f in entries.as_vec().into_iter().flatten() {
        let Some(path) = f["path"].as_str() else {
            log.push("write_files: an entry without a path: skipped".into());
            continue;
        };
        let Some(target) = inside(dir, path) else {
            log.push(format!("write_files: {path}: leaves the guest: skipped"));
            continue;
        };
        if f["encoding"].as_str().is_some_and(|e| e != "text/plain") {
            log.push(format!(
                "write_files: {path}: encoding not simulated: skipped"
            ));
            continue;
        }
        let content = f["content"].as_str().unwrap_or("");
        let mode = f["permissions"]
            .as_str()
            .and_then(|p| u32::from_str_radix(p.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o644);
        let written = (|| {
            use std::os::unix::fs::PermissionsExt;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, content)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        })();
        match written {
            Ok(()) => log.push(format!("write_files: {path} ({mode:o})")),
            Err(e) => log.push(format!("write_files: {path}: {e}")),
        }
    }
}

/// Runs the guest's user-data (see the module docs) at its boot moment, unless this
/// instance ran already. Never fails the boot: problems go to the guest's log.
pub(super) fn run(ctx: &GuestCtx) {
    let Some(user_data) = ctx.user_data.as_deref() else {
        return;
    };
    // Absolute: `HOME` must name the folder from inside it too (a nested simulator's
    // guest folders are relative to its own).
    let dir = &std::path::absolute(&ctx.dir).unwrap_or_else(|_| ctx.dir.clone());
    let instance = sha256_hex(user_data);
    let record = dir.join(INSTANCE);
    if std::fs::read_to_string(&record).is_ok_and(|t| t.trim() == instance) {
        return;
    }
    let mut lines = vec![format!(
        "pvesim: simulated cloud-init, instance {}",
        &instance[..16]
    )];
    let doc = match YamlLoader::load_from_str(user_data) {
        Ok(mut docs) if !docs.is_empty() => docs.swap_remove(0),
        Ok(_) => Yaml::Null,
        Err(e) => {
            lines.push(format!("user-data is not YAML: {e}"));
            Yaml::Null
        }
    };
    if !user_data.starts_with("#cloud-config") {
        lines.push("user-data is not #cloud-config: nothing run".into());
    }
    let mut script = String::from("#!/bin/sh\n");
    if let (Some(map), true) = (doc.as_hash(), user_data.starts_with("#cloud-config")) {
        let skipped: Vec<&str> = map
            .keys()
            .filter_map(Yaml::as_str)
            .filter(|k| !SIMULATED.contains(k))
            .collect();
        if !skipped.is_empty() {
            lines.push(format!(
                "not simulated (a simulated guest cannot do them): {}",
                skipped.join(", ")
            ));
        }
        write_files(dir, &doc["write_files"], &mut lines);
        for entry in doc["runcmd"].as_vec().into_iter().flatten() {
            match command_line(entry) {
                Some(l) => {
                    script.push_str(&l);
                    script.push('\n');
                }
                None => lines.push("runcmd: an entry that is no command: skipped".into()),
            }
        }
    }
    let log_path = dir.join(LOG);
    let opened = (|| {
        if let Some(p) = log_path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        for l in &lines {
            writeln!(log, "{l}")?;
        }
        let script_path = dir.join(SCRIPT);
        if let Some(p) = script_path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&script_path, &script)?;
        if let Some(p) = record.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&record, format!("{instance}\n"))?;
        Ok::<_, std::io::Error>(log)
    })();
    let log = match opened {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(vmid = ctx.vmid, "pvesim: cloud-init: {e}");
            return;
        }
    };
    ctx.spawn_script(SCRIPT, log, "cloud-init runcmd");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_volumes_stay_in_the_snippets_folder() {
        let root = Path::new("/s");
        assert_eq!(
            snippet_path(root, "local:snippets/a.yaml").unwrap(),
            Path::new("/s/local/snippets/a.yaml")
        );
        for bad in [
            "local:snippets/../x",
            "local:iso/a.iso",
            "local:snippets/",
            "nocolon",
            "local:snippets/a/b",
        ] {
            assert!(snippet_path(root, bad).is_err(), "{bad}");
        }
        assert_eq!(
            user_volume("meta=local:snippets/m,user=local:snippets/u.yaml"),
            Some("local:snippets/u.yaml")
        );
    }

    #[test]
    fn written_files_stay_in_the_guest() {
        let d = Path::new("/g");
        assert_eq!(inside(d, "/etc/x").unwrap(), Path::new("/g/etc/x"));
        assert!(inside(d, "/etc/../../x").is_none());
    }

    #[test]
    fn runcmd_lists_are_quoted() {
        let y = &YamlLoader::load_from_str("- [sh, -c, \"echo 'hi'\"]\n- ls -l\n").unwrap()[0];
        let lines: Vec<String> = y
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(command_line)
            .collect();
        assert_eq!(lines, ["'sh' '-c' 'echo '\\''hi'\\'''", "ls -l"]);
    }
}
