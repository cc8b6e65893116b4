//! What `driver host setup` and a nested PVE's setup (`crate::nested::installed`)
//! both do to a PVE host through its command line tools, done one way: which
//! node it is, the storage guest disks and snippets go to, the bridge guests
//! attach to, the API certificate's fingerprint, and an API token. Each reads
//! before it writes and reports into a [`Report`].

use serde_json::Value;

use super::{Host, HostError, Report, SHORT};
use crate::ssh::shell_quote;
use engine::secrets::Secret;

/// Runs a PVE tool that prints JSON (`--output-format json`) and parses it.
pub async fn json(h: &Host, cmd: &str) -> Result<Value, HostError> {
    let out = h.ok(cmd, SHORT).await?;
    serde_json::from_str(out.trim()).map_err(|e| h.refuse(format!("`{cmd}` printed no JSON ({e})")))
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The PVE node name: the one node of a fresh install, or the one named
/// `prefer` where there are several.
pub async fn node_name(h: &Host, prefer: Option<&str>) -> Result<String, HostError> {
    let nodes = json(h, "pvesh get /nodes --output-format json").await?;
    let names: Vec<&str> = list(&nodes).filter_map(|n| str_of(n, "node")).collect();
    match names.as_slice() {
        [only] => Ok(only.to_string()),
        many if prefer.is_some_and(|p| many.contains(&p)) => {
            Ok(prefer.unwrap_or_default().to_string())
        }
        _ => Err(h.refuse(format!(
            "cannot tell which PVE node this is (its nodes: {})",
            names.join(", ")
        ))),
    }
}

/// Content types storage `local` must take: cloud-init snippets and image imports.
const LOCAL_WANTED: &[&str] = &["snippets", "import"];
/// Added to `local` too when no storage takes guest disks (a fresh install
/// without LVM: the seed's nested-pve role widens `local` the same way).
const DISKS: &[&str] = &["images", "rootdir"];

/// Storage `local` takes snippets and imports (and guest disks when nothing
/// else does); returns the datastore for guest disks: the first active one
/// that takes them, `local-lvm` (then `local-zfs`) first.
pub async fn ensure_storage(
    h: &Host,
    node: &str,
    dry_run: bool,
    r: &mut Report,
) -> Result<String, HostError> {
    let storage = json(
        h,
        &format!("pvesh get /nodes/{node}/storage --output-format json"),
    )
    .await?;
    let takes_disks = |s: &&Value| {
        str_of(s, "content").is_some_and(|c| c.split(',').any(|c| c == "images"))
            && s.get("active").and_then(Value::as_u64).unwrap_or(1) == 1
    };
    let mut disks: Vec<&str> = list(&storage)
        .filter(takes_disks)
        .filter_map(|s| str_of(s, "storage"))
        .collect();
    let Some(local) = list(&storage).find(|s| str_of(s, "storage") == Some("local")) else {
        return Err(h.refuse("PVE has no storage `local`: add it (Datacenter → Storage)"));
    };
    let mut have: Vec<&str> = str_of(local, "content")
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
        .collect();
    let mut wanted = LOCAL_WANTED.to_vec();
    if disks.is_empty() {
        wanted.extend(DISKS);
        disks.push("local");
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|c| !have.contains(c)).collect();
    if missing.is_empty() {
        r.unchanged(format!("storage local: content has {}", have.join(",")));
    } else {
        have.extend(&missing);
        if !dry_run {
            h.ok(
                &format!("pvesm set local --content {}", shell_quote(&have.join(","))),
                SHORT,
            )
            .await?;
        }
        r.changed.push(format!(
            "storage local: added content {}",
            missing.join(", ")
        ));
    }
    disks.sort_by_key(|d| match *d {
        "local-lvm" => 0,
        "local-zfs" => 1,
        _ => 2,
    });
    Ok(disks[0].to_string())
}

/// Which interface the bridge takes over.
pub enum BridgePort<'a> {
    /// The one with the default route (as PVE's installer makes vmbr0).
    DefaultRoute,
    /// The one holding this address (a nested PVE: the address its parent reaches it on).
    Holding(&'a str),
}

/// `bridge` exists and is active, or is made over the interface `port` picks
/// (its address moving onto the bridge) and PVE's network reloaded.
pub async fn ensure_bridge(
    h: &Host,
    node: &str,
    bridge: &str,
    port: BridgePort<'_>,
    dry_run: bool,
    r: &mut Report,
) -> Result<(), HostError> {
    let get = format!("pvesh get /nodes/{node}/network --output-format json");
    let state = |nets: &Value| {
        list(nets)
            .find(|i| str_of(i, "iface") == Some(bridge))
            .map(|i| i.get("active").and_then(Value::as_u64) == Some(1))
    };
    let reload = format!("pvesh set /nodes/{node}/network");
    match state(&json(h, &get).await?) {
        Some(true) => {
            r.unchanged(format!("bridge {bridge}"));
            return Ok(());
        }
        // Made but not applied (an earlier run stopped before the reload).
        Some(false) => {
            if !dry_run {
                h.ok(&reload, SHORT).await?;
            }
            r.changed
                .push(format!("bridge {bridge}: network reloaded to apply it"));
        }
        None => {
            let routes = json(h, "ip -j -4 route show default").await?;
            let default = list(&routes).next();
            let gateway = default.and_then(|d| str_of(d, "gateway"));
            let addrs = json(h, "ip -j -4 addr show").await?;
            fn holding<'v>(
                link: &'v Value,
                want: &dyn Fn(&Value) -> bool,
            ) -> Option<(&'v str, u64)> {
                let a = list(link.get("addr_info")?)
                    .find(|a| str_of(a, "family") != Some("inet6") && want(a))?;
                Some((str_of(a, "local")?, a.get("prefixlen")?.as_u64()?))
            }
            let found = match port {
                BridgePort::Holding(ip) => list(&addrs).find_map(|l| {
                    let (addr, prefix) = holding(l, &|a| str_of(a, "local") == Some(ip))?;
                    Some((str_of(l, "ifname")?, addr, prefix))
                }),
                BridgePort::DefaultRoute => {
                    let dev = default.and_then(|d| str_of(d, "dev")).ok_or_else(|| {
                        h.refuse("no default route: cannot tell which interface the bridge takes")
                    })?;
                    list(&addrs)
                        .filter(|l| str_of(l, "ifname") == Some(dev))
                        .find_map(|l| {
                            let (addr, prefix) = holding(l, &|_| true)?;
                            Some((dev, addr, prefix))
                        })
                }
            };
            let (iface, addr, prefix) = found.ok_or_else(|| {
                h.refuse(match port {
                    BridgePort::Holding(ip) => format!("no interface holds its address {ip}"),
                    BridgePort::DefaultRoute => {
                        "the default route's interface has no IPv4 address".into()
                    }
                })
            })?;
            let gateway = gateway
                .map(|g| format!(" --gateway {}", shell_quote(g)))
                .unwrap_or_default();
            if !dry_run {
                h.ok(
                    &format!(
                        "pvesh create /nodes/{node}/network --iface {bridge} --type bridge \
                         --autostart 1 --bridge_ports {iface} --cidr {cidr}{gateway} && {reload}",
                        bridge = shell_quote(bridge),
                        iface = shell_quote(iface),
                        cidr = shell_quote(&format!("{addr}/{prefix}")),
                    ),
                    SHORT,
                )
                .await?;
            }
            r.changed.push(format!(
                "bridge {bridge} on {iface} ({addr}/{prefix}), network reloaded"
            ));
        }
    }
    if !dry_run && state(&json(h, &get).await?) != Some(true) {
        return Err(h.refuse(format!(
            "bridge {bridge} is not active after the network reload"
        )));
    }
    Ok(())
}

