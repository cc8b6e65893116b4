//! Nested PVE nodes on the simulator: turning a `pve` guest into a PVE host
//! (bootstrap, secrets, API token, bridge, images) and handing it its
//! subtree (delegation to a copy of this driver running on it, over SSH).
//!
//! On a simulated host a `pve` guest becomes a host by running a nested
//! pvesim bound to the guest's own address, started by this very driver
//! binary uploaded to it. Each step checks first, so a resumed run redoes
//! only what is missing. Everything the child needs is written as files in
//! the guest (never put in a command line): its site-config subset,
//! secrets limited to its own API token and SSH key, and the subtree.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::delegation::ChildStream;
use engine::executor::{ActionCall, ActionError, ActionOutput};
use engine::manifest::Manifest;
use engine::plan::PhaseKind;
use reqwest::Method;
use serde_json::Value;

use crate::pve::{tls, PveClient, PveTarget, TlsTrust};
use crate::ssh::{self, Connection, SshError, StreamOptions};

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
    /// The guest network (first two octets) of the simulator this host is;
    /// a nested simulator takes the next one, so addresses never collide.
    pub guest_net: [u8; 2],
    pub guest_ssh_port: u16,
    /// Seconds taken off the child's time budget (the manifest's `timeout_buffer`).
    pub timeout_buffer: u64,
    /// The simulator's time scale, which nested simulators keep.
    pub time_scale: f64,
    /// `--action-timeout` values given to this driver, passed on to children.
    pub action_timeouts: Vec<(engine::plan::Action, u64)>,
    /// Simulator faults (JSON list, `$PVESIM_FAULTS`) for nested simulators too:
    /// a fault aimed at a node name only acts where that node is.
    pub faults: Option<String>,
}

const SHORT: Duration = Duration::from_secs(60);

/// Shell test (opening an `if`) that `pvesim.pid` names a live simulator of
/// this guest: PIDs are reused (quickly, where pid_max is small), so the pid
/// alone could name a stranger we must neither trust nor kill.
const OURS_ALIVE: &str = "pid=\"$(cat pvesim.pid 2>/dev/null)\"; if [ -n \"$pid\" ] && \
    [ \"$(readlink /proc/$pid/cwd 2>/dev/null)\" = \"$(pwd -P)\" ] && \
    grep -q 'sim' /proc/$pid/cmdline 2>/dev/null; then";

fn fail(msg: impl Into<String>) -> ActionError {
    ActionError::new(msg)
}

fn node_ip(call: &ActionCall) -> Result<&str, ActionError> {
    call.ip
        .as_deref()
        .ok_or_else(|| fail(format!("'{}' has no IP address yet", call.node.name)))
}

impl Nesting {
    fn child_net(&self) -> String {
        format!(
            "{}.{}",
            self.guest_net[0],
            self.guest_net[1].saturating_add(1)
        )
    }

    /// Upload this driver (unless the same version is there), the
    /// site-config subset, and start the nested simulator.
    pub async fn bootstrap(&self, conn: &Connection, call: &ActionCall) -> Result<(), ActionError> {
        let ip = node_ip(call)?;
        let have = conn
            .exec("./driver --version 2>/dev/null || true", SHORT)
            .await?;
        if have.stdout.trim() != self.version.trim() {
            call.facts.log("uploading driver");
            conn.upload_file(&self.binary, "driver", 0o755, Duration::from_secs(600))
                .await?;
        }
        let mut dirs: Vec<String> = vec!["site-config/nodes".into(), "state/ssh".into()];
        for (rel, _) in &self.site_files {
            if let Some((dir, _)) = rel.rsplit_once('/') {
                dirs.push(format!("site-config/{dir}"));
            }
        }
        dirs.sort();
        dirs.dedup();
        // Names come from our own site-config listing (plain names only).
        conn.exec(&format!("mkdir -p {}", dirs.join(" ")), SHORT)
            .await?
            .check()?;
        for (rel, text) in &self.site_files {
            conn.upload_bytes(text.clone(), &format!("site-config/{rel}"), 0o644, SHORT)
                .await?;
        }
        if let Some(f) = &self.faults {
            conn.upload_bytes(f.clone(), "pvesim-faults.json", 0o644, SHORT)
                .await?;
        }
        // The nested PVE's "service": started at every boot of its guest (the
        // simulator runs `etc/rc.local`), and now.
        let rc_local = format!(
            "#!/bin/sh\n# Written by driver: this guest is a nested PVE (a simulator).\n\
             {alive} echo running; exit 0; fi\n\
             [ -f pvesim-faults.json ] && export PVESIM_FAULTS=\"$(cat pvesim-faults.json)\"\n\
             nohup ./driver sim serve --bind \"$PVESIM_GUEST_IP:8006\" --node {node} --state-dir pvesim \
             --guest-net {net} --guest-ssh-port {port} --time-scale {scale} > pvesim.log 2>&1 < /dev/null &\n\
             echo $! > pvesim.pid\necho started\n",
            alive = OURS_ALIVE,
            node = call.node.name,
            net = self.child_net(),
            port = self.guest_ssh_port,
            scale = self.time_scale,
        );
        conn.exec("mkdir -p etc", SHORT).await?.check()?;
        conn.upload_bytes(rc_local, "etc/rc.local", 0o755, SHORT)
            .await?;
        let start = format!("PVESIM_GUEST_IP={ip} sh etc/rc.local");
        let out = conn.exec(&start, SHORT).await?.check()?;
        call.facts
            .log(format!("nested PVE simulator {}", out.stdout.trim()));
        self.wait_api(conn, call).await
    }

