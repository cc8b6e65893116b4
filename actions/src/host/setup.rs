//! `driver host setup` (the original's pve-setup): repositories without a
//! subscription, storage content types (snippets for cloud-init, import for
//! image imports), the bridge, nested virtualization, and driver's API token;
//! what it learns (node name, certificate fingerprint, datastore) becomes the
//! host's `nodes/NAME.yaml`.

use serde_json::Value;

use super::{Host, HostError, Report, SHORT};
use crate::ssh::shell_quote;
use engine::secrets::Secret;

/// The token driver uses: `root@pam!driver`.
pub const TOKEN_USER: &str = "root@pam";
pub const TOKEN_ID: &str = "driver";
const ENTERPRISE: &[&str] = &[
    "/etc/apt/sources.list.d/pve-enterprise.sources",
    "/etc/apt/sources.list.d/ceph.sources",
];
const NESTED_CONF: &str = "/etc/modprobe.d/kvm-nested.conf";
const NESTED: &str = "options kvm_intel nested=1\noptions kvm_amd nested=1\n";
const CONTENT_WANTED: &[&str] = &["snippets", "import"];

pub struct SetupOptions {
    pub bridge: String,
    pub dry_run: bool,
    /// Is the token the site's secrets hold for this host still the one on it?
    /// (`Some(id)`: the secrets hold a token with this id.)
    pub known_token_id: Option<String>,
}

/// What setup found and made.
pub struct Setup {
    pub report: Report,
    pub node: String,
    pub fingerprint: Option<String>,
    pub datastore: String,
    /// A new token (`root@pam!driver=SECRET`), when one was made.
    pub new_token: Option<Secret<String>>,
    pub token_id: String,
}

async fn json(h: &Host, cmd: &str) -> Result<Value, HostError> {
    let out = h.ok(cmd, SHORT).await?;
    serde_json::from_str(&out).map_err(|e| h.refuse(format!("`{cmd}` printed no JSON ({e})")))
}

