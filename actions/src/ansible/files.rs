//! The files of one run, in its private directory: the inventory (hosts,
//! groups, per-host ssh arguments), the `ssh_config` with the jump hosts,
//! the pinned `known_hosts`, in-memory keys written out (0600), and the
//! extra-vars file (0600).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{AnsibleError, PlaybookRun};
use crate::ssh::{HopKey, HostKey, HostKeyPolicy, SshAuth, SshTarget};

pub(super) struct RunFiles {
    pub(super) inventory: PathBuf,
    pub(super) extra_vars: PathBuf,
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

pub(super) fn write_run_files(
    dir: &Path,
    run: &PlaybookRun,
    seen: &[HopKey],
) -> Result<RunFiles, AnsibleError> {
    let known_hosts = dir.join("known_hosts");
    let ssh_config = dir.join("ssh_config");
    let mut kh = String::new();
    let mut cfg = String::new();
    let mut key_files = 0usize;
    let mut jump_aliases: BTreeMap<String, String> = BTreeMap::new();

    // A key file for a target: the given path, or the in-memory key written out.
    let mut key_path = |auth: &SshAuth| -> Result<Option<PathBuf>, AnsibleError> {
        match auth {
            SshAuth::KeyFile { path, passphrase } => {
                if passphrase.is_some() {
                    return Err(AnsibleError::Invalid(
                        "ssh (used by ansible) cannot take a key passphrase non-interactively; load the key into ssh-agent".into(),
                    ));
                }
                Ok(Some(path.clone()))
            }
            SshAuth::KeyData {
                private_key,
                passphrase,
            } => {
                if passphrase.is_some() {
                    return Err(AnsibleError::Invalid(
                        "ssh (used by ansible) cannot take a key passphrase non-interactively; load the key into ssh-agent".into(),
                    ));
                }
                key_files += 1;
                let p = dir.join(format!("key{key_files}"));
                let mut pem = private_key.expose().to_string();
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                write_private(&p, pem.as_bytes())?;
                Ok(Some(p))
            }
            SshAuth::Agent { .. } => Ok(None),
        }
    };

    // Options common to a hop: key, agent, host-key policy and files.
    let hop_options = |t: &SshTarget, key: Option<&Path>| -> Vec<(String, String)> {
        let mut o = Vec::new();
        if let Some(k) = key {
            o.push(("IdentityFile".into(), k.display().to_string()));
            o.push(("IdentitiesOnly".into(), "yes".into()));
        }
        if let SshAuth::Agent { socket: Some(s) } = &t.auth {
            o.push(("IdentityAgent".into(), s.display().to_string()));
        }
        let mut files = vec![known_hosts.display().to_string()];
        if t.host_keys.pinned.is_none() {
            if let Some(f) = &t.host_keys.known_hosts {
                files.push(f.display().to_string());
            }
        }
        o.push(("UserKnownHostsFile".into(), files.join(" ")));
        let strict = match t.host_keys.policy {
            HostKeyPolicy::Strict => "yes",
            HostKeyPolicy::AcceptNew => "accept-new",
        };
        o.push(("StrictHostKeyChecking".into(), strict.into()));
        o
    };

    let mut inventory_hosts = Map::new();
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for h in &run.hosts {
        if h.name.is_empty() || h.name.contains(char::is_whitespace) {
            return Err(AnsibleError::Invalid(format!(
                "bad inventory host name '{}'",
                h.name
            )));
        }
        // Pinned keys, every hop; else the keys our client just verified
        // (so ansible's ssh sees the same hosts ours did).
        for hop in h.ssh.chain() {
            let keys: Vec<&HostKey> = match &hop.host_keys.pinned {
                Some(k) => vec![k],
                None => seen
                    .iter()
                    .filter(|s| s.host == hop.host && s.port == hop.port)
                    .map(|s| &s.key)
                    .collect(),
            };
            for k in keys {
                let line = k.known_hosts_line(&hop.host, hop.port);
                if !kh.lines().any(|l| l == line) {
                    let _ = writeln!(kh, "{line}");
                }
            }
        }
        // Bastions become ssh_config aliases, outermost first.
        let mut proxy: Option<String> = None;
        let chain = h.ssh.chain();
        for b in &chain[..chain.len() - 1] {
            let id = format!(
                "{}@{}:{}>{}",
                b.user,
                b.host,
                b.port,
                proxy.clone().unwrap_or_default()
            );
            let alias = match jump_aliases.get(&id) {
                Some(a) => a.clone(),
                None => {
                    let alias = format!("driver-jump-{}", jump_aliases.len());
                    let key = key_path(&b.auth)?;
                    let _ = writeln!(cfg, "Host {alias}");
                    let _ = writeln!(cfg, "  HostName {}", b.host);
                    let _ = writeln!(cfg, "  Port {}", b.port);
                    let _ = writeln!(cfg, "  User {}", b.user);
                    if let Some(p) = &proxy {
                        let _ = writeln!(cfg, "  ProxyJump {p}");
                    }
                    for (k, v) in hop_options(b, key.as_deref()) {
                        let _ = writeln!(cfg, "  {k} {v}");
                    }
                    jump_aliases.insert(id, alias.clone());
                    alias
                }
            };
            proxy = Some(alias);
        }

        let t = &h.ssh;
        let key = key_path(&t.auth)?;
        let mut args = vec!["-F".to_string(), ssh_config.display().to_string()];
        for (k, v) in hop_options(t, None) {
            args.push("-o".into());
            args.push(crate::ssh::shell_quote(&format!("{k}={v}")));
        }
        if !matches!(t.auth, SshAuth::Agent { .. }) {
            args.push("-o".into());
            args.push("IdentitiesOnly=yes".into());
        }
        if let Some(p) = &proxy {
            args.push("-o".into());
            args.push(format!("ProxyJump={p}"));
        }
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), json!(t.host));
        vars.insert("ansible_port".into(), json!(t.port));
        vars.insert("ansible_user".into(), json!(t.user));
        if let Some(k) = key {
            vars.insert(
                "ansible_ssh_private_key_file".into(),
                json!(k.display().to_string()),
            );
        }
        vars.insert("ansible_ssh_common_args".into(), json!(args.join(" ")));
        vars.insert(
            "ansible_ssh_timeout".into(),
            json!(t.connect_timeout.as_secs().max(1)),
        );
        for (k, v) in &h.vars {
            vars.insert(k.clone(), v.clone());
        }
        inventory_hosts.insert(h.name.clone(), Value::Object(vars));
        for g in &h.groups {
            groups
                .entry(g.clone())
                .or_default()
                .insert(h.name.clone(), json!({}));
        }
    }
    // ssh takes the first value it reads for an option: defaults go last.
    let _ = writeln!(cfg, "Host *\n  BatchMode yes\n  HashKnownHosts no");

    let children: Map<String, Value> = groups
        .into_iter()
        .map(|(g, hosts)| (g, json!({ "hosts": hosts })))
        .collect();
    let inventory = json!({ "all": { "hosts": inventory_hosts, "children": children } });
    // JSON is YAML: the yaml inventory plugin reads it.
    let inventory_path = dir.join("inventory.yml");
    std::fs::write(
        &inventory_path,
        serde_json::to_vec_pretty(&inventory).unwrap_or_default(),
    )?;
    std::fs::write(&ssh_config, cfg)?;
    write_private(&known_hosts, kh.as_bytes())?;
    let extra_vars = dir.join("extra-vars.json");
    let vars = if run.extra_vars.is_null() {
        json!({})
    } else {
        run.extra_vars.clone()
    };
    write_private(&extra_vars, &serde_json::to_vec(&vars).unwrap_or_default())?;
    std::fs::create_dir_all(dir.join("cp"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    Ok(RunFiles {
        inventory: inventory_path,
        extra_vars,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_for_ssh_args() {
        assert_eq!(
            crate::ssh::shell_quote("UserKnownHostsFile=/a/b"),
            "UserKnownHostsFile=/a/b"
        );
        assert_eq!(
            crate::ssh::shell_quote("UserKnownHostsFile=/a /b"),
            "'UserKnownHostsFile=/a /b'"
        );
        assert_eq!(crate::ssh::shell_quote("it's"), "'it'\\''s'");
    }
}
