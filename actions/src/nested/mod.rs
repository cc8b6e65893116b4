//! Nested PVE nodes: turning a `pve` guest into a PVE host (bootstrap,
//! secrets, API token, bridge, images) and handing it its subtree
//! (delegation to a copy of this driver running on it, over SSH).
//!
//! What is the same on every kind of host lives here: the driver binary and
//! the site-config subset uploaded, the child's SSH key, the delegation
//! itself. How the guest *is* a PVE host differs:
//! - [`simulated`]: on a simulated host the guest runs a nested pvesim,
//!   started by the uploaded driver;
//! - [`installed`]: on a real host the guest runs Proxmox VE (installed in
//!   its image, or by its `install_pve` step onto the plain Debian it runs)
//!   and is set up through PVE's own command line tools.
//!
//! `install_pve` is planned only for a `pve` node whose image lacks PVE
//! (site-config `images/NAME.yaml` without `pve: true`; `Plan::install_pve`).
//!
//! Each step checks first, so a resumed run redoes only what is missing.
//! Everything the child needs is written as files in the guest (never put
//! in a command line): its site-config subset, secrets limited to its own
//! API token, SSH key and the pull-mode tokens of its subtree
//! (`engine::site_config::pve_config::ChildAuth`), and the subtree.
//!
//! A `pve` node in pull mode does the same to itself ([`NestedHost`]'s steps, run on the
//! node by `crate::node_config::pve`), from what it fetches from the run's controller; the
//! parent then downloads its images and delegates to it as here.

pub mod installed;
pub mod simulated;
mod steps;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::delegation::{ChildStream, DelegationError};
use engine::executor::{ActionCall, ActionError, ActionErrorKind, ActionOutput, StopToken};
use engine::manifest::Manifest;
use engine::outcome::NodePath;
use engine::plan::PhaseKind;
use engine::site_config::pve_config::ChildAuth;

use crate::host::{Host, Shell};
use crate::ssh::{self, shell_quote, Connection, Flag, SshError, StreamOptions};

pub use installed::InstalledPve;
pub use simulated::SimulatedPve;
pub(crate) use steps::sh;

/// What the runner needs to make nested hosts.
#[derive(Clone, Debug)]
pub struct Nesting {
    /// This driver's binary, uploaded to each nested PVE.
    pub binary: PathBuf,
    /// Its `--version` line: an uploaded copy that says the same is kept.
    pub version: String,
    /// Non-secret site-config files for the child (path in the site-config, text).
    pub site_files: Vec<(String, String)>,
    /// The key pair the child reaches its own guests with.
    pub ssh_key: PathBuf,
    /// Seconds taken off the child's time budget (the manifest's `timeout_buffer`).
    pub timeout_buffer: u64,
    /// `--action-timeout` values given to this driver, passed on to children.
    pub action_timeouts: Vec<(engine::plan::Action, u64)>,
    /// `--parallelism` and `--clones-per-host` given to this driver, passed on to
    /// children (so `--parallelism 1` runs the whole tree one step at a time).
    /// `None`: the child's defaults.
    pub parallelism: Option<usize>,
    pub clones_per_host: Option<usize>,
    /// `--heal` given to this driver, passed on to children's `create` (a nested PVE's
    /// guests are healed by its own driver). `None`: the child's default.
    pub heal: Option<crate::heal::Mode>,
    /// How a guest becomes a PVE host here.
    pub host: NestedHost,
    /// Per `pve` node: the pull-mode tokens its driver is given.
    pub child_auth: std::collections::BTreeMap<String, ChildAuth>,
}

#[derive(Clone, Debug)]
pub enum NestedHost {
    Simulated(SimulatedPve),
    Installed(InstalledPve),
}

