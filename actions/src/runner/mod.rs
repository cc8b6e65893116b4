//! `PveRunner`: the engine's `NodeRunner` for a PVE host reached through its
//! API. Provisioning is native (clone a template named like the node's
//! image, then configure, resize, start, wait for the agent's IP; a
//! container is created from its image's container template).
//!
//! Files: this one (the runner, its set-up, the action dispatch, tofu and
//! ansible), [`provision`] (template, clone or create, adopt, size), [`pull`]
//! (pull-mode nodes: their cloud-init snippet, waiting for their markers),
//! [`container`] (a container's create parameters and template), [`images`]
//! (the template a node needs, made when missing), [`owned`] (which guests a
//! call may act on).

mod cluster;
mod container;
mod images;
mod owned;
mod provision;
mod pull;

use std::path::PathBuf;
use std::sync::Arc;

use engine::executor::{ActionCall, ActionError, ActionOutput, CloneClass, NodeRunner};
use engine::manifest::{NodeKind, NodeSpec};
use engine::ownership::{MarkedGuest, Owner};
use engine::plan::Action;

use crate::ansible;
use crate::nested::{self, Nesting};
use crate::pve::{GuestKind, PveClient};
use crate::ssh::{self, HostKeyCheck, SshAuth, SshTarget};

/// A guest's size, from its preset (and `disk:` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

/// Resolves a node's size (the site-config's presets).
pub type SizeFor = Arc<dyn Fn(&NodeSpec) -> Result<Sizing, String> + Send + Sync>;

/// How new guests are set up, from the site-config.
#[derive(Clone, Debug)]
pub struct GuestSetup {
    pub bridge: String,
    /// cloud-init user.
    pub ci_user: String,
    /// Public keys for cloud-init.
    pub ssh_keys: Vec<String>,
    /// Full clones (independent disks) rather than linked ones.
    pub full_clone: bool,
    /// The node file's `datastore:`: where full clones go unless a manifest
    /// node names its own `storage:`.
    pub datastore: Option<String>,
    /// The node file, for messages.
    pub node_file: String,
    /// Spec name → the ansible playbook that applies it, and its variables.
    pub playbooks: std::collections::HashMap<String, (PathBuf, serde_json::Value)>,
    /// The guests' python for ansible (site.yaml `ansible_python_interpreter`).
    pub python: String,
    /// Nodes made with OpenTofu instead of the API, and how.
    pub tofu: Option<TofuSetup>,
    /// `ansible-playbook` to run; `None`: from `PATH`.
    pub ansible_program: Option<PathBuf>,
    /// Image name → where its container template comes from (images/NAME.yaml `vztmpl:`).
    pub ct_templates:
        std::collections::BTreeMap<String, engine::site_config::ct_template::CtTemplateSource>,
}

/// The seed's TofuApply/TofuDestroy as the provisioner of some nodes.
#[derive(Clone, Debug)]
pub struct TofuSetup {
    /// The tofu configuration (the site's `defaults.tofu_env_dir`).
    pub env_dir: PathBuf,
    /// Where `.states/{env}-{node}/` go.
    pub states_root: PathBuf,
    pub env: String,
    /// `tofu` to run; `None`: from `PATH`.
    pub program: Option<PathBuf>,
    /// Node name → its tfvars (the resolver's structure, one VM each).
    pub tfvars: std::collections::HashMap<String, serde_json::Value>,
}

/// How the runner reaches guests over SSH.
#[derive(Clone, Debug)]
pub struct SshSetup {
    pub user: String,
    pub port: u16,
    pub auth: SshAuth,
    /// Fresh guests' keys are accepted once and recorded here; a changed
    /// key is refused afterwards.
    pub known_hosts: PathBuf,
}

pub struct PveRunner {
    client: PveClient,
    setup: GuestSetup,
    size_for: SizeFor,
    ssh: Option<SshSetup>,
    nesting: Option<Nesting>,
    /// Template vmids by (kind, name), found once per run: listing every
    /// guest for each provision would make a wide create quadratic.
    templates: std::sync::Mutex<std::collections::HashMap<(GuestKind, String), u32>>,
    /// Container templates found or fetched on this host, once each per run.
    ct_templates: crate::ct_templates::CtTemplates,
    /// Makes missing templates from the site-config's images (once per run each).
    images: Option<Arc<crate::templates::Templates>>,
    /// The run's controller, for pull-mode nodes.
    pull: Option<crate::pull::PullSetup>,
    /// Where pull-mode guests' snippets are, removed with their guests.
    snippets: Option<crate::pull::SnippetCleanup>,
}