pub async fn setup(h: &Host, o: &SetupOptions) -> Result<Setup, HostError> {
    let mut r = Report::default();
    if h.has_pve().await?.is_none() {
        return Err(h.refuse(format!(
            "Proxmox VE is not installed: run `driver host install-pve` on {} first",
            h.label
        )));
    }
    // Repositories: the enterprise ones need a subscription; pve-install-repo
    // (install-pve) or PVE's own no-subscription entry is the one to use.
    for file in ENTERPRISE {
        if let Some(text) = h.read(file).await? {
            if text.lines().any(|l| l.trim() == "Enabled: no") {
                r.unchanged(format!("{file} disabled"));
            } else {
                let new = format!("{}\nEnabled: no\n", text.trim_end());
                h.ensure_file(file, &new, 0o644, o.dry_run, &mut r).await?;
            }
        }
    }
    let no_sub = h
        .run(
            &format!(
                "grep -rls pve-no-subscription {} 2>/dev/null",
                shell_quote(&h.path("/etc/apt/sources.list.d"))
            ),
            SHORT,
        )
        .await?;
    if no_sub.ok() {
        r.unchanged("pve-no-subscription repository");
    } else {
        h.ensure_file(
            super::install::SOURCES,
            &super::install::sources(),
            0o644,
            o.dry_run,
            &mut r,
        )
        .await?;
    }

    let nodes = json(h, "pvesh get /nodes --output-format json").await?;
    let node = nodes
        .as_array()
        .and_then(|a| a.first())
        .and_then(|n| n["node"].as_str())
        .ok_or_else(|| h.refuse("`pvesh get /nodes` lists no node"))?
        .to_string();

    let storage = json(
        h,
        &format!("pvesh get /nodes/{node}/storage --output-format json"),
    )
    .await?;
    let list = storage.as_array().cloned().unwrap_or_default();
    let local = list.iter().find(|s| s["storage"] == "local");
    match local.and_then(|s| s["content"].as_str()) {
        Some(content) => {
            let mut have: Vec<&str> = content.split(',').filter(|c| !c.is_empty()).collect();
            let missing: Vec<&str> = CONTENT_WANTED
                .iter()
                .copied()
                .filter(|c| !have.contains(c))
                .collect();
            if missing.is_empty() {
                r.unchanged("storage local: content has snippets, import");
            } else {
                have.extend(&missing);
                if !o.dry_run {
                    h.ok(
                        &format!("pvesm set local --content {}", have.join(",")),
                        SHORT,
                    )
                    .await?;
                }
                r.changed.push(format!(
                    "storage local: added content {}",
                    missing.join(", ")
                ));
            }
        }
        None => return Err(h.refuse("PVE has no storage `local`: add it (Datacenter → Storage)")),
    }
    // Guest disks: local-lvm (or local-zfs) where the installer made one, else local.
    let datastore = ["local-lvm", "local-zfs"]
        .iter()
        .find(|d| list.iter().any(|s| s["storage"] == **d))
        .map_or("local", |d| d)
        .to_string();

    ensure_bridge(h, &node, &o.bridge, o.dry_run, &mut r).await?;
    h.ensure_file(NESTED_CONF, NESTED, 0o644, o.dry_run, &mut r)
        .await?;

    let certs = json(
        h,
        &format!("pvesh get /nodes/{node}/certificates/info --output-format json"),
    )
    .await?;
    let fingerprint = certs.as_array().and_then(|a| {
        a.iter()
            .find(|c| c["filename"] == "pve-ssl.pem")
            .and_then(|c| c["fingerprint"].as_str())
            .map(str::to_string)
    });

    let token_id = format!("{TOKEN_USER}!{TOKEN_ID}");
    let tokens = json(
        h,
        &format!("pveum user token list {TOKEN_USER} --output-format json"),
    )
    .await?;
    let on_host = tokens
        .as_array()
        .is_some_and(|a| a.iter().any(|t| t["tokenid"] == TOKEN_ID));
    let new_token = if on_host && o.known_token_id.as_deref() == Some(token_id.as_str()) {
        r.unchanged(format!("API token {token_id} (in the site's secrets)"));
        None
    } else if o.dry_run {
        r.changed.push(format!(
            "would make API token {token_id} and store it in the site's secrets"
        ));
        None
    } else {
        // A token's secret is shown once: one the secrets lack is made anew.
        if on_host {
            h.ok(
                &format!("pveum user token remove {TOKEN_USER} {TOKEN_ID}"),
                SHORT,
            )
            .await?;
        }
        let made = json(
            h,
            &format!(
                "pveum user token add {TOKEN_USER} {TOKEN_ID} --privsep 0 --comment driver --output-format json"
            ),
        )
        .await?;
        let value = made["value"]
            .as_str()
            .ok_or_else(|| h.refuse("`pveum user token add` printed no token value"))?;
        r.changed.push(format!("made API token {token_id}"));
        Some(Secret::new(format!("{token_id}={value}")))
    };
    Ok(Setup {
        report: r,
        node,
        fingerprint,
        datastore,
        new_token,
        token_id,
    })
}

/// The bridge guests attach to, holding the address of the interface with the
/// default route (as PVE's installer makes vmbr0).
async fn ensure_bridge(
    h: &Host,
    node: &str,
    bridge: &str,
    dry_run: bool,
    r: &mut Report,
) -> Result<(), HostError> {
    let net = json(
        h,
        &format!("pvesh get /nodes/{node}/network --output-format json"),
    )
    .await?;
    if net
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["iface"] == bridge))
    {
        r.unchanged(format!("bridge {bridge}"));
        return Ok(());
    }
    let route = json(h, "ip -j -4 route show default").await?;
    let dev = route[0]["dev"].as_str().ok_or_else(|| {
        h.refuse("no default route: cannot tell which interface the bridge takes")
    })?;
    let gateway = route[0]["gateway"].as_str().unwrap_or_default().to_string();
    let addrs = json(h, "ip -j -4 addr").await?;
    let info = addrs
        .as_array()
        .and_then(|a| a.iter().find(|i| i["ifname"] == dev))
        .and_then(|i| i["addr_info"].as_array())
        .and_then(|a| a.iter().find(|x| x["family"] == "inet"))
        .ok_or_else(|| h.refuse(format!("{dev} has no IPv4 address")))?;
    let cidr = format!(
        "{}/{}",
        info["local"].as_str().unwrap_or_default(),
        info["prefixlen"].as_u64().unwrap_or(24)
    );
    if !dry_run {
        h.ok(
            &format!(
                "pvesh create /nodes/{node}/network --iface {bridge} --type bridge --autostart 1 \
                 --bridge_ports {dev} --cidr {cidr} --gateway {gateway} && pvesh set /nodes/{node}/network"
            ),
            SHORT,
        )
        .await?;
    }
    r.changed.push(format!(
        "bridge {bridge} on {dev} ({cidr}), network reloaded"
    ));
    Ok(())
}
