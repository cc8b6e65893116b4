//! The built-in simulator of a `simulated: true` host: one per simulator folder
//! (`pvesim-HOST` in the state folder), shared by every run that uses the folder at the
//! same time. The first run starts it as a background process (`driver sim serve
//! --shared`), the others connect to it, and the last one to leave stops it (see
//! `sim::folder` for the locks that make this safe). Its output goes to `pvesim.log` in
//! the folder, never to a run's stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Failure;

/// How long a run waits for the simulator's folder (another run starting or stopping it)
/// and for a simulator it started to answer.
const WAIT: Duration = Duration::from_secs(120);

/// What the simulator is started with when this run is the one to start it.
pub struct Settings<'a> {
    pub node: &'a str,
    pub time_scale: f64,
    pub guest_ssh_port: u16,
    /// `simulated: bare`: a fresh install instead of a seeded one.
    pub bare: bool,
    /// `simulated: {cluster_nodes: N}`: a cluster of N nodes (1: a standalone node).
    pub cluster_nodes: u32,
}

/// A run's use of its host's simulator. [`SimLease::shutdown`] leaves it (the last run
/// stops it and waits until it has saved its state); dropping it does the same.
pub struct SimLease {
    lease: Option<sim::folder::Lease>,
}

impl SimLease {
    pub fn endpoint(&self) -> Option<&sim::folder::Endpoint> {
        self.lease.as_ref().map(sim::folder::Lease::endpoint)
    }

    /// Leaves the simulator (stopping it when this was its last run).
    pub async fn shutdown(mut self) {
        if let Some(lease) = self.lease.take() {
            // Waiting for a stopping simulator blocks: off the async workers.
            let left = tokio::task::spawn_blocking(move || lease.release(WAIT)).await;
            if let Ok(Err(e)) = left {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for SimLease {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(e) = lease.release(WAIT) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Connects to the simulator serving `dir`, starting it when none does.
pub async fn attach(dir: &Path, settings: &Settings<'_>) -> Result<SimLease, Failure> {
    let exe = std::env::current_exe().map_err(|e| {
        Failure::Run(Some(miette::miette!(
            "cannot find this driver's binary to start the PVE simulator: {e}"
        )))
    })?;
    let command = serve_command(&exe, dir, settings);
    let dir_owned = dir.to_path_buf();
    let lease = tokio::task::spawn_blocking(move || {
        sim::folder::attach(&dir_owned, WAIT, || spawn(command, &dir_owned))
    })
    .await
    .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the PVE simulator: {e}"))))?
    .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the PVE simulator: {e}"))))?;
    let ep = lease.endpoint();
    let nodes = ep.cluster_nodes.len().max(1);
    if !lease.started && nodes != settings.cluster_nodes.max(1) as usize {
        // Another run started it (from the node file as it was then): its nodes hold for both.
        tracing::warn!(
            "the simulator in {} (pid {}) has {nodes} node(s), not the {} the node file says: \
             another run started it; the node file's holds once no run uses it",
            dir.display(),
            ep.pid,
            settings.cluster_nodes.max(1)
        );
    }
    if !lease.started && ep.time_scale != settings.time_scale {
        // Another run started it: its settings hold for both.
        tracing::warn!(
            "the simulator in {} (pid {}) runs at time scale {}, not {}: another run started it",
            dir.display(),
            ep.pid,
            ep.time_scale,
            settings.time_scale
        );
    }
    Ok(SimLease { lease: Some(lease) })
}

fn serve_command(exe: &Path, dir: &Path, s: &Settings<'_>) -> Command {
    let mut c = Command::new(exe);
    c.args([
        "sim",
        "serve",
        "--shared",
        "--bind",
        "127.0.0.1:0",
        "--node",
    ])
    .arg(s.node)
    .arg("--state-dir")
    .arg(dir)
    .arg("--time-scale")
    .arg(s.time_scale.to_string())
    .arg("--guest-ssh-port")
    .arg(s.guest_ssh_port.to_string())
    .args(s.bare.then_some("--bare"))
    .arg("--cluster-nodes")
    .arg(s.cluster_nodes.max(1).to_string())
    // Settings of a `driver sim serve` a user runs, not of this one (PVESIM_FAULTS is
    // this run's and goes on).
    .env_remove("PVESIM_TOKEN")
    .env_remove("PVESIM_ROOT_PASSWORD");
    c
}

/// Starts the simulator in the background: its own process group (a Ctrl-C meant for this
/// run must not reach what other runs use), no stdin, output to its log.
fn spawn(mut command: Command, dir: &Path) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let log_path: PathBuf = dir.join(sim::folder::LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let log2 = log.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
}
