//! What `driver host setup` writes into the site-config: the host's
//! `nodes/NAME.yaml` and its API token in `secrets.yaml` (re-encrypted to the
//! same recipients when the file is encrypted), and the files `driver host
//! bootstrap` copies onto a host.

use std::path::{Path, PathBuf};

use actions::host::{self, Host, Report};
use actions::ssh::SshTarget;
use engine::secrets::sops::{self, EncryptOptions};
use engine::secrets::{age::Recipient, to_yaml, Leaf, Tree};
use engine::site_config::SiteConfig;
use serde_json::{Map, Value};

use super::config::{config_failure, open_secrets};
use super::Failure;

fn run_err(e: impl std::fmt::Display) -> Failure {
    Failure::Run(Some(miette::miette!("{e}")))
}

fn site_dir(site: &SiteConfig) -> Result<&Path, Failure> {
    site.dir.path.as_deref().ok_or_else(|| {
        Failure::usage(miette::miette!(
            help = "point --site-config (or $HOMESTAK_SITE_CONFIG) at your site-config folder",
            "the built-in example site-config cannot be written to"
        ))
    })
}

pub async fn setup(
    site: &SiteConfig,
    name: Option<String>,
    address: String,
    ssh: Option<&SshTarget>,
    h: &Host,
    dry_run: bool,
    ctx: &mut Map<String, Value>,
) -> Result<Report, Failure> {
    let dir = site_dir(site)?.to_path_buf();
    let name = match name {
        Some(n) => n,
        None => h.ok("hostname -s", host::SHORT).await?.trim().to_string(),
    };
    if !engine::site_config::plain_name(&name) {
        return Err(Failure::usage(miette::miette!(
            "'{name}' cannot name a node file"
        )));
    }
    let secrets = open_secrets(site).map_err(config_failure)?;
    let known = secrets
        .as_ref()
        .and_then(|s| s.get(&["api_tokens", &name]))
        .map(|t| t.expose().split('=').next().unwrap_or_default().to_string());
    let o = host::setup::SetupOptions {
        bridge: site.default_str("bridge").unwrap_or("vmbr0").to_string(),
        // As the original's configure role: `defaults.pve_remove_subscription_nag` (default true).
        remove_nag: site
            .defaults()
            .and_then(|d| d.get("pve_remove_subscription_nag"))
            .is_none_or(|v| v.value != engine::yaml::Value::Bool(false)),
        dry_run,
        known_token_id: known,
    };
    let s = host::setup::setup(h, &o).await?;
    let mut r = s.report;

    let mut node = String::from(
        "# Written by `driver host setup`; edit freely, setup rewrites it only when it differs.\n",
    );
    if site
        .try_find(engine::site_config::Entity::Host, &name)
        .map_err(config_failure)?
        .is_some()
    {
        node += &format!("host: {name}\n");
    }
    if s.node != name {
        node += &format!("node: {}\n", s.node);
    }
    node += &format!("api_endpoint: https://{address}:8006\napi_token: {name}\n");
    if let Some(fp) = &s.fingerprint {
        node += &format!("fingerprint: \"{fp}\"\n");
    }
    node += &format!("datastore: {}\nbridge: {}\n", s.datastore, o.bridge);
    match ssh {
        Some(t) => {
            node += &format!("ip: {}\n", t.host);
            if t.port != 22 {
                node += &format!("ssh_port: {}\n", t.port);
            }
            node += &format!("ssh_user: {}\n", t.user);
        }
        None => node += &format!("ip: {address}\n"),
    }
    let file = dir.join("nodes").join(format!("{name}.yaml"));
    let rel = format!("nodes/{name}.yaml");
    if std::fs::read_to_string(&file).ok().as_deref() == Some(node.as_str()) {
        r.unchanged(rel.clone());
    } else {
        if !dry_run {
            std::fs::create_dir_all(dir.join("nodes"))
                .and_then(|()| std::fs::write(&file, &node))
                .map_err(|e| run_err(format!("cannot write {}: {e}", file.display())))?;
        }
        r.changed.push(format!("wrote {rel}"));
    }
    if let Some(token) = &s.new_token {
        let how = store_token(&dir, secrets, &name, token.expose())?;
        r.changed
            .push(format!("stored api_tokens.{name} in secrets.yaml ({how})"));
    }
    ctx.insert(
        "node_config".into(),
        Value::String(file.display().to_string()),
    );
    ctx.insert(
        "api_token_key".into(),
        Value::String(format!("api_tokens.{name}")),
    );
    ctx.insert("host".into(), Value::String(name));
    Ok(r)
}

/// Sets `api_tokens.NAME` in the site's secrets.yaml: re-encrypted to its
/// recipients, with its own selector (e.g. `encrypted_regex`), when it is
/// encrypted; plain (mode 0600) when it is plain or new.
fn store_token(
    dir: &Path,
    secrets: Option<engine::site_config::SiteSecrets>,
    name: &str,
    token: &str,
) -> Result<&'static str, Failure> {
    let path = dir.join("secrets.yaml");
    let (mut tree, recipients) = match secrets {
        Some(s) => (s.tree, s.encrypted.then_some((s.recipients, s.selector))),
        None => (Tree::Map(vec![]), None),
    };
    set(&mut tree, &["api_tokens", name], token);
    let (text, how) = match recipients {
        Some((rs, selector)) => {
            let recipients = rs
                .iter()
                .map(|r| Recipient::parse(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    run_err(format!(
                        "{}: a recipient does not parse: {e}",
                        path.display()
                    ))
                })?;
            // The file's own settings: its recipients and which values it encrypts.
            let opts = EncryptOptions {
                recipients,
                selector,
            };
            let text = sops::encrypt(&tree, &opts)
                .map_err(|e| run_err(format!("{}: {e}", path.display())))?;
            (text, "encrypted")
        }
        None => (to_yaml(&tree, 2), "plain, as the file is"),
    };
    write_private(&path, &text)?;
    Ok(how)
}

fn set(tree: &mut Tree, path: &[&str], value: &str) {
    if !matches!(tree, Tree::Map(_)) {
        *tree = Tree::Map(vec![]);
    }
    let Tree::Map(entries) = tree else { return };
    let (key, rest) = (path[0], &path[1..]);
    let i = match entries.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            entries.push((key.to_string(), Tree::Null));
            entries.len() - 1
        }
    };
    if rest.is_empty() {
        entries[i].1 = Tree::Leaf(Leaf::str(value));
    } else {
        set(&mut entries[i].1, rest, value);
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp: PathBuf = path.with_extension("yaml.tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| run_err(format!("cannot write {}: {e}", path.display())))
}

/// The site-config's own files (YAML, and secrets.yaml as stored) for bootstrap.
pub fn site_files(site: &SiteConfig) -> Result<Vec<(String, String)>, Failure> {
    let dir = site_dir(site)?;
    let mut out = Vec::new();
    collect(dir, dir, &mut out)
        .map_err(|e| run_err(format!("cannot read {}: {e}", dir.display())))?;
    out.sort();
    Ok(out)
}

fn collect(root: &Path, d: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(d)? {
        let e = e?;
        let p = e.path();
        let fname = e.file_name().to_string_lossy().into_owned();
        if fname.starts_with('.') && fname != ".sops.yaml" {
            continue;
        }
        if e.file_type()?.is_dir() {
            collect(root, &p, out)?;
        } else if fname.ends_with(".yaml") || fname.ends_with(".yml") {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&p)?));
        }
    }
    Ok(())
}