/// The fingerprint of the certificate PVE's API serves: an uploaded one
/// (`pveproxy-ssl.pem`) over PVE's own.
pub async fn fingerprint(h: &Host, node: &str) -> Result<Option<String>, HostError> {
    let certs = json(
        h,
        &format!("pvesh get /nodes/{node}/certificates/info --output-format json"),
    )
    .await?;
    let cert = |file: &str| {
        list(&certs)
            .find(|c| str_of(c, "filename") == Some(file))
            .and_then(|c| str_of(c, "fingerprint"))
            .map(str::to_string)
    };
    Ok(cert("pveproxy-ssl.pem").or_else(|| cert("pve-ssl.pem")))
}

/// The API token `user!id`: kept when it is on the host and `known` (the
/// caller holds its secret); else made anew (a token's secret is shown only
/// once, so one whose secret is lost is replaced). A new one comes back as
/// `user!id=SECRET`.
pub async fn ensure_token(
    h: &Host,
    user: &str,
    id: &str,
    comment: &str,
    known: bool,
    dry_run: bool,
    r: &mut Report,
) -> Result<Option<Secret<String>>, HostError> {
    let full = format!("{user}!{id}");
    let tokens = json(
        h,
        &format!("pveum user token list {user} --output-format json"),
    )
    .await?;
    let on_host = list(&tokens).any(|t| str_of(t, "tokenid") == Some(id));
    if on_host && known {
        r.unchanged(format!("API token {full}"));
        return Ok(None);
    }
    if dry_run {
        r.changed.push(format!("would make API token {full}"));
        return Ok(None);
    }
    if on_host {
        h.ok(&format!("pveum user token remove {user} {id}"), SHORT)
            .await?;
    }
    let made = json(
        h,
        &format!(
            "pveum user token add {user} {id} --privsep 0 --comment {} --output-format json",
            shell_quote(comment)
        ),
    )
    .await?;
    let value = str_of(&made, "value")
        .ok_or_else(|| h.refuse("`pveum user token add` printed no token value"))?;
    r.changed.push(format!("made API token {full}"));
    Ok(Some(Secret::new(format!("{full}={value}"))))
}