/// The guest one nested-host step works on.
pub struct Guest<'a> {
    pub name: &'a str,
    pub ip: &'a str,
    /// The image it was made from (the manifest's `image:`).
    pub image: Option<&'a str>,
    /// The manifest of the nodes below it (JSON).
    pub subtree: Option<&'a str>,
    /// The step's time limit (for its long commands, e.g. a download).
    pub timeout: Duration,
    /// Progress lines for the user.
    pub log: &'a (dyn Fn(String) + Send + Sync),
}

impl<'a> Guest<'a> {
    pub fn log(&self, line: impl Into<String>) {
        (self.log)(line.into())
    }

    /// The images the guest's own top-level guests are cloned from.
    fn images(&self) -> Result<Vec<(String, String)>, ActionError> {
        let Some(sub) = self.subtree else {
            return Ok(Vec::new());
        };
        let m: Manifest =
            serde_json::from_str(sub).map_err(|e| fail(format!("subtree: {e}")).because(e))?;
        Ok(m.nodes
            .iter()
            .filter(|n| n.parent.is_none())
            .filter_map(|n| Some((n.name.clone(), n.image.clone()?)))
            .collect())
    }
}

const SHORT: Duration = Duration::from_secs(60);

fn fail(msg: impl Into<String>) -> ActionError {
    ActionError::new(msg)
}

/// The run stopping, as the Ctrl-C typed into a child driver's PTY.
#[derive(Debug)]
struct Stopping(StopToken);

impl Flag for Stopping {
    fn is_set(&self) -> bool {
        self.0.is_stopping()
    }
}

/// The run aborting, as the second Ctrl-C.
#[derive(Debug)]
struct Aborting(StopToken);

impl Flag for Aborting {
    fn is_set(&self) -> bool {
        self.0.is_aborted()
    }
}

fn node_ip(call: &ActionCall) -> Result<&str, ActionError> {
    call.ip
        .as_deref()
        .ok_or_else(|| fail(format!("'{}' has no IP address yet", call.node.name)))
}

/// The child's API token: `root@pam!driver-child` (not the parent's own).
const CHILD_TOKEN: &str = "driver-child";

impl Nesting {
    /// The folder in the guest that holds the child driver and its files.
    fn dir(&self) -> &str {
        self.host.dir()
    }