fn kind_of(n: &NodeSpec) -> GuestKind {
    match n.kind {
        NodeKind::Ct => GuestKind::Lxc,
        NodeKind::Vm | NodeKind::Pve => GuestKind::Qemu,
    }
}

impl PveRunner {
    pub fn new(client: PveClient, setup: GuestSetup, size_for: SizeFor) -> Self {
        PveRunner {
            client,
            setup,
            size_for,
            ssh: None,
            nesting: None,
            templates: Default::default(),
            ct_templates: Default::default(),
            images: None,
            pull: None,
            snippets: None,
        }
    }

    /// Lets pull-mode nodes configure themselves from the run's controller.
    pub fn with_pull(mut self, pull: crate::pull::PullSetup) -> Self {
        self.pull = Some(pull);
        self
    }

    /// Lets destroys remove the cloud-init snippets of the pull-mode guests they delete.
    pub fn with_snippet_cleanup(mut self, cleanup: crate::pull::SnippetCleanup) -> Self {
        self.snippets = Some(cleanup);
        self
    }

    /// Lets `ensure_image` make missing templates from the site-config's images.
    pub fn with_images(mut self, images: Arc<crate::templates::Templates>) -> Self {
        self.images = Some(images);
        self
    }

    /// Lets `pve` nodes become nested PVE hosts.
    pub fn with_nesting(mut self, nesting: Nesting) -> Self {
        self.nesting = Some(nesting);
        self
    }

    fn nesting(&self, call: &ActionCall) -> Result<&Nesting, ActionError> {
        self.nesting.as_ref().ok_or_else(|| {
            ActionError::new(format!(
                "{} of pve node '{}': this runner was set up without nested PVE hosts",
                call.action.name(),
                call.node.name
            ))
        })
    }

    /// Runs one nested-host step over SSH.
    async fn nested(&self, call: &ActionCall) -> Result<ActionOutput, ActionError> {
        let n = self.nesting(call)?;
        let (target, _) = self.ssh_target(call)?;
        let conn = nested::connect(&target).await?;
        if call.action != Action::Delegate {
            n.setup_step(&conn, &target, call).await?;
            return Ok(ActionOutput::default());
        }
        let out = n.delegate(&conn, call).await?;
        if call.phase == engine::plan::PhaseKind::Destroy {
            n.stop_nested(&conn).await?;
        }
        Ok(out)
    }

    /// Before a nested host goes down, its simulator is stopped (best effort).
    async fn stop_nested_quietly(&self, call: &ActionCall) {
        if call.node.kind != NodeKind::Pve {
            return;
        }
        let (Some(n), Ok((target, _))) = (&self.nesting, self.ssh_target(call)) else {
            return;
        };
        if let Ok(conn) = nested::connect(&target).await {
            let _ = n.stop_nested(&conn).await;
        }
    }

    pub fn with_ssh(mut self, ssh: SshSetup) -> Self {
        self.ssh = Some(ssh);
        self
    }

    /// The SSH target of a guest, from its recorded IP.
    fn ssh_target(&self, call: &ActionCall) -> Result<(SshTarget, &SshSetup), ActionError> {
        let ssh = self.ssh.as_ref().ok_or_else(|| {
            ActionError::new("no SSH setup for this host (no key to reach guests with)")
        })?;
        let ip = call.ip.as_deref().ok_or_else(|| {
            ActionError::new(format!(
                "'{}' has no IP address yet (wait_ip did not record one)",
                call.node.name
            ))
        })?;
        // The key recorded when the guest was first reached is the only one
        // accepted from then on; a fresh guest's is accepted (and recorded).
        let check = match call.host_key.as_deref().and_then(ssh::HostKey::parse) {
            Some(key) => HostKeyCheck::pinned(key),
            None => HostKeyCheck::accept_new(Some(ssh.known_hosts.clone())),
        };
        // PVE puts a container's `ssh-public-keys` in root's authorized_keys (there is no
        // cloud-init user in a container); VMs get the cloud-init user.
        let user = match kind_of(&call.node) {
            GuestKind::Lxc => "root",
            GuestKind::Qemu => ssh.user.as_str(),
        };
        let target = SshTarget::new(ip, user, ssh.auth.clone())
            .port(ssh.port)
            .host_keys(check);
        Ok((target, ssh))
    }

    pub fn client(&self) -> &PveClient {
        &self.client
    }

    /// What makes missing templates, when set up.
    pub fn images(&self) -> Option<&Arc<crate::templates::Templates>> {
        self.images.as_ref()
    }
}

