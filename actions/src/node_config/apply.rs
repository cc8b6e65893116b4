//! Applying the items of a spec: each checked first and changed only when it is not so
//! already (so a second apply changes nothing), stopping at the first failure, which the
//! report names. On [`Target::Machine`] with the system's tools (dpkg-query / apt-get,
//! getent / useradd, systemctl, chown); on [`Target::Root`] inside the folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use engine::node_config::Item;
use serde::Serialize;

use super::{NodeConfigError, Target};

#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub item: String,
    pub kind: &'static str,
    /// "changed", "unchanged", or with --dry-run "would change".
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failed {
    pub item: String,
    pub error: String,
}

/// What `complete.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub success: bool,
    pub identity: String,
    pub spec: String,
    /// Applied inside a folder, not to the machine.
    pub simulated: bool,
    pub root: Option<String>,
    pub dry_run: bool,
    pub finished_at: String,
    pub items: Vec<Applied>,
    pub changed: usize,
    pub failed: Option<Failed>,
    /// The ansible checkout's playbook, run after the items; `None` when there is none.
    pub playbook: Option<super::PlaybookReport>,
}

/// Applies `items` in order; never returns early without a report.
pub fn apply(
    items: &[Item],
    target: &Target,
    dry_run: bool,
    identity: &str,
    spec: &str,
) -> ApplyReport {
    let mut report = ApplyReport {
        success: true,
        identity: identity.to_string(),
        spec: spec.to_string(),
        simulated: matches!(target, Target::Root(_)),
        root: match target {
            Target::Root(r) => Some(r.display().to_string()),
            Target::Machine => None,
        },
        dry_run,
        finished_at: String::new(),
        items: Vec::new(),
        changed: 0,
        failed: None,
        playbook: None,
    };
    for item in items {
        let result = match target {
            Target::Machine => machine(item, dry_run),
            Target::Root(root) => in_root(root, item, dry_run),
        };
        match result {
            Ok(changed) => {
                let outcome = match (changed, dry_run) {
                    (false, _) => "unchanged",
                    (true, false) => "changed",
                    (true, true) => "would change",
                };
                report.changed += usize::from(changed);
                tracing::info!("{}: {outcome}", item.label());
                report.items.push(Applied {
                    item: item.label(),
                    kind: item.kind(),
                    outcome,
                });
            }
            Err(e) => {
                report.success = false;
                report.failed = Some(Failed {
                    item: item.label(),
                    error: e.to_string(),
                });
                break;
            }
        }
    }
    report.finished_at = engine::clock::now();
    report
}

fn item_err(item: &Item, message: impl Into<String>) -> NodeConfigError {
    NodeConfigError::Item {
        item: item.label(),
        message: message.into(),
    }
}

fn run(item: &Item, program: &str, args: &[&str]) -> Result<std::process::Output, NodeConfigError> {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| item_err(item, format!("cannot run {program}: {e}")))
}

fn must(item: &Item, program: &str, args: &[&str]) -> Result<(), NodeConfigError> {
    let out = run(item, program, args)?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(item_err(
        item,
        format!(
            "{program} {} failed ({}): {last}",
            args.join(" "),
            out.status
        ),
    ))
}

/// Is the file already as wanted? Else (unless dry) write it.
fn file(path: &Path, content: &str, mode: u32, dry_run: bool) -> Result<bool, NodeConfigError> {
    let same = std::fs::read(path).is_ok_and(|c| c == content.as_bytes())
        && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same || dry_run {
        return Ok(!same);
    }
    let werr = |source| NodeConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("driver-tmp");
    std::fs::write(&tmp, content).map_err(werr)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok(true)
}

fn machine(item: &Item, dry_run: bool) -> Result<bool, NodeConfigError> {
    match item {
        Item::Package(p) => {
            let out = run(item, "dpkg-query", &["-W", "-f=${Status}", p])?;
            let installed = String::from_utf8_lossy(&out.stdout).ends_with(" installed");
            if !installed && !dry_run {
                must(
                    item,
                    "apt-get",
                    &["install", "-y", "--no-install-recommends", p],
                )?;
            }
            Ok(!installed)
        }
        Item::User { name } => {
            let present = run(item, "getent", &["passwd", name])?.status.success();
            if !present && !dry_run {
                must(
                    item,
                    "useradd",
                    &["--create-home", "--shell", "/bin/bash", name],
                )?;
            }
            Ok(!present)
        }
        Item::File {
            path,
            content,
            mode,
            owner,
        } => {
            let changed = file(Path::new(path), content, *mode, dry_run)?;
            if changed && !dry_run {
                if let Some(o) = owner {
                    let parent = Path::new(path).parent().map(|p| p.display().to_string());
                    for p in parent.iter().map(String::as_str).chain([path.as_str()]) {
                        must(item, "chown", &[&format!("{o}:{o}"), p])?;
                    }
                }
            }
            Ok(changed)
        }
        Item::Service { name, enable } => {
            let out = run(item, "systemctl", &["is-enabled", name])?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let is_on = state == "enabled";
            let wanted_off_already = !*enable && (state != "enabled");
            if (*enable && is_on) || wanted_off_already {
                return Ok(false);
            }
            if !dry_run {
                let verb = if *enable { "enable" } else { "disable" };
                must(item, "systemctl", &[verb, "--now", name])?;
            }
            Ok(true)
        }
    }
}

/// `root` + an absolute path.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn in_root(root: &Path, item: &Item, dry_run: bool) -> Result<bool, NodeConfigError> {
    let marker = |rel: &str, text: &str| file(&under(root, rel), text, 0o644, dry_run);
    match item {
        Item::Package(p) => marker(
            &format!("/var/lib/driver/packages/{p}"),
            "installed (simulated)\n",
        ),
        Item::User { name } => {
            let passwd = under(root, "/etc/passwd");
            let text = std::fs::read_to_string(&passwd).unwrap_or_default();
            if text.lines().any(|l| l.split(':').next() == Some(name)) {
                return Ok(false);
            }
            if dry_run {
                return Ok(true);
            }
            let uid = 1000 + text.lines().count();
            let line = format!("{name}:x:{uid}:{uid}::/home/{name}:/bin/bash\n");
            file(&passwd, &(text + &line), 0o644, false)?;
            let home = under(root, &format!("/home/{name}"));
            std::fs::create_dir_all(&home)
                .map_err(|source| NodeConfigError::Write { path: home, source })?;
            Ok(true)
        }
        Item::File {
            path,
            content,
            mode,
            ..
        } => file(&under(root, path), content, *mode, dry_run),
        Item::Service { name, enable } => {
            let link = under(
                root,
                &format!("/etc/systemd/system/multi-user.target.wants/{name}.service"),
            );
            match (enable, link.exists()) {
                (true, true) | (false, false) => Ok(false),
                (true, false) => marker(
                    &format!("/etc/systemd/system/multi-user.target.wants/{name}.service"),
                    "enabled (simulated)\n",
                ),
                (false, true) => {
                    if !dry_run {
                        std::fs::remove_file(&link).map_err(|source| NodeConfigError::Write {
                            path: link.clone(),
                            source,
                        })?;
                    }
                    Ok(true)
                }
            }
        }
    }
}