    /// `rel` inside [`dir`](Self::dir), for uploads.
    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dir())
    }

    /// `cmd` run in [`dir`](Self::dir).
    fn sh(&self, cmd: &str) -> String {
        sh(self.dir(), cmd)
    }

    /// The guest over `conn`, as the host steps see it.
    fn on(&self, conn: &Connection, name: &str) -> Host {
        self.host.host(Shell::Ssh(conn.clone()), name)
    }

    /// Runs one create step of the PVE lifecycle on `guest` (reached at
    /// `target`, which `install_pve` reconnects to after the guest's reboot).
    pub async fn setup_step(
        &self,
        conn: &Connection,
        target: &ssh::SshTarget,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        use engine::plan::Action;
        let log = |line: String| call.facts.log(line);
        let guest = Guest {
            name: &call.node.name,
            ip: node_ip(call)?,
            image: call.node.image.as_deref(),
            subtree: call.subtree.as_deref(),
            timeout: call.timeout,
            log: &log,
        };
        match call.action {
            Action::InstallPve => self.install_pve(conn, target, &guest).await,
            Action::Bootstrap => self.bootstrap(conn, &guest).await,
            Action::CopySecrets => self.copy_secrets(conn).await,
            Action::CreateApiToken => self.create_api_token(conn, &guest).await,
            Action::ConfigureBridge => self.configure_bridge(conn, &guest).await,
            Action::DownloadImages => self.download_images(conn, &guest).await,
            other => Err(fail(format!("{} is not a PVE setup step", other.name()))),
        }
    }

    /// Proxmox VE onto a guest whose image lacks it: on a real host, PVE's
    /// packages (as `driver host install-pve`); on a simulated one, where a
    /// guest cannot run them, the nested simulator's service.
    pub async fn install_pve(
        &self,
        conn: &Connection,
        target: &ssh::SshTarget,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let mut h = self.on(conn, guest.name);
        match &self.host {
            NestedHost::Simulated(s) => {
                self.ensure_binary(conn, guest).await?;
                s.install(&h, guest).await
            }
            NestedHost::Installed(i) => i.install_pve(&mut h, target, guest).await,
        }
    }

    /// Uploads this driver (unless the same version is there) and the
    /// site-config subset, then makes the guest's PVE answer.
    pub async fn bootstrap(&self, conn: &Connection, guest: &Guest<'_>) -> Result<(), ActionError> {
        let mut dirs: Vec<String> = vec!["site-config/nodes".into(), "state/ssh".into()];
        for (rel, _) in &self.site_files {
            if let Some((dir, _)) = rel.rsplit_once('/') {
                dirs.push(format!("site-config/{dir}"));
            }
        }
        dirs.sort();
        dirs.dedup();
        // Names come from our own site-config listing (plain names only).
        let mkdir = format!(
            "mkdir -p {} && cd {} && mkdir -p {}",
            shell_quote(self.dir()),
            shell_quote(self.dir()),
            dirs.join(" ")
        );
        conn.exec(&mkdir, SHORT).await?.check()?;
        self.ensure_binary(conn, guest).await?;
        for (rel, text) in &self.site_files {
            conn.upload_bytes(
                text.clone(),
                &self.path(&format!("site-config/{rel}")),
                0o644,
                SHORT,
            )
            .await?;
        }
        self.host.setup_pve(&self.on(conn, guest.name), guest).await
    }

    /// This driver in [`dir`](Self::dir), uploaded unless the same build is there.
    async fn ensure_binary(&self, conn: &Connection, guest: &Guest<'_>) -> Result<(), ActionError> {
        // The same version line and size: the same build (a rebuild of the
        // same commit usually differs in size; a hash of a debug build
        // would cost a second per run).
        let size = std::fs::metadata(&self.binary)
            .map_err(|e| fail(format!("cannot read {}: {e}", self.binary.display())).because(e))?
            .len();
        let have = conn
            .exec(
                &self.sh("./driver --version 2>/dev/null; wc -c < driver 2>/dev/null || true"),
                SHORT,
            )
            .await?;
        let same = have.stdout.split_whitespace().eq(self
            .version
            .split_whitespace()
            .chain([size.to_string().as_str()]));
        if !same {
            guest.log("uploading driver");
            conn.upload_file(
                &self.binary,
                &self.path("driver"),
                0o755,
                Duration::from_secs(600),
            )
            .await?;
        }
        Ok(())
    }

    /// The child's SSH key pair (its only secret besides its API token).
    pub async fn copy_secrets(&self, conn: &Connection) -> Result<(), ActionError> {
        let key = std::fs::read(&self.ssh_key)
            .map_err(|e| fail(format!("cannot read {}: {e}", self.ssh_key.display())).because(e))?;
        let public_path = self.ssh_key.with_extension("pub");
        let public = std::fs::read(&public_path)
            .map_err(|e| fail(format!("cannot read {}: {e}", public_path.display())).because(e))?;
        conn.upload_bytes(key, &self.path("state/ssh/id_ed25519"), 0o600, SHORT)
            .await?;
        conn.upload_bytes(public, &self.path("state/ssh/id_ed25519.pub"), 0o644, SHORT)
            .await?;
        Ok(())
    }

    /// The child driver's API token, node file and secrets (its API token and its
    /// subtree's pull-mode tokens).
    pub async fn create_api_token(
        &self,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let auth = self.child_auth.get(guest.name).cloned().unwrap_or_default();
        self.host
            .create_api_token(&self.on(conn, guest.name), guest, &auth)
            .await
    }

    pub async fn configure_bridge(
        &self,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        self.host
            .configure_bridge(&self.on(conn, guest.name), guest)
            .await
    }

    /// The images the node's own guests are cloned from are there as templates.
    pub async fn download_images(
        &self,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let h = self.on(conn, guest.name);
        match &self.host {
            NestedHost::Simulated(s) => s.check_images(&h, guest).await,
            NestedHost::Installed(i) => i.ensure_images(self, &h, conn, guest).await,
        }
    }

    /// The child's node file names the guest's address as it is now: a guest given another
    /// address since the file was written (a new DHCP lease after a restart; a simulated guest
    /// whose address another process holds) would send the child to whoever has the old one.
    /// A nested simulator re-issues its certificate for the new address, so its fingerprint
    /// is taken again too.
    async fn repoint_node_file(
        &self,
        conn: &Connection,
        name: &str,
        ip: &str,
    ) -> Result<(), ActionError> {
        // The address comes from the guest's agent: only a well-formed one goes into the command.
        let ip: std::net::Ipv4Addr = ip
            .parse()
            .map_err(|_| fail(format!("'{name}' reported a malformed address {ip:?}")))?;
        let fingerprint = match &self.host {
            NestedHost::Simulated(_) => {
                " -e \"s#^fingerprint: .*#fingerprint: \\\"$(cat pvesim/pvesim.fingerprint)\\\"#\""
            }
            NestedHost::Installed(_) => "",
        };
        let file = shell_quote(&format!("site-config/nodes/{name}.yaml"));
        let cmd = format!(
            "sed -i -e 's#^api_endpoint: .*#api_endpoint: https://{ip}:8006#' \
             -e 's#^ip: .*#ip: {ip}#'{fingerprint} {file}"
        );
        conn.exec(&self.sh(&cmd), SHORT).await?.check()?;
        Ok(())
    }

    /// The flags of this driver's own command line that the child's gets too (`--heal`
    /// only on `create`: the other verbs refuse it), each with a leading space.
    pub fn passed_on(&self, phase: PhaseKind) -> String {
        let mut extra: String = self
            .action_timeouts
            .iter()
            .map(|(a, s)| format!(" --action-timeout {}={s}", a.name()))
            .collect();
        if let Some(n) = self.parallelism {
            extra.push_str(&format!(" --parallelism {n}"));
        }
        if let Some(n) = self.clones_per_host {
            extra.push_str(&format!(" --clones-per-host {n}"));
        }
        if let (Some(m), PhaseKind::Create) = (self.heal, phase) {
            extra.push_str(&format!(" --heal {}", m.flag()));
        }
        extra
    }

    /// Runs this verb for the subtree on the child driver and relays its
    /// events; the child's node outcomes and context come back.
    pub async fn delegate(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<ActionOutput, ActionError> {
        let sub = call
            .subtree
            .as_deref()
            .ok_or_else(|| fail("nothing to delegate (no subtree)"))?;
        if call.phase == PhaseKind::Destroy {
            let ready = self.sh(&format!(
                "test -f site-config/nodes/{}.yaml",
                call.node.name
            ));
            if !conn.exec(&ready, SHORT).await?.status.success() {
                call.facts
                    .log("no driver was set up here: nothing was delegated to destroy");
                return Ok(ActionOutput::default());
            }
        }
        let ip = node_ip(call)?;
        let env = match &self.host {
            NestedHost::Simulated(s) => {
                let h = self.on(conn, &call.node.name);
                s.ensure_running(&h, ip, &call.node.name).await?;
                s.child_env()
            }
            NestedHost::Installed(_) => "",
        };
        self.repoint_node_file(conn, &call.node.name, ip).await?;
        conn.upload_bytes(
            sub.as_bytes().to_vec(),
            &self.path("subtree.json"),
            0o644,
            SHORT,
        )
        .await?;
        let verb = match call.phase {
            PhaseKind::Destroy => "destroy --yes",
            // The parent's `test` verifies each nested PVE's guests through
            // the driver there, which created them.
            PhaseKind::Verify => "test --verify-only",
            PhaseKind::Create => "create",
        };
        let budget = call
            .timeout
            .as_secs()
            .saturating_sub(self.timeout_buffer)
            .max(60);
        let extra = self.passed_on(call.phase);
        // A driver still stopping there (its parent's connection was lost)
        // holds the state: the new one waits for it, within the same budget.
        let cmd = self.sh(&format!(
            "{env}DRIVER_STATE_DIR=./state HOMESTAK_SITE_CONFIG=./site-config ./driver {verb} \
             --manifest-file subtree.json -H {node} --json-output --events --timeout {budget} \
             --lock-wait {budget}{extra}",
            node = call.node.name
        ));
        let stream = Arc::new(Mutex::new(ChildStream::new(NodePath::node(
            &call.node.name,
        ))));
        // Set once the child shows another protocol version: it is stopped
        // (as by Ctrl-C) rather than left to build what it was handed.
        let refused = Arc::new(AtomicBool::new(false));
        let (s, facts, r) = (stream.clone(), call.facts.clone(), refused.clone());
        let status = conn
            .exec_streaming(
                &cmd,
                // When this run stops, so does the child (Ctrl-C into its PTY).
                StreamOptions::pty()
                    .interrupt_on(Arc::new(Stopping(call.facts.stop().clone())))
                    .interrupt_on(refused)
                    .abort_on(Arc::new(Aborting(call.facts.stop().clone()))),
                call.timeout,
                move |_, line| {
                    let relayed = s.lock().map(|mut st| {
                        let e = st.feed(line);
                        if st.refused() {
                            r.store(true, Ordering::SeqCst);
                        }
                        e
                    });
                    if let Some(e) = relayed.unwrap_or(None) {
                        facts.relay(e);
                    }
                },
            )
            .await
            .map_err(|e| match &e {
                SshError::ConnectionLost { target, .. } => fail(format!(
                    "lost the SSH connection to {node} ({target}) during delegation: it was closed \
                     or reset. The driver there gets a hang-up and stops at a safe point; run the \
                     same command again to resume (it waits for that driver to finish)",
                    node = call.node.name
                ))
                .because(e),
                _ => e.into(),
            })?;
        let stream = Arc::try_unwrap(stream)
            .map_err(|_| fail("child output still in use"))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        match stream.finish() {
            Ok(r) => Ok(ActionOutput {
                context: r.context.into_iter().collect(),
                nodes: r.nodes,
                ..ActionOutput::default()
            }),
            Err((e @ DelegationError::Stopped { .. }, Some(partial))) => {
                Err(ActionError::stopped(e, partial.nodes))
            }
            // The child's own error names the failed node's path, from ours.
            Err((e, Some(partial))) => Err(ActionError::child(
                NodePath::node(&call.node.name),
                e,
                partial.nodes,
            )),
            // Stopped by us: its exit status says nothing more.
            Err((e @ DelegationError::Protocol { .. }, None)) => {
                Err(ActionError::from_source(ActionErrorKind::Failed, e))
            }
            Err((e, None)) => Err(match status.code {
                Some(0) | None => ActionError::from_source(ActionErrorKind::Failed, e),
                Some(code) => fail(format!("{e} (child driver exited with {code})")).because(e),
            }),
        }
    }

    /// Before a nested host goes down: its simulator is stopped (a real
    /// PVE stops its own services on shutdown).
    pub async fn stop_nested(&self, conn: &Connection) -> Result<(), ActionError> {
        match &self.host {
            NestedHost::Simulated(s) => s.stop(&self.on(conn, "nested PVE")).await,
            NestedHost::Installed(_) => Ok(()),
        }
    }
}

/// Connects to a guest for one of these steps.
pub async fn connect(target: &ssh::SshTarget) -> Result<Connection, ActionError> {
    Ok(ssh::connect(target).await?)
}
