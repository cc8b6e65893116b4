//! The runner's pull-mode steps: at provision, the guest's cloud-init snippet written and
//! named in its `cicustom`; at `await_pull`, SSH awaited (its host key recorded, as
//! `wait_ssh` does) and the guest's markers read until it reports its spec applied; for a
//! `pve` node, at `await_pve_config`, until it reports itself set up as a PVE host.

use engine::executor::{ActionCall, ActionError, ActionOutput};
use engine::manifest::NodeKind;

use super::PveRunner;
use crate::nested::NestedHost;
use crate::node_config::pve::{HostKind, PveHostFile};
use crate::pull::PullSetup;
use crate::ssh;

impl PveRunner {
    /// The pull setup when `call`'s node is a pull-mode node; an error when it is one this
    /// runner cannot make (no controller, a container, a tofu-made guest).
    pub(super) fn pull_for(&self, call: &ActionCall) -> Result<Option<&PullSetup>, ActionError> {
        let Some(p) = self.pull.as_ref().filter(|p| p.is_pull(&call.node.name)) else {
            return Ok(None);
        };
        if call.node.kind == NodeKind::Ct {
            return Err(ActionError::new(format!(
                "'{}' is a container in pull mode: containers have no cloud-init to fetch their \
                 spec at boot; use `execution: {{mode: push}}` for it",
                call.node.name
            )));
        }
        if self.tofu_for(&call.node).is_some() {
            return Err(ActionError::new(format!(
                "'{}' is made by tofu and in pull mode: its cloud-init comes from the tofu \
                 configuration; use `execution: {{mode: push}}` or the API provisioner for it",
                call.node.name
            )));
        }
        Ok(Some(p))
    }

    /// Writes the guest's user-data snippet; the `cicustom` value naming it.
    pub(super) async fn pull_snippet(
        &self,
        p: &PullSetup,
        call: &ActionCall,
        vmid: u32,
    ) -> Result<String, ActionError> {
        let name = PullSetup::snippet_name(&call.node.name, vmid);
        let pve_host = match call.node.kind {
            NodeKind::Pve => Some(self.pve_host_file(call)?),
            _ => None,
        };
        let text = p.user_data(
            &call.node.name,
            &self.setup.ci_user,
            &self.setup.ssh_keys,
            pve_host.as_deref(),
        );
        p.snippets
            .write(&self.client, &p.storage, &name, &text)
            .await?;
        call.facts.log(format!(
            "cloud-init user-data {}:snippets/{name}: fetches its spec from {}",
            p.storage, p.server
        ));
        Ok(format!("user={}:snippets/{name}", p.storage))
    }

    /// A `pve` node's `pve-host.json`: how it becomes a PVE host, as this runner's nested
    /// hosts do (a nested simulator on a simulated host).
    fn pve_host_file(&self, call: &ActionCall) -> Result<String, ActionError> {
        let host = match &self.nesting(call)?.host {
            NestedHost::Simulated(s) => HostKind::Simulated(s.clone()),
            NestedHost::Installed(_) => HostKind::Installed,
        };
        let file = PveHostFile {
            image: call.node.image.clone(),
            host,
        };
        serde_json::to_string(&file).map_err(|e| ActionError::new(e.to_string()).because(e))
    }

    /// A `pve` node's phase 2: waits for its marker (see `crate::pull`'s `pve`).
    pub(super) async fn await_pve_config(
        &self,
        call: &ActionCall,
    ) -> Result<ActionOutput, ActionError> {
        let p = self.pull_for(call)?.ok_or_else(|| {
            ActionError::new(format!(
                "'{}' is in pull mode, and this run has no controller for it",
                call.node.name
            ))
        })?;
        let (target, _) = self.ssh_target(call)?;
        let conn = ssh::connect(&target).await?;
        p.await_pve_config(&conn, call).await?;
        Ok(ActionOutput::default())
    }

    pub(super) async fn await_pull(&self, call: &ActionCall) -> Result<ActionOutput, ActionError> {
        let p = self.pull_for(call)?.ok_or_else(|| {
            ActionError::new(format!(
                "'{}' is in pull mode, and this run has no controller for it",
                call.node.name
            ))
        })?;
        let (target, _) = self.ssh_target(call)?;
        let conn = ssh::wait_for_ssh(&target, call.timeout).await?;
        for hop in conn.accepted_keys() {
            call.facts.log(format!(
                "accepted new host key {} for {}",
                hop.key.fingerprint(),
                hop.host
            ));
        }
        if let Some(key) = conn.host_key() {
            call.facts
                .host_key(&format!("{} {}", key.key_type, key.key))
                .await?;
        }
        p.rerun_if_stale(&conn, call).await?;
        p.await_markers(&conn, call).await?;
        Ok(ActionOutput::default())
    }
}

impl PveRunner {
    /// Removes the cloud-init snippet of a guest about to be deleted (it holds the node's
    /// token): the one its `cicustom` names when that is ours for this node and vmid, else
    /// (a create that failed before its `cicustom` was set) the name a pull-mode node of
    /// this manifest gets. Only for guests `own_vmid` found this state's.
    pub(super) async fn remove_pull_snippet(
        &self,
        call: &ActionCall,
        kind: crate::pve::GuestKind,
        vmid: u32,
    ) -> Result<(), ActionError> {
        let Some(c) = &self.snippets else {
            return Ok(());
        };
        if kind != crate::pve::GuestKind::Qemu {
            return Ok(());
        }
        let cfg = self.client.config(kind, vmid).await?;
        let named = cfg["cicustom"]
            .as_str()
            .and_then(|v| crate::pull::snippets::ours_in_cicustom(v, &call.node.name, vmid));
        let (storage, name) = match named {
            Some(s) => s,
            None if c.nodes.contains(&call.node.name) => (
                c.storage.clone(),
                PullSetup::snippet_name(&call.node.name, vmid),
            ),
            None => return Ok(()),
        };
        c.store.remove(&self.client, &storage, &name).await?;
        call.facts.log(format!(
            "removed cloud-init user-data {storage}:snippets/{name}"
        ));
        Ok(())
    }
}
