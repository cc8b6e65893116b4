//! `driver host install-pve|setup|user|bootstrap`: the machine from the
//! command line (a site-config host, an address, or this machine), the step
//! run on it (`actions::host`), and what setup learns written back into the
//! site-config: `nodes/NAME.yaml` and the API token in `secrets.yaml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actions::host::{self, install, Host, HostError, Report, Shell};
use actions::ssh::{self, HostKeyCheck, SshTarget};
use engine::site_config::{Entity, SiteConfig};
use serde::Serialize;
use serde_json::{Map, Value};

use super::config::{config_failure, open_secrets};
use super::Failure;
use crate::cli::host::{HostCmd, StepArgs};

#[derive(Serialize)]
struct StepOutput {
    step: &'static str,
    host: String,
    success: bool,
    dry_run: bool,
    changed: Vec<String>,
    unchanged: Vec<String>,
    context: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn usage(msg: String, help: Option<String>) -> Failure {
    Failure::usage(match help {
        Some(h) => miette::miette!(help = h, "{msg}"),
        None => miette::miette!("{msg}"),
    })
}

fn run_err(e: impl std::fmt::Display) -> Failure {
    Failure::Run(Some(miette::miette!("{e}")))
}

/// The machine a step works on, resolved.
struct Machine {
    label: String,
    /// The name for its node file.
    name: Option<String>,
    address: Option<String>,
    domain: Option<String>,
    ssh: Option<SshTarget>,
}

pub fn run(cmd: &HostCmd, site_flag: Option<&Path>) -> Result<(), Failure> {
    let a = cmd.step();
    let step = match cmd {
        HostCmd::InstallPve(_) => "install-pve",
        HostCmd::Setup(_) => "setup",
        HostCmd::User(_) => "user",
        HostCmd::Bootstrap(_) => "bootstrap",
    };
    let dir = super::discover_site(site_flag)?;
    let site = SiteConfig::open(dir).map_err(config_failure)?;
    let m = machine(&site, a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(run_err)?;
    let mut context = Map::new();
    let result = rt.block_on(async {
        let shell = match &m.ssh {
            Some(t) => Shell::Ssh(ssh::connect(t).await?),
            None => Shell::Local,
        };
        let mut h = Host {
            shell,
            root: a.root.clone(),
            label: m.label.clone(),
        };
        run_step(cmd, &site, &m, &mut h, &mut context).await
    });
    let (report, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (Report::default(), Some(e)),
    };
    let out = StepOutput {
        step,
        host: m.label.clone(),
        success: error.is_none(),
        dry_run: a.dry_run,
        changed: report.changed,
        unchanged: report.unchanged,
        context,
        error: error.as_ref().map(|e| {
            e.report()
                .map_or_else(|| "failed".into(), ToString::to_string)
        }),
    };
    if a.json_output {
        crate::render::json::print(&out);
    } else {
        let verb = if a.dry_run { "would change" } else { "changed" };
        for c in &out.changed {
            crate::outln!("{verb}: {c}");
        }
        crate::outln!(
            "{step} on {}: {} change(s), {} already so",
            out.host,
            out.changed.len(),
            out.unchanged.len()
        );
    }
    match error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        Failure::Run(Some(miette::miette!("{e}")))
    }
}

impl From<ssh::SshError> for Failure {
    fn from(e: ssh::SshError) -> Self {
        Failure::Run(Some(miette::miette!("{e}")))
    }
}

fn machine(site: &SiteConfig, a: &StepArgs) -> Result<Machine, Failure> {
    if let Some(addr) = &a.remote {
        let target = SshTarget::new(
            addr.clone(),
            a.ssh_user.clone(),
            super::hostcheck::host_auth(None),
        )
        .port(a.ssh_port)
        .host_keys(HostKeyCheck::strict_default());
        return Ok(Machine {
            label: addr.clone(),
            name: a.name.clone(),
            address: a.address.clone().or_else(|| Some(addr.clone())),
            domain: None,
            ssh: Some(target),
        });
    }
    let Some(name) = &a.host else {
        return Ok(Machine {
            label: "localhost".into(),
            name: a.name.clone(),
            address: a.address.clone(),
            domain: None,
            ssh: None,
        });
    };
    // No secrets needed to reach a machine (a node file's token may not exist yet).
    let hc = site.host(name, None).map_err(config_failure)?;
    let ip = hc.ssh_host.clone().ok_or_else(|| {
        usage(
            format!("{} gives no address to reach '{name}' over SSH", hc.file),
            Some(format!("set `ip:` in {}", hc.file)),
        )
    })?;
    let (bridge_addr, domain) = match site.try_find(Entity::Host, name).map_err(config_failure)? {
        Some(f) => {
            let d = &f.doc;
            let addr = d
                .get("network")
                .and_then(|n| n.get("interfaces"))
                .and_then(|i| i.get(&hc.bridge))
                .and_then(|b| b.get("address"))
                .and_then(|a| a.as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string());
            (
                addr,
                d.get("domain").and_then(|x| x.as_str()).map(str::to_string),
            )
        }
        None => (None, None),
    };
    let ssh_key = site.default_str("ssh_key").map(PathBuf::from);
    let target = SshTarget::new(
        ip.clone(),
        hc.ssh_user.clone(),
        super::hostcheck::host_auth(ssh_key.as_deref()),
    )
    .port(hc.ssh_port)
    .host_keys(HostKeyCheck::strict_default());
    Ok(Machine {
        label: name.clone(),
        name: Some(a.name.clone().unwrap_or_else(|| name.clone())),
        address: a.address.clone().or(bridge_addr).or(Some(ip)),
        domain,
        ssh: Some(target),
    })
}

async fn run_step(
    cmd: &HostCmd,
    site: &SiteConfig,
    m: &Machine,
    h: &mut Host,
    ctx: &mut Map<String, Value>,
) -> Result<Report, Failure> {
    let a = cmd.step();
    match cmd {
        HostCmd::InstallPve(i) => {
            let address = pve_address(address_of(m, h).await?)?;
            let o = install::InstallOptions {
                address,
                domain: m.domain.clone(),
                skip_preflight: i.skip_preflight,
                dry_run: a.dry_run,
                reboot_timeout: Duration::from_secs(i.reboot_timeout),
            };
            let reconnect = match &m.ssh {
                Some(t) => install::Reconnect::Ssh(t),
                None => install::Reconnect::Local,
            };
            match install::install_pve(h, &o, reconnect).await? {
                install::Installed::Done(r) => Ok(r),
                install::Installed::Rebooting(r) => {
                    crate::errln!("rebooting into the Proxmox kernel: run the same command after the boot to finish");
                    Ok(r)
                }
            }
        }
        HostCmd::Setup(_) => {
            super::host_node::setup(
                site,
                m.name.clone(),
                pve_address(address_of(m, h).await?)?,
                m.ssh.as_ref(),
                h,
                a.dry_run,
                ctx,
            )
            .await
        }
        HostCmd::User(u) => {
            let mut keys = site_keys(site)?;
            for f in &u.ssh_keys {
                let k = std::fs::read_to_string(f)
                    .map_err(|e| usage(format!("cannot read {}: {e}", f.display()), None))?;
                keys.push(k.trim().to_string());
            }
            let o = host::user::UserOptions {
                name: u.user.clone(),
                keys,
                nopasswd: true,
                dry_run: a.dry_run,
            };
            if !host::user::valid_name(&o.name) {
                return Err(usage(
                    format!("--user {}: not a user name useradd takes", o.name),
                    None,
                ));
            }
            ctx.insert("user".into(), Value::String(o.name.clone()));
            Ok(host::user::user(h, &o).await?)
        }
        HostCmd::Bootstrap(_) => {
            let binary = std::env::current_exe().map_err(run_err)?;
            let o = host::bootstrap::BootstrapOptions {
                binary,
                version: format!("driver {}", crate::cli::VERSION),
                site_files: super::host_node::site_files(site)?,
                dry_run: a.dry_run,
            };
            ctx.insert("bootstrapped".into(), Value::String(m.label.clone()));
            Ok(host::bootstrap::bootstrap(h, &o).await?)
        }
    }
}

/// The address PVE is to answer on: given, or (`--local`) the one this
/// machine's default route uses, unless that is ambiguous.
async fn address_of(m: &Machine, h: &Host) -> Result<Option<String>, Failure> {
    if m.address.is_some() || m.ssh.is_some() {
        return Ok(m.address.clone());
    }
    match h.own_address().await? {
        Ok(a) => {
            tracing::info!("--local: PVE is to answer on {a} (the default route's address)");
            Ok(Some(a))
        }
        Err(why) => Err(usage(
            format!("which address is PVE to answer on? {why}"),
            Some("pass --address ADDR".into()),
        )),
    }
}

fn pve_address(addr: Option<String>) -> Result<String, Failure> {
    let addr = addr.ok_or_else(|| {
        usage(
            "which address is PVE to answer on?".into(),
            Some("pass --address ADDR".into()),
        )
    })?;
    if addr.starts_with("127.") || addr == "::1" || addr == "localhost" {
        return Err(usage(
            format!("{addr} is a loopback address: PVE must answer on the host's own address"),
            Some("give the host's address with --address ADDR (or the bridge's address in hosts/NAME.yaml)".into()),
        ));
    }
    Ok(addr)
}

/// The site's public SSH keys (`ssh_keys` in secrets.yaml).
fn site_keys(site: &SiteConfig) -> Result<Vec<String>, Failure> {
    let Some(s) = open_secrets(site).map_err(config_failure)? else {
        return Ok(vec![]);
    };
    Ok(s.tree
        .get("ssh_keys")
        .map(|t| {
            t.entries()
                .iter()
                .filter_map(|(_, v)| v.secret().map(|s| s.expose().trim().to_string()))
                .collect()
        })
        .unwrap_or_default())
}
