//! The node side of a `pve` node in pull mode: phase 2 of seed 001's two-phase
//! self-configure (`driver config pve`, run by the node's cloud-init after `config fetch`
//! and `config apply`, its phase 1). The node fetches its config from the controller's
//! `GET /config/{identity}` and sets itself up as a PVE host with the steps a push-mode
//! parent runs over SSH ([`NestedHost`]'s, here through this machine's own shell), ending
//! in the state that parent leaves: this driver, the site-config files and the secrets
//! scoped to the node in its folder, PVE (on a simulated host, the nested simulator)
//! answering, the child driver's API token and node file. The parent then downloads the
//! images the node's guests need and delegates to it as in push mode.
//!
//! The steps are named as in the original's `pve-config` scenario. The outcome is a marker
//! the parent polls over SSH, in the state folder: `success.json`, or `failure.json` naming
//! the step that failed and why; `status` names the step under way.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use engine::executor::ActionError;
use engine::node_config::PveSettings;
use engine::site_config::pve_config::ChildAuth;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::fetch::fetch_config;
use crate::host::{setup, Host, Report, Shell};
use crate::nested::{Guest, InstalledPve, NestedHost, SimulatedPve};
use crate::pve::tls::TlsTrust;

/// The markers, in the state folder.
pub const SUCCESS: &str = "success.json";
pub const FAILURE: &str = "failure.json";
pub const STATUS: &str = "status";

/// How the node becomes a PVE host, as its parent says in its user-data (`pve-host.json`):
/// its image, and a nested simulator (its guest of a simulated host) or Proxmox VE.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PveHostFile {
    pub image: Option<String>,
    pub host: HostKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    Simulated(SimulatedPve),
    Installed,
}

/// One run of phase 2.
pub struct PveConfig<'a> {
    pub server: &'a str,
    pub trust: TlsTrust,
    pub token: Option<&'a str>,
    pub identity: &'a str,
    /// The folder the child driver, its site-config and its state go in (where a push-mode
    /// parent puts them): on a simulated host the guest's folder, else `/var/lib/driver`.
    pub dir: &'a Path,
    /// This driver's binary, put in `dir` as `driver` unless it is that file.
    pub binary: &'a Path,
    pub host: PveHostFile,
    /// The spec's `config.pve`.
    pub settings: PveSettings,
    /// This node's address (its PVE's API and node file name it).
    pub address: String,
    /// Where the markers go.
    pub state_dir: &'a Path,
    /// Each step's time limit.
    pub step_timeout: Duration,
}

/// A failed step: its name (the original's phase name) and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct StepFailed {
    pub step: &'static str,
    pub message: String,
}

/// The folder a `pve` node's phase 2 works in, when not told (the pull-mode folder of a
/// real guest, which is where a push-mode parent puts the child driver too).
pub fn default_dir(host: &HostKind) -> Option<&'static str> {
    match host {
        HostKind::Simulated(_) => None,
        HostKind::Installed => Some(crate::nested::installed::DEFAULT_DIR),
    }
}

/// Runs the steps in `o.dir` (the process's working folder becomes it: the host steps'
/// commands and paths are relative to the child driver's folder, as over SSH), then writes
/// the marker. `log` gets each step's progress.
pub async fn run(
    o: &PveConfig<'_>,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(), StepFailed> {
    // Before the steps move into `o.dir`.
    let state_dir = std::path::absolute(o.state_dir).unwrap_or_else(|_| o.state_dir.into());
    let marker = |name: &str, v: &Value| write_marker(&state_dir, name, &format!("{v:#}\n"));
    // A run again (after a failure, or told of a new controller) starts clean.
    for stale in [SUCCESS, FAILURE] {
        let _ = std::fs::remove_file(state_dir.join(stale));
    }
    let outcome = steps(o, &state_dir, log).await;
    let written = match &outcome {
        Ok(()) => marker(
            SUCCESS,
            &json!({"phase": "pve-config", "status": "success", "identity": o.identity,
                "timestamp": engine::clock::now(), "pve_installed": true,
                "bridge_configured": true, "api_token_created": true,
                "node_config_generated": true}),
        ),
        Err(f) => marker(
            FAILURE,
            &json!({"phase": "pve-config", "status": "failed", "identity": o.identity,
                "failed_at": f.step, "timestamp": engine::clock::now(),
                "error": f.message.chars().take(2000).collect::<String>()}),
        ),
    };
    match (outcome, written) {
        (Err(f), _) => Err(f),
        (Ok(()), Err(message)) => Err(StepFailed {
            step: "write_marker",
            message,
        }),
        (Ok(()), Ok(())) => Ok(()),
    }
}

