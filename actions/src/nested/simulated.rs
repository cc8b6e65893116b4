//! A `pve` guest of a simulated host: it becomes a PVE host by running a
//! nested pvesim bound to the guest's own address, started by the uploaded
//! driver from the guest's boot script (so it comes back when the guest
//! restarts).
//!
//! What stands for Proxmox VE in a simulated guest is that service (the
//! driver binary and `etc/rc.local`): a guest of an image with PVE
//! (`pve: true`) is taken to have it, and the bootstrap writes it; a plain
//! Debian guest gets it from its `install_pve` step ([`SimulatedPve::install`]),
//! which says so in its log, since no Proxmox VE package can be installed in
//! a simulator's guest. Without either, the bootstrap refuses, as a real
//! guest without PVE is refused.
//!
//! The steps run through a [`Host`]: over SSH from the parent (push mode), or on the node
//! itself (a `pve` node in pull mode, `crate::node_config::pve`); either way in the guest's
//! folder, where its commands start and the child driver runs.

use std::collections::BTreeSet;
use std::time::Duration;

use engine::executor::ActionError;
use reqwest::Method;
use serde_json::Value;

use super::{fail, Guest, CHILD_TOKEN, SHORT};
use crate::host::Host;
use crate::poll::{self, Backoff, GaveUp, Poll};
use crate::pve::{tls, PveClient, PveTarget, TlsTrust};

/// The nested simulator's state folder, in its guest's folder (where the child driver runs).
pub const STATE_DIR: &str = "pvesim";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SimulatedPve {
    /// The guest network (first two octets) of the simulator this host is;
    /// a nested simulator takes the next one, so addresses never collide.
    pub guest_net: [u8; 2],
    pub guest_ssh_port: u16,
    /// The simulator's time scale, which nested simulators keep.
    pub time_scale: f64,
    /// Simulator faults (JSON list, `$PVESIM_FAULTS`) for nested simulators too:
    /// a fault aimed at a node name only acts where that node is.
    pub faults: Option<String>,
    /// The images with PVE installed (site-config `pve: true`).
    pub images_with_pve: BTreeSet<String>,
}

/// The nested simulator's service in a guest's folder.
const SERVICE: &str = "etc/rc.local";

/// Shell test (opening an `if`) that `pvesim.pid` names a live simulator of
/// this guest: PIDs are reused (quickly, where pid_max is small), so the pid
/// alone could name a stranger we must neither trust nor kill.
/// Asks a starting nested simulator's API every 0.2 s.
const API_POLL: Backoff = Backoff::new(Duration::from_millis(200), 1, Duration::from_millis(200));

const OURS_ALIVE: &str = "pid=\"$(cat pvesim.pid 2>/dev/null)\"; if [ -n \"$pid\" ] && \
    [ \"$(readlink /proc/$pid/cwd 2>/dev/null)\" = \"$(pwd -P)\" ] && \
    grep -q 'sim' /proc/$pid/cmdline 2>/dev/null; then";

/// The guest's boot and a driver's bootstrap may run `etc/rc.local` at the same time: one
/// at a time (where `flock` is there), so they never start two simulators.
const ONE_AT_A_TIME: &str = "if command -v flock >/dev/null 2>&1; then \
    exec 9>>pvesim.start.lock; flock -w 60 9; fi";

/// Shell (inside [`OURS_ALIVE`]'s `if`) for a live simulator of this guest: reused when it
/// belongs to the guest's current boot (the simulator tags each boot's processes with
/// `PVESIM_GUEST_TAGS` and ends them with the guest). One left by an earlier simulator of
/// this guest (killed without stopping its guests) would outlive everything that uses it:
/// it is stopped (SIGTERM: it saves its state; SIGKILL after 15 s) and a new one started.
const REUSE_OR_STOP: &str = "if [ -z \"$PVESIM_GUEST_TAGS\" ] || tr '\\0' '\\n' \
    < /proc/$pid/environ 2>/dev/null | grep -qxF \"PVESIM_GUEST_TAGS=$PVESIM_GUEST_TAGS\"; \
    then echo running; exit 0; fi; echo \"replacing pid $pid, left by an earlier simulator\"; \
    kill \"$pid\"; i=0; while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; \
    i=$((i+1)); done; kill -9 \"$pid\" 2>/dev/null; i=0; while kill -0 \"$pid\" 2>/dev/null \
    && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done;";