impl NodeRunner for PveRunner {
    async fn run(&self, mut call: ActionCall) -> Result<ActionOutput, ActionError> {
        let kind = kind_of(&call.node);
        let t = call.timeout;
        if matches!(
            call.action,
            Action::Configure
                | Action::VerifySsh
                | Action::AwaitPveConfig
                | Action::InstallPve
                | Action::Bootstrap
                | Action::CopySecrets
                | Action::ConfigureBridge
                | Action::CreateApiToken
                | Action::DownloadImages
                | Action::Delegate
                | Action::ShutdownVm
        ) {
            self.refresh_ip(&mut call).await?;
        }
        match call.action {
            Action::EnsureImage => self.ensure_image(&call).await,
            Action::Provision => match self.tofu_for(&call.node) {
                Some((tofu, vars)) => self.tofu_provision(&call, tofu, vars).await,
                None => self.provision(&call).await,
            },
            Action::StartVm => {
                let id = self.required_vmid(&call).await?;
                self.client.start(kind, id, t).await?;
                Ok(ActionOutput::default())
            }
            Action::WaitIp => {
                let id = self.required_vmid(&call).await?;
                let ip = self.client.wait_ipv4(kind, id, t).await?;
                call.facts.log(format!("IPv4 {ip}"));
                Ok(ActionOutput {
                    ip: Some(ip),
                    ..ActionOutput::default()
                })
            }
            Action::InstallPve
            | Action::Bootstrap
            | Action::CopySecrets
            | Action::CreateApiToken
            | Action::ConfigureBridge
            | Action::DownloadImages => self.nested(&call).await,
            Action::Delegate => {
                if call.phase == engine::plan::PhaseKind::Destroy {
                    // A nested PVE that is gone or down takes its guests with it.
                    let running = match self.own_vmid(&call).await? {
                        Some(id) => {
                            self.client.status(kind, id).await?.as_deref() == Some("running")
                        }
                        None => false,
                    };
                    if !running {
                        call.facts
                            .log("nested PVE is not running: its guests go with it");
                        return Ok(ActionOutput::default());
                    }
                }
                self.nested(&call).await
            }
            Action::ShutdownVm => {
                self.stop_nested_quietly(&call).await;
                if let Some(id) = self.own_vmid(&call).await? {
                    self.client.shutdown(kind, id, t).await?;
                }
                Ok(ActionOutput::default())
            }
            Action::DestroyVm if self.tofu_for(&call.node).is_some() => {
                let Some((tofu, vars)) = self.tofu_for(&call.node) else {
                    return Ok(ActionOutput::default());
                };
                let ws = tofu_workspace(tofu, &call.node.name);
                let facts = call.facts.clone();
                ws.destroy(vars, &mut move |l: &str| facts.log(l)).await?;
                Ok(ActionOutput::default())
            }
            Action::DestroyVm => {
                // Only what is this state's is deleted (see `own_vmid`).
                match self.own_vmid(&call).await? {
                    Some(id) => {
                        // First: a failed removal leaves the guest, and a retry finds both.
                        self.remove_pull_snippet(&call, kind, id).await?;
                        self.client.delete_guest(kind, id, t).await?;
                        // The address is free again: forget the old guest's key.
                        if let (Some(ssh), Some(ip)) = (&self.ssh, call.ip.as_deref()) {
                            if let Err(e) = ssh::known_hosts::forget(&ssh.known_hosts, ip, ssh.port)
                            {
                                tracing::warn!("cannot update {}: {e}", ssh.known_hosts.display());
                            }
                        }
                    }
                    None => call.facts.log("no guest found: nothing to delete"),
                }
                Ok(ActionOutput::default())
            }
            Action::WaitSsh => {
                let (target, _) = self.ssh_target(&call)?;
                let conn = ssh::wait_for_ssh(&target, t).await?;
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
                Ok(ActionOutput::default())
            }
            Action::Configure => self.configure(&call).await,
            Action::AwaitPull => self.await_pull(&call).await,
            Action::AwaitPveConfig => self.await_pve_config(&call).await,
            Action::VerifySsh => {
                let (target, _) = self.ssh_target(&call)?;
                let conn = ssh::connect(&target).await?;
                let out = conn.exec("hostname", t).await?.check()?;
                call.facts.log(format!("ssh ok: {}", out.stdout.trim()));
                Ok(ActionOutput::default())
            }
        }
    }

    fn clone_class(&self, node: &NodeSpec, host: &str) -> CloneClass {
        self.clone_class_of(node, host)
    }

    async fn exists(
        &self,
        node: &NodeSpec,
        host: &str,
        vm_id: Option<u32>,
        owner: &Owner,
    ) -> Result<bool, ActionError> {
        self.owned_exists(node, host, vm_id, owner).await
    }