async fn steps(
    o: &PveConfig<'_>,
    state_dir: &Path,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(), StepFailed> {
    let status = |step: &'static str| {
        log(format!("pve-config: {step}"));
        // Progress only: the parent goes by the markers.
        let _ = write_marker(state_dir, STATUS, &format!("{step}\n"));
    };
    let failed = |step: &'static str| {
        move |e: ActionError| StepFailed {
            step,
            message: e.to_string(),
        }
    };

    status("bootstrap");
    bootstrap(o).map_err(failed("bootstrap"))?;
    let nested = match &o.host.host {
        HostKind::Simulated(s) => NestedHost::Simulated(s.clone()),
        HostKind::Installed => NestedHost::Installed(InstalledPve {
            dir: o.dir.display().to_string(),
            ..InstalledPve::default()
        }),
    };
    let h = nested.host(Shell::Local, o.identity);
    let guest = Guest {
        name: o.identity,
        ip: &o.address,
        image: o.host.image.as_deref(),
        subtree: None,
        timeout: o.step_timeout,
        log,
    };

    status("fetch_config");
    let auth = fetch(o, &nested, &h)
        .await
        .map_err(failed("fetch_config"))?;

    status("ensure_pve");
    ensure_pve(&nested, &h, &guest)
        .await
        .map_err(failed("ensure_pve"))?;

    status("setup_pve");
    nested
        .setup_pve(&h, &guest)
        .await
        .map_err(failed("setup_pve"))?;
    pve_settings(&nested, &h, &guest, &o.settings)
        .await
        .map_err(failed("setup_pve"))?;

    status("configure_bridge");
    nested
        .configure_bridge(&h, &guest)
        .await
        .map_err(failed("configure_bridge"))?;

    status("create_api_token");
    nested
        .create_api_token(&h, &guest, &auth)
        .await
        .map_err(failed("create_api_token"))?;

    status("write_marker");
    Ok(())
}

fn fail(msg: impl Into<String>) -> ActionError {
    ActionError::new(msg)
}

/// This driver in the folder (where the parent's delegation runs `./driver`), and the
/// process working there.
fn bootstrap(o: &PveConfig<'_>) -> Result<(), ActionError> {
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
    std::fs::create_dir_all(o.dir).map_err(|e| io(&o.dir.display().to_string(), e))?;
    std::env::set_current_dir(o.dir).map_err(|e| io(&o.dir.display().to_string(), e))?;
    let target = PathBuf::from("driver");
    let same = match (o.binary.canonicalize(), target.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        // A hard link where it can be (a debug build is large), else a copy; then renamed
        // into place, so a driver running from the folder is never half written.
        let tmp = PathBuf::from(".driver.tmp");
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(o.binary, &tmp).is_err() {
            std::fs::copy(o.binary, &tmp).map_err(|e| io("copying this driver", e))?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| io("driver", e))?;
    }
    Ok(())
}

/// A file name the controller sent, as a path inside `site-config/`: relative, plain
/// components, a YAML file (what `SiteConfig::child_files` lists).
fn site_file(rel: &str) -> Option<&str> {
    let p = Path::new(rel);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    let yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
    (plain && yaml && !rel.is_empty() && !rel.starts_with("nodes/") && !rel.contains("secrets"))
        .then_some(rel)
}