impl SimulatedPve {
    fn child_net(&self) -> String {
        format!(
            "{}.{}",
            self.guest_net[0],
            self.guest_net[1].saturating_add(1)
        )
    }

    /// Environment for the child driver: it passes simulator faults on to
    /// its own nested simulators.
    pub(super) fn child_env(&self) -> &'static str {
        if self.faults.is_some() {
            "PVESIM_FAULTS=\"$(cat pvesim-faults.json)\" "
        } else {
            ""
        }
    }

    /// Is there PVE (its stand-in, the nested simulator's service) on the
    /// guest: from its image, or put there by `install_pve`?
    async fn has_pve(&self, h: &Host, guest: &Guest<'_>) -> Result<bool, ActionError> {
        if guest
            .image
            .is_some_and(|i| self.images_with_pve.contains(i))
        {
            return Ok(true);
        }
        Ok(h.run(&format!("test -f {SERVICE}"), SHORT).await?.ok())
    }

    /// `install_pve` (push) or `ensure_pve` (pull) on a simulated guest: the nested
    /// simulator's service (the boot script that starts this driver as one) in place of
    /// PVE's packages; checked first, like the real install.
    pub(crate) async fn install(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        if self.has_pve(h, guest).await? {
            guest.log("the nested PVE simulator is installed");
            return Ok(());
        }
        self.write_service(h, guest).await?;
        guest.log(format!(
            "installed the nested PVE simulator as this simulated guest's Proxmox VE \
             ({SERVICE} starts it at each boot; a simulator's guest runs no Proxmox VE packages)"
        ));
        Ok(())
    }

    /// Writes the guest's boot script and starts the nested simulator.
    pub(crate) async fn start(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        if !self.has_pve(h, guest).await? {
            let image = guest.image.unwrap_or("(none)");
            return Err(fail(format!(
                "{} has no PVE: its image {image} has none (images/{image}.yaml has no \
                 `pve: true`) and no install_pve step installed the nested simulator there",
                guest.name
            )));
        }
        self.write_service(h, guest).await?;
        let start = format!("PVESIM_GUEST_IP={} sh {SERVICE}", guest.ip);
        let out = h.ok(&start, SHORT).await?;
        guest.log(format!("nested PVE simulator {}", out.trim()));
        self.wait_api(h, guest.ip, guest.name).await
    }

    /// The nested PVE's "service": started at every boot of its guest (the
    /// simulator runs `etc/rc.local`), and by [`start`](Self::start).
    async fn write_service(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        if let Some(f) = &self.faults {
            h.write("pvesim-faults.json", f, 0o644).await?;
        }
        let rc_local = format!(
            "#!/bin/sh\n# Written by driver: this guest is a nested PVE (a simulator).\n\
             {one_at_a_time}\n\
             {alive} {reuse_or_stop} fi\n\
             [ -f pvesim-faults.json ] && export PVESIM_FAULTS=\"$(cat pvesim-faults.json)\"\n\
             nohup ./driver sim serve --bind \"$PVESIM_GUEST_IP:8006\" --node {node} --state-dir {state_dir} \
             --guest-net {net} --guest-ssh-port {port} --time-scale {scale} > pvesim.log 2>&1 < /dev/null 9>&- &\n\
             echo $! > pvesim.pid\necho started\n",
            one_at_a_time = ONE_AT_A_TIME,
            alive = OURS_ALIVE,
            reuse_or_stop = REUSE_OR_STOP,
            node = guest.name,
            state_dir = STATE_DIR,
            net = self.child_net(),
            port = self.guest_ssh_port,
            scale = self.time_scale,
        );
        h.write(SERVICE, &rc_local, 0o755).await?;
        Ok(())
    }

    /// Makes sure the nested simulator runs (its guest may have been
    /// restarted) and answers.
    pub(super) async fn ensure_running(
        &self,
        h: &Host,
        ip: &str,
        name: &str,
    ) -> Result<(), ActionError> {
        let start = format!("[ -f {SERVICE} ] && PVESIM_GUEST_IP={ip} sh {SERVICE}; true");
        h.ok(&start, SHORT).await?;
        self.wait_api(h, ip, name).await
    }

    /// Waits until the nested PVE's API answers.
    async fn wait_api(&self, h: &Host, ip: &str, name: &str) -> Result<(), ActionError> {
        let up = poll::until(SHORT, API_POLL, || async {
            let answer = match self.root_client(h, ip, name).await {
                Ok(client) => client
                    .get("/version")
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(()) => Poll::Ready(()),
                Err(e) => Poll::Pending(e),
            }
        })
        .await;
        let Err(GaveUp { last, waited, .. }) = up else {
            return Ok(());
        };
        let log = h.run("tail -n 20 pvesim.log", SHORT).await?;
        Err(fail(format!(
            "the nested PVE on {name} did not come up after {waited} (last: {last}); its log:\n{}",
            log.stdout
        )))
    }

    /// A client of the nested PVE with its root token (read from its files).
    async fn root_client(&self, h: &Host, ip: &str, name: &str) -> Result<PveClient, ActionError> {
        let token = h.ok("cat pvesim/pvesim.token", SHORT).await?;
        let fp = h.ok("cat pvesim/pvesim.fingerprint", SHORT).await?;
        let (id, secret) = token
            .trim()
            .split_once('=')
            .ok_or_else(|| fail("the nested PVE's token file is not USER@REALM!ID=SECRET"))?;
        let fp = tls::parse_fingerprint(fp.trim())?;
        PveClient::new(&PveTarget {
            endpoint: format!("https://{ip}:8006"),
            node: name.to_string(),
            token_id: id.to_string(),
            token_secret: secret.to_string(),
            trust: TlsTrust::Fingerprint(fp),
        })
        .map_err(ActionError::from)
    }

    /// A token made through the nested simulator's API; returns it
    /// (`USER@REALM!ID=SECRET`) and the child's node file.
    pub(super) async fn api_token(
        &self,
        h: &Host,
        guest: &Guest<'_>,
    ) -> Result<(Option<String>, String), ActionError> {
        let root = self.root_client(h, guest.ip, guest.name).await?;
        let path = format!("/access/users/root@pam/token/{CHILD_TOKEN}");
        let _ = root.request(Method::DELETE, &path, &[]).await;
        let made = root
            .post(
                &path,
                &[
                    ("privsep", "0".into()),
                    ("comment", "driver (nested)".into()),
                ],
            )
            .await?;
        let value = made
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the nested PVE answered no token value"))?;
        let fp = h.ok("cat pvesim/pvesim.fingerprint", SHORT).await?;
        let node_file = format!(
            "# Written by driver: this host is a nested PVE (a simulator).\n\
             api_endpoint: https://{ip}:8006\nfingerprint: \"{fp}\"\napi_token: {node}\n\
             datastore: local-lvm\nbridge: vmbr0\nip: {ip}\npvesim_guest_net: \"{net}\"\n\
             pvesim_time_scale: {scale}\n",
            ip = guest.ip,
            node = guest.name,
            fp = fp.trim(),
            net = self.child_net(),
            scale = self.time_scale,
        );
        Ok((Some(format!("root@pam!{CHILD_TOKEN}={value}")), node_file))
    }

    /// A nested simulator always has vmbr0; its absence is a fault.
    pub(super) async fn check_bridge(
        &self,
        h: &Host,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let root = self.root_client(h, guest.ip, guest.name).await?;
        let nets = root.get(&format!("/nodes/{}/network", guest.name)).await?;
        let found = nets.as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i.get("iface").and_then(Value::as_str) == Some("vmbr0"))
        });
        if found {
            Ok(())
        } else {
            Err(fail(format!(
                "no bridge vmbr0 on the nested PVE {}",
                guest.name
            )))
        }
    }

    /// A nested simulator brings its templates along: they are checked.
    pub(super) async fn check_images(
        &self,
        h: &Host,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let images = guest.images()?;
        if images.is_empty() {
            return Ok(());
        }
        let root = self.root_client(h, guest.ip, guest.name).await?;
        let guests = root.guests().await?;
        for (node, image) in images {
            if !guests.iter().any(|g| g.template && g.name == image) {
                return Err(fail(format!(
                    "image '{image}' (for {node}) is not on the nested PVE {}",
                    guest.name
                )));
            }
        }
        Ok(())
    }

    /// Stops the nested simulator (before its guest is shut down).
    pub(super) async fn stop(&self, h: &Host) -> Result<(), ActionError> {
        let stop = format!("{OURS_ALIVE} kill \"$pid\"; fi; rm -f pvesim.pid; true");
        h.run(&stop, SHORT).await?;
        Ok(())
    }
}
