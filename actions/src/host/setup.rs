//! `driver host setup` (the original's pve-setup): repositories without a
//! subscription, storage content types (snippets for cloud-init, import for
//! image imports), the bridge, nested virtualization, and driver's API token;
//! what it learns (node name, certificate fingerprint, datastore) becomes the
//! host's `nodes/NAME.yaml`.

use super::{pve, Host, HostError, Report, SHORT};
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

pub struct SetupOptions {
    pub bridge: String,
    /// Site default `pve_remove_subscription_nag` (default true).
    pub remove_nag: bool,
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

pub async fn setup(h: &Host, o: &SetupOptions) -> Result<Setup, HostError> {
    let mut r = Report::default();
    if h.has_pve().await?.is_none() {
        return Err(h.refuse(format!(
            "Proxmox VE is not installed: run `driver host install-pve` on {} first",
            h.label
        )));
    }
    ensure_repos(h, o.dry_run, &mut r).await?;
    if o.remove_nag {
        remove_nag(h, o.dry_run, &mut r).await?;
    }
    let node = pve::node_name(h, None).await?;
    let datastore = pve::ensure_storage(h, &node, o.dry_run, &mut r).await?;
    pve::ensure_bridge(
        h,
        &node,
        &o.bridge,
        pve::BridgePort::DefaultRoute,
        o.dry_run,
        &mut r,
    )
    .await?;
    h.ensure_file(NESTED_CONF, NESTED, 0o644, o.dry_run, &mut r)
        .await?;
    let fingerprint = pve::fingerprint(h, &node).await?;
    let token_id = format!("{TOKEN_USER}!{TOKEN_ID}");
    let known = o.known_token_id.as_deref() == Some(token_id.as_str());
    let new_token =
        pve::ensure_token(h, TOKEN_USER, TOKEN_ID, "driver", known, o.dry_run, &mut r).await?;
    Ok(Setup {
        report: r,
        node,
        fingerprint,
        datastore,
        new_token,
        token_id,
    })
}

/// Repositories: the enterprise ones need a subscription, so they are
/// disabled; pve-install-repo (install-pve) or PVE's own no-subscription
/// entry is the one to use.
pub async fn ensure_repos(h: &Host, dry_run: bool, r: &mut Report) -> Result<(), HostError> {
    for file in ENTERPRISE {
        if let Some(text) = h.read(file).await? {
            if text.lines().any(|l| l.trim() == "Enabled: no") {
                r.unchanged(format!("{file} disabled"));
            } else {
                let new = format!("{}\nEnabled: no\n", text.trim_end());
                h.ensure_file(file, &new, 0o644, dry_run, r).await?;
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
        return Ok(());
    }
    h.ensure_file(
        super::install::SOURCES,
        &super::install::sources(),
        0o644,
        dry_run,
        r,
    )
    .await?;
    Ok(())
}

/// The web UI's "No valid subscription" dialog: as the original's configure
/// role does, its check in proxmoxlib.js becomes `false` (the file kept
/// beside it as `.bak`), then pveproxy restarts. An upgrade of
/// proxmox-widget-toolkit brings the dialog back; setup run again removes it.
pub const PROXMOXLIB: &str = "/usr/share/javascript/proxmox-widget-toolkit/proxmoxlib.js";

pub async fn remove_nag(h: &Host, dry_run: bool, r: &mut Report) -> Result<(), HostError> {
    let Some(text) = h.read(PROXMOXLIB).await? else {
        r.unchanged(format!("subscription dialog: no {PROXMOXLIB}"));
        return Ok(());
    };
    let Some(patched) = without_nag(&text) else {
        r.unchanged("subscription dialog removed");
        return Ok(());
    };
    if !dry_run {
        let bak = format!("{PROXMOXLIB}.bak");
        if h.read(&bak).await?.is_none() {
            h.write(&bak, &text, 0o644).await?;
        }
        h.write(PROXMOXLIB, &patched, 0o644).await?;
        h.ok("systemctl restart pveproxy", SHORT).await?;
    }
    r.changed.push(format!(
        "removed the subscription dialog ({PROXMOXLIB}; the original kept as .bak), restarted pveproxy"
    ));
    Ok(())
}

/// proxmoxlib.js with its subscription check replaced by `false` (`None`:
/// no such check, e.g. already done). The check spans a line break whose
/// indentation differs between versions.
fn without_nag(js: &str) -> Option<String> {
    const HEAD: &str = "res === null || res === undefined || !res || res";
    const TAIL: &str = ".data.status.toLowerCase() !== 'active'";
    let mut from = 0;
    while let Some(i) = js[from..].find(HEAD).map(|i| i + from) {
        let after = &js[i + HEAD.len()..];
        let rest = after.trim_start();
        if rest.starts_with(TAIL) {
            let end = js.len() - rest.len() + TAIL.len();
            return Some(format!("{}false{}", &js[..i], &js[end..]));
        }
        from = i + HEAD.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::without_nag;

    #[test]
    fn the_subscription_check_becomes_false_once() {
        let js = "if (res === null || res === undefined || !res || res\n\t\t\t.data.status.toLowerCase() !== 'active') {\n  Ext.Msg.show({title: gettext('No valid subscription')";
        let once = without_nag(js).expect("the check is found");
        assert_eq!(
            once,
            "if (false) {\n  Ext.Msg.show({title: gettext('No valid subscription')"
        );
        assert_eq!(without_nag(&once), None);
        assert_eq!(
            without_nag("res === null || res === undefined || !res || res.x"),
            None
        );
    }
}
