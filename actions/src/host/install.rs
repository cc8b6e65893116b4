//! `driver host install-pve`: Debian 13 (trixie) → Proxmox VE 9, as Proxmox's
//! "Install Proxmox VE on Debian 13" steps and the original's `pve-install`
//! playbooks do: `/etc/hosts` names the host by its address, the PVE
//! repository and its key, the Proxmox kernel (then a reboot, waited for),
//! PVE's packages, the Debian kernel removed, and PVE's certificates made with
//! IPv6 off (a link-local address with a zone id breaks them: seed 001).

use std::time::{Duration, Instant};

use super::{Host, HostError, Report, Shell, APT, SHORT};
use crate::ssh::{self, shell_quote, SshTarget};

pub const SOURCES: &str = "/etc/apt/sources.list.d/pve-install-repo.sources";
pub const KEYRING: &str = "/usr/share/keyrings/proxmox-archive-keyring.gpg";
pub const KEY_URL: &str =
    "https://enterprise.proxmox.com/debian/proxmox-archive-keyring-trixie.gpg";
pub const PACKAGES: &[&str] = &["proxmox-ve", "postfix", "open-iscsi", "chrony"];
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const SSL: &str = "/etc/pve/local/pve-ssl.pem";

pub fn sources() -> String {
    format!(
        "Types: deb\nURIs: http://download.proxmox.com/debian/pve\nSuites: trixie\n\
         Components: pve-no-subscription\nSigned-By: {KEYRING}\n"
    )
}

pub struct InstallOptions {
    /// The address PVE is to answer on (`/etc/hosts` maps the hostname to it).
    pub address: String,
    /// The DNS domain, for the fully qualified name in `/etc/hosts`.
    pub domain: Option<String>,
    pub skip_preflight: bool,
    pub dry_run: bool,
    pub reboot_timeout: Duration,
}

/// How to reach the host again after it reboots.
pub enum Reconnect<'a> {
    Ssh(&'a SshTarget),
    /// Running on the host itself: the reboot ends this process.
    Local,
}

/// What `install_pve` ended with.
pub enum Installed {
    Done(Report),
    /// `--local`: the Proxmox kernel is in and the machine is rebooting; the
    /// same command after the boot finishes the install.
    Rebooting(Report),
}

pub async fn install_pve(
    h: &mut Host,
    o: &InstallOptions,
    reconnect: Reconnect<'_>,
) -> Result<Installed, HostError> {
    let mut r = Report::default();
    if !o.skip_preflight {
        let rel = h.read("/etc/os-release").await?.unwrap_or_default();
        let is = |k: &str, v: &str| {
            rel.lines()
                .any(|l| l.trim() == format!("{k}={v}") || l.trim() == format!("{k}=\"{v}\""))
        };
        if !(is("ID", "debian") && is("VERSION_CODENAME", "trixie")) {
            return Err(h.refuse(
                "not Debian 13 (trixie) according to /etc/os-release: Proxmox VE 9 installs on Debian 13 \
                 (--skip-preflight to try anyway)",
            ));
        }
        r.unchanged("Debian 13 (trixie)");
    }
    ensure_hosts(h, o, &mut r).await?;
    if let Some(v) = h.has_pve().await? {
        r.unchanged(format!("Proxmox VE installed ({v})"));
        ensure_certs(h, o.dry_run, &mut r).await?;
        return Ok(Installed::Done(r));
    }
    h.ensure_file(SOURCES, &sources(), 0o644, o.dry_run, &mut r)
        .await?;
    if h.read(KEYRING).await?.is_some() {
        r.unchanged(KEYRING);
    } else {
        if !o.dry_run {
            let dest = shell_quote(&h.path(KEYRING));
            h.ok(
                &format!("mkdir -p \"$(dirname {dest})\" && curl -fsSL {KEY_URL} -o {dest}"),
                SHORT,
            )
            .await?;
        }
        r.changed.push(format!("fetched {KEYRING} from {KEY_URL}"));
    }
    if h.installed("proxmox-default-kernel").await? {
        r.unchanged("proxmox-default-kernel");
    } else {
        r.changed
            .push("installed proxmox-default-kernel (after apt-get full-upgrade), rebooted".into());
        if o.dry_run {
            r.changed
                .push(format!("would install {}", PACKAGES.join(" ")));
            return Ok(Installed::Done(r));
        }
        h.ok(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y full-upgrade && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y proxmox-default-kernel",
            APT,
        )
        .await?;
        match reconnect {
            Reconnect::Local => {
                h.ok("systemctl reboot || reboot", SHORT).await?;
                return Ok(Installed::Rebooting(r));
            }
            Reconnect::Ssh(target) => reboot_and_wait(h, target, o.reboot_timeout).await?,
        }
    }
    let mut missing = Vec::new();
    for p in PACKAGES {
        if h.installed(p).await? {
            r.unchanged(*p);
        } else {
            missing.push(*p);
        }
    }
    if !missing.is_empty() {
        if !o.dry_run {
            h.ok(
                &format!(
                    "echo 'postfix postfix/main_mailer_type select Local only' | debconf-set-selections && \
                     DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
                    missing.join(" ")
                ),
                APT,
            )
            .await?;
        }
        r.changed.push(format!("installed {}", missing.join(" ")));
    }
    for p in ["linux-image-amd64", "os-prober"] {
        if h.installed(p).await? {
            if !o.dry_run {
                h.ok(
                    &format!("DEBIAN_FRONTEND=noninteractive apt-get remove -y {p} && update-grub"),
                    APT,
                )
                .await?;
            }
            r.changed.push(format!("removed {p}"));
        }
    }
    ensure_certs(h, o.dry_run, &mut r).await?;
    if !o.dry_run {
        let active = h.run("systemctl is-active pveproxy", SHORT).await?;
        if !active.ok() || h.has_pve().await?.is_none() {
            return Err(h.refuse(format!(
                "PVE's packages are installed but pveproxy is not active ({}): see `journalctl -u pveproxy`",
                active.stdout.trim()
            )));
        }
    }
    Ok(Installed::Done(r))
}

