//! `driver secrets check | encrypt | decrypt`: the SOPS (age) secrets file,
//! natively. `check` and every error name keys, files and recipients, never a
//! value; only `decrypt` writes plaintext, and only where it is told to.

use std::path::Path;

use engine::secrets::age::Recipient;
use engine::secrets::rules;
use engine::secrets::sops::{self, EncryptOptions, Selector, SopsError};
use engine::secrets::{to_yaml, Identities, IdentityEnv, SecretsError};
use engine::site_config::resolve::AuthMethod;
use engine::site_config::resolve::Resolver;
use engine::site_config::{load_secrets_text, ConfigError, Entity, SiteSecrets};
use serde::Serialize;

use super::config::{config_failure, open_site, write_private};
use super::Failure;
use crate::cli::secrets::{CryptArgs, SecretsCmd};
use crate::render;

pub fn run(cmd: &SecretsCmd, site_flag: Option<&Path>) -> Result<(), Failure> {
    match cmd {
        SecretsCmd::Check { file, json_output } => check(file.as_deref(), *json_output, site_flag),
        SecretsCmd::Encrypt(a) => encrypt(a),
        SecretsCmd::Decrypt(a) => decrypt(a),
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    engine::files::read_text(path)
        .map_err(|e| Failure::usage(miette::miette!("cannot read {}: {e}", path.display())))
}

fn sops_failure(file: &Path, e: SopsError) -> Failure {
    config_failure(ConfigError::Secrets(SecretsError::Sops {
        origin: file.display().to_string(),
        source: e,
    }))
}

fn write_out(a: &CryptArgs, text: &str) -> Result<(), Failure> {
    let target = if a.in_place {
        Some(a.file.as_path())
    } else {
        a.output.as_deref()
    };
    match target {
        Some(p) => {
            // Through a temporary file, so an interrupted write never truncates the original.
            let tmp = p.with_extension("driver-tmp");
            write_private(&tmp, text.trim_end_matches('\n'))?;
            std::fs::rename(&tmp, p).map_err(|e| {
                Failure::Run(Some(miette::miette!("cannot write {}: {e}", p.display())))
            })?;
            crate::errln!("wrote {}", p.display());
            Ok(())
        }
        None => {
            crate::out!("{text}");
            Ok(())
        }
    }
}

fn encrypt(a: &CryptArgs) -> Result<(), Failure> {
    let text = read(&a.file)?;
    let tree = sops::parse_plain(&text).map_err(|e| sops_failure(&a.file, e))?;
    let (recipients, selector) = if a.age.is_empty() {
        let cfg =
            rules::config_for(&a.file).map_err(|e| config_failure(SecretsError::from(e).into()))?;
        let rule = cfg
            .rule_for(&a.file)
            .map_err(|e| config_failure(SecretsError::from(e).into()))?;
        tracing::info!(
            "{}: creation rule {} ({} age recipient(s))",
            cfg.path.display(),
            rule.index,
            rule.recipients.len()
        );
        (rule.recipients.clone(), rule.selector.clone())
    } else {
        let r = a
            .age
            .iter()
            .map(|r| Recipient::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::usage(miette::miette!("--age: {e}")))?;
        (r, Selector::default())
    };
    let out = sops::encrypt(
        &tree,
        &EncryptOptions {
            recipients,
            selector,
        },
    )
    .map_err(|e| sops_failure(&a.file, e))?;
    write_out(a, &out)
}

fn decrypt(a: &CryptArgs) -> Result<(), Failure> {
    if !a.age.is_empty() {
        return Err(Failure::usage(miette::miette!("--age is for encrypt")));
    }
    let text = read(&a.file)?;
    let ids =
        Identities::load(&IdentityEnv::from_process()).map_err(|e| config_failure(e.into()))?;
    let d = sops::decrypt(&text, &ids).map_err(|e| sops_failure(&a.file, e))?;
    tracing::info!("{}: MAC verified", a.file.display());
    write_out(a, &to_yaml(&d.tree, 2))
}

#[derive(Serialize)]
struct KeyOut {
    path: String,
    kind: String,
    empty: bool,
}

#[derive(Serialize)]
struct CheckOut {
    file: String,
    encrypted: bool,
    recipients: Vec<String>,
    opened_with: Option<String>,
    mac_verified: bool,
    keys: Vec<KeyOut>,
    /// Keys the site-config refers to that the file lacks.
    missing: Vec<String>,
    ok: bool,
}

fn check(file: Option<&Path>, json: bool, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = open_site(site_flag)?;
    let (secrets, needs_site) = match file {
        Some(f) => {
            let text = read(f)?;
            let ids = Identities::load(&IdentityEnv::from_process())
                .map_err(|e| config_failure(e.into()))?;
            let s = load_secrets_text(&f.display().to_string(), &text, &ids)
                .map_err(config_failure)?;
            (s, false)
        }
        None => match super::config::open_secrets(&site).map_err(config_failure)? {
            Some(s) => (s, true),
            None => {
                return Err(Failure::usage(miette::miette!(
                    help = "create secrets.yaml (see site-config-example/), then `driver secrets encrypt -i secrets.yaml`",
                    "{} has no secrets.yaml",
                    site.dir
                )))
            }
        },
    };
    let missing = if needs_site {
        missing_keys(&site, &secrets)
    } else {
        Vec::new()
    };
    let keys: Vec<KeyOut> = secrets
        .tree
        .leaves()
        .into_iter()
        .map(|(path, leaf)| KeyOut {
            path,
            kind: leaf.map_or("null", |l| l.kind.describe()).to_string(),
            empty: leaf.is_none_or(|l| l.text.is_empty()),
        })
        .collect();
    let out = CheckOut {
        file: secrets.file.clone(),
        encrypted: secrets.encrypted,
        recipients: secrets.recipients.clone(),
        opened_with: secrets
            .opened_by
            .as_ref()
            .map(|(r, src)| format!("{r} (key from {src})")),
        mac_verified: secrets.encrypted,
        ok: missing.is_empty(),
        keys,
        missing,
    };
    if json {
        render::json::print(&out);
    } else {
        crate::outln!("{}", out.file);
        if out.encrypted {
            crate::outln!("  SOPS (age), encrypted to: {}", out.recipients.join(", "));
            crate::outln!(
                "  opened with {}; MAC verified",
                out.opened_with.as_deref().unwrap_or("?")
            );
        } else {
            crate::outln!(
                "  plain YAML (not encrypted): `driver secrets encrypt -i FILE` encrypts it"
            );
        }
        crate::outln!("  {} value(s):", out.keys.len());
        for k in &out.keys {
            crate::outln!(
                "    {}  ({}{})",
                k.path,
                k.kind,
                if k.empty { ", empty" } else { "" }
            );
        }
        if out.missing.is_empty() {
            if needs_site {
                crate::outln!("  everything the site-config refers to is present");
            }
        } else {
            crate::outln!("  missing:");
            for m in &out.missing {
                crate::outln!("    {m}");
            }
        }
    }
    if out.ok {
        Ok(())
    } else {
        Err(Failure::Run(Some(miette::miette!(
            "{}: {} key(s) the site-config needs are missing",
            out.file,
            out.missing.len()
        ))))
    }
}

/// Keys the site-config refers to that are absent: node API tokens, and the
/// tokens postures of envs call for.
fn missing_keys(site: &engine::site_config::SiteConfig, s: &SiteSecrets) -> Vec<String> {
    let mut missing = Vec::new();
    for name in site.names(Entity::Node) {
        if let Ok(h) = site.host(&name, None) {
            if let Some(k) = h.api_token_key {
                if s.get(&["api_tokens", &k]).is_none() {
                    missing.push(format!("api_tokens.{k} (api_token of {})", h.file));
                }
            }
        }
    }
    let r = Resolver::new(site, Some(s));
    for env in site.names(Entity::Env) {
        let Ok(Some(l)) = site.try_find(Entity::Env, &env) else {
            continue;
        };
        let Some(p) = l.doc.get("posture").and_then(engine::yaml::Node::as_str) else {
            continue;
        };
        let Ok(posture) = r.posture(p, true) else {
            continue;
        };
        let vms: Vec<String> = match l.doc.get("vms").map(|v| &v.value) {
            Some(engine::yaml::Value::Seq(items)) => items
                .iter()
                .filter_map(|i| i.get("name").and_then(engine::yaml::Node::as_str))
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        match posture.auth {
            AuthMethod::Network => {}
            AuthMethod::SiteToken => {
                if s.get(&["auth", "site_token"]).is_none() {
                    let m = format!("auth.site_token (posture '{p}' of env '{env}')");
                    if !missing.contains(&m) {
                        missing.push(m);
                    }
                }
            }
            AuthMethod::NodeToken => {
                for vm in vms {
                    if s.get(&["auth", "node_tokens", &vm]).is_none() {
                        missing.push(format!(
                            "auth.node_tokens.{vm} (posture '{p}' of env '{env}')"
                        ));
                    }
                }
            }
        }
    }
    missing
}