/// `GET /config/{identity}`: the site-config files written into the folder's
/// `site-config/`; the node's scoped secrets returned (written with its API token).
async fn fetch(o: &PveConfig<'_>, nested: &NestedHost, h: &Host) -> Result<ChildAuth, ActionError> {
    let text = fetch_config(o.server, o.identity, o.token, &o.trust)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if doc["identity"].as_str() != Some(o.identity) {
        return Err(fail(format!(
            "the controller answered the config of {}, not of '{}'",
            doc["identity"], o.identity
        )));
    }
    let files = doc["files"]
        .as_object()
        .ok_or_else(|| fail("the config has no `files`"))?;
    let h = nested.files(h);
    for (rel, text) in files {
        let (Some(rel), Some(text)) = (site_file(rel), text.as_str()) else {
            return Err(fail(format!(
                "the config names a file driver does not write: {rel:?}"
            )));
        };
        h.write(&format!("{}/site-config/{rel}", nested.dir()), text, 0o644)
            .await?;
    }
    ChildAuth::from_json(&doc["secrets"])
        .ok_or_else(|| fail("the config's `secrets` are not what driver serves"))
}

/// Proxmox VE is there: on a simulated host its stand-in, the nested simulator's service
/// (written when the image lacks it, as `install_pve` does); on a real one it must be.
async fn ensure_pve(nested: &NestedHost, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
    match nested {
        NestedHost::Simulated(s) => s.install(h, guest).await,
        NestedHost::Installed(_) => match h.has_pve().await? {
            Some(v) => {
                guest.log(v);
                Ok(())
            }
            None => Err(fail(format!(
                "Proxmox VE is not installed on {}, and a pve node in pull mode installs none \
                 on a real host (the install reboots it mid-way); give it an image with PVE \
                 (images/NAME.yaml `pve: true`, e.g. debian-13-pve) or `execution: {{mode: \
                 push}}`, whose install_pve step installs it",
                guest.name
            ))),
        },
    }
}

/// The spec's `config.pve`.
async fn pve_settings(
    nested: &NestedHost,
    h: &Host,
    guest: &Guest<'_>,
    settings: &PveSettings,
) -> Result<(), ActionError> {
    if !settings.remove_subscription_nag {
        return Ok(());
    }
    match nested {
        NestedHost::Simulated(_) => {
            guest.log(
                "config.pve.remove_subscription_nag: a simulated PVE has no web UI, so no \
                 subscription notice to remove",
            );
        }
        NestedHost::Installed(_) => {
            let mut r = Report::default();
            setup::remove_nag(h, false, &mut r).await?;
            for c in r.changed {
                guest.log(c);
            }
        }
    }
    Ok(())
}

/// Writes `text` as `name` in `dir`, all at once (a reader never sees half of it).
fn write_marker(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_site_config_files_driver_serves_are_written() {
        for ok in ["site.yaml", "presets/vm-small.yaml", "images/pve-9.yml"] {
            assert_eq!(site_file(ok), Some(ok));
        }
        for bad in [
            "../x.yaml",
            "/etc/x.yaml",
            "a/../../b.yaml",
            "secrets.yaml",
            "nodes/hv.yaml",
            "run.sh",
            "",
        ] {
            assert_eq!(site_file(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_host_file_says_how_the_node_becomes_a_pve_host() {
        let f: PveHostFile = serde_json::from_str(
            r#"{"image": "pve-9", "host": {"simulated": {"guest_net": [127, 78],
                "guest_ssh_port": 2222, "time_scale": 0.01, "faults": null,
                "images_with_pve": ["pve-9"]}}}"#,
        )
        .unwrap();
        let HostKind::Simulated(s) = &f.host else {
            panic!("{f:?}")
        };
        assert_eq!(s.guest_net, [127, 78]);
        assert_eq!(default_dir(&f.host), None);
        let f: PveHostFile =
            serde_json::from_str(r#"{"image": null, "host": "installed"}"#).unwrap();
        assert_eq!(default_dir(&f.host), Some("/var/lib/driver"));
    }
}
