//! `driver serve`: runs the controller (crate `controller`) in the foreground, prints where
//! to reach it and what to pin, reloads on SIGHUP and stops cleanly on SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use controller::{CertOrigin, ConfigGrant, Controller, ControllerError, ServeConfig, SpecSource};
use engine::secrets::{IdentityEnv, Secret};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

use super::{discover_site, Failure};
use crate::cli::serve::ServeArgs;

/// `NAME=VALUE`, both non-empty.
fn pair(flag: &str, s: &str) -> Result<(String, String), Failure> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => Err(Failure::usage(miette::miette!(
            "{flag} '{s}': expected NAME=VALUE"
        ))),
    }
}

#[derive(Serialize)]
struct RepoOut {
    name: String,
    source: String,
    url: String,
    working: String,
    dirty: bool,
}

#[derive(Serialize)]
struct Listening<'a> {
    verb: &'static str,
    event: &'static str,
    url: String,
    fingerprint: &'a str,
    /// "self-signed" or the certificate file.
    cert: String,
    specs: Vec<String>,
    nodes: Vec<String>,
    /// The `pve` nodes served `/config`.
    configs: Vec<String>,
    repos: Vec<RepoOut>,
    snapshot_dir: Option<String>,
}

#[derive(Serialize)]
struct Event {
    verb: &'static str,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    specs: Option<usize>,
    /// After a reload: the repos' new snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    repos: Option<Vec<RepoOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The repos served now, as `listening` and `reloaded` show them.
fn repos_out(c: &Controller) -> Vec<RepoOut> {
    c.repos()
        .into_iter()
        .map(|r| RepoOut {
            name: r.name,
            source: r.source.display().to_string(),
            url: r.url,
            working: r.working,
            dirty: r.dirty,
        })
        .collect()
}

/// `boot.git (_working 0123456789ab, uncommitted changes)`.
fn repo_line(r: &RepoOut) -> String {
    format!(
        "{} (_working {}{})",
        r.url,
        &r.working[..r.working.len().min(12)],
        if r.dirty { ", uncommitted changes" } else { "" }
    )
}

fn failure(e: ControllerError) -> Failure {
    match e {
        ControllerError::BadRepoName(_)
        | ControllerError::NoRepoToken
        | ControllerError::Repo { .. } => Failure::usage(miette::miette!("{e}")),
        ControllerError::Config(c) => super::config::config_failure(c),
        e => Failure::Run(Some(miette::miette!("{e}"))),
    }
}

pub fn run(a: &ServeArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let mut repos = Vec::new();
    for r in &a.repos {
        let (name, path) = pair("--repo", r)?;
        repos.push((name, PathBuf::from(path)));
    }
    let mut nodes = Vec::new();
    for n in &a.nodes {
        nodes.push(pair("--node", n)?);
    }
    let mut configs: Vec<ConfigGrant> = Vec::new();
    for n in &a.pve_nodes {
        let (name, spec) = pair("--pve-node", n)?;
        configs.push(ConfigGrant {
            node: name.clone(),
            below: Vec::new(),
        });
        nodes.push((name, spec));
    }
    for b in &a.below {
        let (pve, node) = pair("--below", b)?;
        let spec = nodes
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                Failure::usage(miette::miette!(
                    "--below {b}: '{node}' is no --node or --pve-node (its spec says which \
                     token it wants)"
                ))
            })?;
        let grant = configs.iter_mut().find(|g| g.node == pve).ok_or_else(|| {
            Failure::usage(miette::miette!("--below {b}: '{pve}' is no --pve-node"))
        })?;
        grant.below.push((node, spec));
    }
    let config = ServeConfig {
        bind: SocketAddr::new(a.bind, a.port),
        cert: a.cert.clone().zip(a.key.clone()),
        repo_token: a.repo_token.clone().map(Secret::new),
        repos,
        specs: SpecSource {
            site: discover_site(site_flag)?,
            identities: IdentityEnv::from_process(),
            nodes,
            configs,
        },
        drain: Duration::from_secs(a.drain),
        driver_binary: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    rt.block_on(serve(config, a.json_output))
}

async fn serve(config: ServeConfig, json: bool) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Run(Some(miette::miette!("signal handler: {e}")));
    // Installed before the controller starts, so a signal sent once "listening" is printed
    // is never the default action (SIGHUP would otherwise end the process).
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let c = Controller::start(config).await.map_err(failure)?;
    announce(&c, json);
    loop {
        tokio::select! {
            _ = hup.recv() => match c.reload().await {
                Ok(n) => {
                    let repos = repos_out(&c);
                    let mut text = format!("reloaded the site-config: {n} spec(s)");
                    for r in &repos {
                        text.push_str(&format!("\n  repo re-snapshotted: {}", repo_line(r)));
                    }
                    say(json, "reloaded", Some(n), Some(repos), None, &text)
                }
                Err(e) => say(json, "reload_failed", None, None, Some(e.to_string()),
                    &format!("reload failed, still serving the previous site-config and repos: {e}")),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let dir = c.snapshot_dir().map(Path::to_path_buf);
    c.shutdown().await.map_err(failure)?;
    let note = match dir {
        Some(d) => format!("stopped; removed {}", d.display()),
        None => "stopped".to_string(),
    };
    say(json, "stopped", None, None, None, &note);
    Ok(())
}

fn say(
    json: bool,
    event: &'static str,
    specs: Option<usize>,
    repos: Option<Vec<RepoOut>>,
    error: Option<String>,
    text: &str,
) {
    if json {
        crate::render::json::line(&Event {
            verb: "serve",
            event,
            specs,
            repos,
            error,
        });
    } else {
        crate::outln!("{text}");
    }
}

fn announce(c: &Controller, json: bool) {
    let (specs, nodes) = c.spec_names();
    let cert = match c.cert_origin() {
        CertOrigin::SelfSigned => "self-signed".to_string(),
        CertOrigin::File(f) => f.display().to_string(),
    };
    let repos = repos_out(c);
    let snapshot_dir = c.snapshot_dir().map(|d| d.display().to_string());
    if json {
        crate::render::json::line(&Listening {
            verb: "serve",
            event: "listening",
            url: c.url(),
            fingerprint: c.fingerprint(),
            cert,
            specs,
            nodes,
            configs: c.config_names(),
            repos,
            snapshot_dir,
        });
        return;
    }
    crate::outln!("controller listening on {}", c.url());
    crate::outln!("  fingerprint: {} ({cert})", c.fingerprint());
    crate::outln!("  specs:       {}", specs.join(", "));
    if !nodes.is_empty() {
        crate::outln!("  nodes:       {}", nodes.join(", "));
    }
    let configs = c.config_names();
    if !configs.is_empty() {
        crate::outln!("  configs:     {} (/config/NAME)", configs.join(", "));
    }
    for r in &repos {
        crate::outln!("  repo:        {} from {}", repo_line(r), r.source);
    }
    if let Some(d) = &snapshot_dir {
        crate::outln!("  snapshots:   {d} (removed at stop)");
    }
    crate::outln!(
        "SIGHUP reloads the site-config and re-snapshots the repos; SIGTERM or Ctrl-C stops."
    );
}