/// `/etc/hosts` maps the hostname to the address PVE answers on (PVE's
/// cluster filesystem refuses to start when it resolves to 127.0.1.1).
async fn ensure_hosts(h: &Host, o: &InstallOptions, r: &mut Report) -> Result<(), HostError> {
    let name = h.ok("hostname", SHORT).await?.trim().to_string();
    let short = name.split('.').next().unwrap_or(&name).to_string();
    if short.is_empty() {
        return Err(h.refuse("`hostname` printed nothing: set one with hostnamectl"));
    }
    let text = h.read("/etc/hosts").await?.unwrap_or_default();
    fn names<'l>(l: &'l str, short: &str) -> (Option<&'l str>, bool) {
        let mut w = l.split_whitespace();
        let addr = w.next();
        let named = w.any(|n| n == short || n.split('.').next() == Some(short));
        (addr, named)
    }
    let names_it = |l: &str| names(l, &short).1;
    if text
        .lines()
        .any(|l| names(l, &short) == (Some(o.address.as_str()), true))
    {
        r.unchanged(format!("/etc/hosts: {short} is {}", o.address));
        return Ok(());
    }
    let mut out: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#') || !names_it(l))
        .collect();
    let fqdn = match &o.domain {
        Some(d) if !d.is_empty() => format!("{short}.{d} {short}"),
        _ => short.clone(),
    };
    let line = format!("{} {fqdn}", o.address);
    out.push(&line);
    let new = out.join("\n") + "\n";
    h.ensure_file("/etc/hosts", &new, 0o644, o.dry_run, r)
        .await?;
    Ok(())
}

/// PVE's certificate, made with IPv6 off for the moment it takes.
async fn ensure_certs(h: &Host, dry_run: bool, r: &mut Report) -> Result<(), HostError> {
    let ssl = shell_quote(&h.path(SSL));
    if h.run(&format!("test -s {ssl}"), SHORT).await?.ok() {
        r.unchanged(SSL);
        return Ok(());
    }
    if !dry_run {
        h.ok(
            "sysctl -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
             pvecm updatecerts --force; rc=$?; \
             sysctl -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0; \
             [ $rc = 0 ] && systemctl restart pveproxy",
            SHORT,
        )
        .await?;
    }
    r.changed
        .push("made PVE's certificates (pvecm updatecerts, IPv6 off meanwhile)".into());
    Ok(())
}

/// Reboots and waits until the host answers SSH with a new boot id.
async fn reboot_and_wait(
    h: &mut Host,
    target: &SshTarget,
    timeout: Duration,
) -> Result<(), HostError> {
    let before = h.read(BOOT_ID).await?.unwrap_or_default();
    // The connection may drop before the command returns: that is the reboot.
    let _ = h.run("systemctl reboot || reboot", SHORT).await;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(h.refuse(format!(
                "did not come back from its reboot in {} s",
                timeout.as_secs()
            )));
        }
        if let Ok(conn) = ssh::wait_for_ssh(target, left).await {
            h.shell = Shell::Ssh(conn);
            let now = h.read(BOOT_ID).await?.unwrap_or_default();
            if now != before {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