    async fn marked_guests(
        &self,
        owner: &Owner,
        names: &[String],
    ) -> Result<Vec<MarkedGuest>, ActionError> {
        self.owned_marked_guests(owner, names).await
    }
}

fn tofu_workspace(t: &TofuSetup, node: &str) -> crate::tofu::TofuWorkspace {
    let mut ws = crate::tofu::TofuWorkspace::new(&t.env_dir, &t.states_root, &t.env, node);
    if let Some(p) = &t.program {
        ws.program = p.clone();
    }
    ws
}

impl PveRunner {
    fn tofu_for(&self, node: &NodeSpec) -> Option<(&TofuSetup, &serde_json::Value)> {
        let t = self.setup.tofu.as_ref()?;
        t.tfvars.get(&node.name).map(|v| (t, v))
    }

    /// TofuApply for one node; its vmid is recorded before tofu runs when
    /// the tfvars name it, so a crash mid-apply leaves it findable.
    async fn tofu_provision(
        &self,
        call: &ActionCall,
        tofu: &TofuSetup,
        vars: &serde_json::Value,
    ) -> Result<ActionOutput, ActionError> {
        let planned = vars["vms"][0]["vmid"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok());
        if let Some(id) = planned {
            call.facts.vm_id(id).await?;
        }
        let ws = tofu_workspace(tofu, &call.node.name);
        let facts = call.facts.clone();
        let outcome = ws.apply(vars, &mut move |l: &str| facts.log(l)).await?;
        let key = format!("{}_vm_id", call.node.name);
        let vm_id = outcome
            .context
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .or(planned)
            .ok_or_else(|| {
                ActionError::new(format!("tofu apply gave no vmid for '{}'", call.node.name))
            })?;
        Ok(ActionOutput {
            vm_id: Some(vm_id),
            ..ActionOutput::default()
        })
    }

    /// Applies the node's spec with its playbook, over our SSH settings
    /// (the guest's key as accepted at wait_ssh).
    async fn configure(&self, call: &ActionCall) -> Result<ActionOutput, ActionError> {
        let Some(spec) = call.node.spec.as_deref() else {
            return Ok(ActionOutput::default());
        };
        let Some((playbook, vars)) = self.setup.playbooks.get(spec) else {
            call.facts.log(format!(
                "spec '{spec}' has no playbook (site.yaml defaults.playbooks): nothing to apply"
            ));
            return Ok(ActionOutput::default());
        };
        let (target, _) = self.ssh_target(call)?;
        let mut host = ansible::InventoryHost::new(call.node.name.clone(), target);
        // Guests are Debian: its python3, rather than whatever interpreter
        // discovery picks from PATH (a simulated guest shares the host's).
        host.vars.insert(
            "ansible_python_interpreter".into(),
            self.setup.python.clone().into(),
        );
        let mut run = ansible::PlaybookRun::new(playbook.clone(), vec![host], vars.clone());
        run.timeout = call.timeout;
        run.ssh_wait = Some(ansible::DEFAULT_SSH_TIMEOUT);
        run.program = self.setup.ansible_program.clone();
        run.working_dir = playbook.parent().map(PathBuf::from);
        let facts = call.facts.clone();
        let outcome = ansible::run_playbook(&run, move |line| facts.log(line)).await?;
        for f in &outcome.tolerated_failures {
            call.facts.log(format!("tolerated failure: {f:?}"));
        }
        Ok(ActionOutput::default())
    }

    /// A guest's address can change (a new DHCP lease after a restart): asks
    /// its agent again before reaching it over SSH, so an address recorded
    /// earlier never leads to whoever holds it now.
    async fn refresh_ip(&self, call: &mut ActionCall) -> Result<(), ActionError> {
        let Some(id) = call.vm_id else {
            return Ok(());
        };
        let kind = kind_of(&call.node);
        if self.client.status(kind, id).await?.as_deref() != Some("running") {
            return Ok(());
        }
        if let Some(ip) = self.client.guest_ipv4(kind, id).await? {
            if call.ip.as_deref() != Some(ip.as_str()) {
                if let Some(old) = &call.ip {
                    call.facts
                        .log(format!("address changed from {old} to {ip}"));
                }
                call.facts.ip(&ip).await?;
                call.ip = Some(ip);
            }
        }
        Ok(())
    }

    async fn required_vmid(&self, call: &ActionCall) -> Result<u32, ActionError> {
        self.own_vmid(call).await?.ok_or_else(|| {
            ActionError::new(format!(
                "'{}' has no guest yet (provision did not record a vmid)",
                call.node.name
            ))
        })
    }
}