    /// Makes sure the nested simulator runs (its guest may have been
    /// restarted) and answers.
    async fn ensure_running(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let ip = node_ip(call)?;
        let start = format!("[ -f etc/rc.local ] && PVESIM_GUEST_IP={ip} sh etc/rc.local; true");
        conn.exec(&start, SHORT).await?.check()?;
        self.wait_api(conn, call).await
    }

    /// Waits until the nested PVE's API answers.
    async fn wait_api(&self, conn: &Connection, call: &ActionCall) -> Result<(), ActionError> {
        let deadline = Instant::now() + SHORT;
        loop {
            if let Ok(client) = self.root_client(conn, call).await {
                if client.get("/version").await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = conn.exec("tail -n 20 pvesim.log", SHORT).await?;
                return Err(fail(format!(
                    "the nested PVE on {} did not come up within {}; its log:\n{}",
                    call.node.name,
                    engine::clock::human(SHORT),
                    log.stdout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client of the nested PVE with its root token (read from its files).
    async fn root_client(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<PveClient, ActionError> {
        let ip = node_ip(call)?;
        let token = conn.exec("cat pvesim/pvesim.token", SHORT).await?.check()?;
        let fp = conn
            .exec("cat pvesim/pvesim.fingerprint", SHORT)
            .await?
            .check()?;
        let (id, secret) = token
            .stdout
            .trim()
            .split_once('=')
            .ok_or_else(|| fail("the nested PVE's token file is not USER@REALM!ID=SECRET"))?;
        let fp = tls::parse_fingerprint(fp.stdout.trim()).map_err(|e| fail(e.to_string()))?;
        PveClient::new(&PveTarget {
            endpoint: format!("https://{ip}:8006"),
            node: call.node.name.clone(),
            token_id: id.to_string(),
            token_secret: secret.to_string(),
            trust: TlsTrust::Fingerprint(fp),
        })
        .map_err(|e| fail(e.to_string()))
    }

    /// The child's SSH key pair (its only secret besides its API token).
    pub async fn copy_secrets(&self, conn: &Connection) -> Result<(), ActionError> {
        let key = std::fs::read(&self.ssh_key)
            .map_err(|e| fail(format!("cannot read {}: {e}", self.ssh_key.display())))?;
        let public_path = self.ssh_key.with_extension("pub");
        let public = std::fs::read(&public_path)
            .map_err(|e| fail(format!("cannot read {}: {e}", public_path.display())))?;
        conn.upload_bytes(key, "state/ssh/id_ed25519", 0o600, SHORT)
            .await?;
        conn.upload_bytes(public, "state/ssh/id_ed25519.pub", 0o644, SHORT)
            .await?;
        Ok(())
    }

    /// An API token for the child driver, written with the node's config.
    pub async fn create_api_token(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let ip = node_ip(call)?;
        let root = self.root_client(conn, call).await?;
        // Not `driver`: that is the root token this client logs in with.
        let path = "/access/users/root@pam/token/child";
        // A token's secret is shown once: replace an old one.
        let _ = root.request(Method::DELETE, path, &[]).await;
        let made = root
            .post(
                path,
                &[
                    ("privsep", "0".into()),
                    ("comment", "driver (nested)".into()),
                ],
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        let value = made
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the nested PVE answered no token value"))?;
        let fp = conn
            .exec("cat pvesim/pvesim.fingerprint", SHORT)
            .await?
            .check()?;
        let node = &call.node.name;
        let node_file = format!(
            "# Written by the parent driver: this host is a nested PVE (a simulator).\n\
             api_endpoint: https://{ip}:8006\nfingerprint: \"{fp}\"\napi_token: {node}\n\
             datastore: local\nbridge: vmbr0\nip: {ip}\npvesim_guest_net: \"{net}\"\n\
             pvesim_time_scale: {scale}\n",
            fp = fp.stdout.trim(),
            net = self.child_net(),
            scale = self.time_scale,
        );
        conn.upload_bytes(
            node_file,
            &format!("site-config/nodes/{node}.yaml"),
            0o644,
            SHORT,
        )
        .await?;
        let secrets = format!("api_tokens:\n  {node}: \"root@pam!child={value}\"\n");
        conn.upload_bytes(secrets, "site-config/secrets.yaml", 0o600, SHORT)
            .await?;
        Ok(())
    }

    pub async fn configure_bridge(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let root = self.root_client(conn, call).await?;
        let nets = root
            .get(&format!("/nodes/{}/network", call.node.name))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let found = nets.as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i.get("iface").and_then(Value::as_str) == Some("vmbr0"))
        });
        if found {
            Ok(())
        } else {
            Err(fail(format!(
                "no bridge vmbr0 on the nested PVE {}",
                call.node.name
            )))
        }
    }

    /// The images the node's own guests need are there as templates.
    pub async fn download_images(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let Some(sub) = call.subtree.as_deref() else {
            return Ok(());
        };
        let m: Manifest = serde_json::from_str(sub).map_err(|e| fail(format!("subtree: {e}")))?;
        let root = self.root_client(conn, call).await?;
        let guests = root.guests().await.map_err(|e| fail(e.to_string()))?;
        for n in m.nodes.iter().filter(|n| n.parent.is_none()) {
            let Some(image) = &n.image else { continue };
            if !guests.iter().any(|g| g.template && &g.name == image) {
                return Err(fail(format!(
                    "image '{image}' (for {}) is not on the nested PVE {}",
                    n.name, call.node.name
                )));
            }
        }
        Ok(())
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
            let ready = format!("test -f site-config/nodes/{}.yaml", call.node.name);
            if !conn.exec(&ready, SHORT).await?.status.success() {
                call.facts
                    .log("no driver was set up here: nothing was delegated to destroy");
                return Ok(ActionOutput::default());
            }
        }
        self.ensure_running(conn, call).await?;
        conn.upload_bytes(sub.as_bytes().to_vec(), "subtree.json", 0o644, SHORT)
            .await?;
        let verb = match call.phase {
            PhaseKind::Destroy => "destroy --yes",
            _ => "create",
        };
        let budget = call
            .timeout
            .as_secs()
            .saturating_sub(self.timeout_buffer)
            .max(60);
        let extra: String = self
            .action_timeouts
            .iter()
            .map(|(a, s)| format!(" --action-timeout {}={s}", a.name()))
            .collect();
        // The child passes simulator faults on to its own nested simulators.
        let faults = if self.faults.is_some() {
            "PVESIM_FAULTS=\"$(cat pvesim-faults.json)\" "
        } else {
            ""
        };
        // A driver still stopping there (its parent's connection was lost)
        // holds the state: the new one waits for it, within the same budget.
        let cmd = format!(
            "{faults}DRIVER_STATE_DIR=./state HOMESTAK_SITE_CONFIG=./site-config ./driver {verb} \
             --manifest-file subtree.json -H {node} --json-output --events --timeout {budget} \
             --lock-wait {budget}{extra}",
            node = call.node.name
        );
        let stream = Arc::new(Mutex::new(ChildStream::new(call.node.name.clone())));
        let (s, facts) = (stream.clone(), call.facts.clone());
        let status = conn
            .exec_streaming(&cmd, StreamOptions::pty(), call.timeout, move |_, line| {
                let relayed = s.lock().map(|mut st| st.feed(line)).unwrap_or(None);
                if let Some(e) = relayed {
                    facts.relay(e);
                }
            })
            .await
            .map_err(|e| match e {
                SshError::ConnectionLost { target, .. } => fail(format!(
                    "lost the SSH connection to {node} ({target}) during delegation: it was closed \
                     or reset. The driver there gets a hang-up and stops at a safe point; run the \
                     same command again to resume (it waits for that driver to finish)",
                    node = call.node.name
                )),
                e => e.into(),
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
            // The child's own error names the failed node's path.
            Err((e, Some(partial))) => Err(ActionError::from_child(e.to_string(), partial.nodes)),
            Err((e, None)) => Err(fail(match status.code {
                Some(0) | None => e.to_string(),
                Some(code) => format!("{e} (child driver exited with {code})"),
            })),
        }
    }

    /// Stops the nested simulator (before its guest is shut down).
    pub async fn stop_nested(&self, conn: &Connection) -> Result<(), ActionError> {
        let stop = format!("{OURS_ALIVE} kill \"$pid\"; fi; rm -f pvesim.pid; true");
        conn.exec(&stop, SHORT).await?;
        Ok(())
    }
}

/// Connects to a guest for one of these steps.
pub async fn connect(target: &ssh::SshTarget) -> Result<Connection, ActionError> {
    Ok(ssh::connect(target).await?)
}
