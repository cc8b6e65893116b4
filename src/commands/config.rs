//! `driver config show` and `driver config resolve`: what the site-config
//! holds (never a secret value), and the tfvars / ansible vars it resolves to.

use std::path::Path;

use engine::secrets::sops::SopsError;
use engine::secrets::{IdentityEnv, SecretsError};
use engine::site_config::resolve::{Resolver, Reveal};
use engine::site_config::{self, ConfigError, Entity, Probe, SiteConfig, SiteSecrets};
use serde::Serialize;

use super::{discover_site, Failure};
use crate::cli::config::{ConfigCmd, ResolveArgs};
use crate::render;

pub fn run(cmd: &ConfigCmd, site_flag: Option<&Path>) -> Result<(), Failure> {
    match cmd {
        ConfigCmd::Show { json_output } => show(*json_output, site_flag),
        ConfigCmd::Resolve(a) => resolve(a, site_flag),
        ConfigCmd::Fetch(a) => super::node_config::fetch(a),
        ConfigCmd::Apply(a) => super::node_config::apply(a),
        ConfigCmd::Pve(a) => super::node_config::pve(a),
    }
}

/// A `ConfigError` as a report, with its exit code: a missing key is a run
/// failure (1); everything about the input is invalid input (2).
pub fn config_failure(e: ConfigError) -> Failure {
    let help = e.help();
    let no_key = matches!(
        e,
        ConfigError::Secrets(SecretsError::Sops {
            source: SopsError::NoIdentity { .. },
            ..
        }) | ConfigError::Secrets(SecretsError::KeyFile { .. })
    );
    let report = match help {
        Some(h) => miette::miette!(help = h, "{e}"),
        None => miette::miette!("{e}"),
    };
    if no_key {
        Failure::Run(Some(report))
    } else {
        Failure::Usage(Some(report))
    }
}

/// Prints each problem of the site-config's files on stderr, as a command
/// reports a config error; returns them as JSON problems.
pub fn report_problems(problems: Vec<ConfigError>) -> Vec<engine::output::ProblemOutput> {
    let out = problems
        .iter()
        .map(engine::output::ProblemOutput::from_config)
        .collect();
    for e in problems {
        if let Some(r) = config_failure(e).report() {
            crate::errln!("{r:?}");
        }
    }
    out
}

/// The failure of a command that found broken site-config files (invalid input: exit 2).
pub fn problems_failure(n: usize) -> Failure {
    Failure::usage(miette::miette!(
        help = "fix the file(s) listed above; `driver validate --all` checks them all",
        "{n} site-config file(s) are not valid"
    ))
}

/// Opens the discovered site-config.
pub fn open_site(site_flag: Option<&Path>) -> Result<SiteConfig, Failure> {
    let dir = discover_site(site_flag)?;
    SiteConfig::open(dir).map_err(config_failure)
}

/// Opens the site's secrets with the environment's identities.
pub fn open_secrets(site: &SiteConfig) -> Result<Option<SiteSecrets>, ConfigError> {
    let ids = site.identities(&IdentityEnv::from_process())?;
    site.secrets(&ids)
}

#[derive(Serialize)]
struct Step {
    origin: String,
    path: Option<String>,
    outcome: String,
}

#[derive(Serialize)]
struct NodeOut {
    name: String,
    file: String,
    host_only: bool,
    simulated: bool,
    api_endpoint: Option<String>,
    api_token: Option<String>,
    /// "found", "missing", or why it could not be checked.
    api_token_status: Option<String>,
    ssh: String,
    datastore: Option<String>,
    bridge: String,
}

#[derive(Serialize)]
struct Named {
    name: String,
    summary: String,
}

#[derive(Serialize)]
struct SecretsOut {
    file: Option<String>,
    encrypted: bool,
    recipients: Vec<String>,
    /// "decrypted (MAC verified) with a key from ...", "plain", or the error.
    status: String,
    keys: usize,
}

#[derive(Serialize)]
struct ShowOut {
    site_config: String,
    origin: String,
    discovery: Vec<Step>,
    defaults: Vec<(String, String)>,
    nodes: Vec<NodeOut>,
    presets: Vec<Named>,
    templates: Vec<Named>,
    envs: Vec<Named>,
    postures: Vec<Named>,
    specs: Vec<Named>,
    images: Vec<Named>,
    manifests: Vec<String>,
    secrets: SecretsOut,
    /// Files that do not load (a run that reads them refuses to start).
    problems: Vec<engine::output::ProblemOutput>,
}

fn summary(
    site: &SiteConfig,
    kind: Entity,
    f: impl Fn(&engine::yaml::Node) -> String,
) -> Vec<Named> {
    site.names(kind)
        .into_iter()
        .map(|name| {
            let summary = match site.try_find(kind, &name) {
                Ok(Some(l)) => f(&l.doc),
                Ok(None) => String::new(),
                Err(e) => format!("error: {e}"),
            };
            Named { name, summary }
        })
        .collect()
}

fn text(n: &engine::yaml::Node, path: &[&str]) -> String {
    let mut cur = Some(n);
    for k in path {
        cur = cur.and_then(|c| c.get(k));
    }
    match cur.map(|c| &c.value) {
        Some(engine::yaml::Value::Str(s)) => s.clone(),
        Some(engine::yaml::Value::Int(i)) => i.to_string(),
        Some(engine::yaml::Value::Bool(b)) => b.to_string(),
        Some(engine::yaml::Value::Seq(s)) => format!("{} item(s)", s.len()),
        _ => "-".into(),
    }
}

fn show(json: bool, site_flag: Option<&Path>) -> Result<(), Failure> {
    let probe = Probe::from_env(site_flag.map(Path::to_path_buf));
    let site = open_site(site_flag)?;
    let discovery = site_config::explain(&probe)
        .into_iter()
        .map(|s| Step {
            origin: s.origin.to_string(),
            path: s.path.map(|p| p.display().to_string()),
            outcome: s.outcome.to_string(),
        })
        .collect();

    let secrets = open_secrets(&site);
    let secrets_out = match (&secrets, site.secrets_file()) {
        (Ok(Some(s)), _) => SecretsOut {
            file: Some(s.file.clone()),
            encrypted: s.encrypted,
            recipients: s.recipients.clone(),
            status: match &s.opened_by {
                Some((_, source)) => format!("decrypted, MAC verified (key from {source})"),
                None => "plain YAML (not encrypted)".into(),
            },
            keys: s.tree.leaves().len(),
        },
        (Ok(None), _) => SecretsOut {
            file: None,
            encrypted: false,
            recipients: Vec::new(),
            status: "no secrets.yaml".into(),
            keys: 0,
        },
        (Err(e), file) => SecretsOut {
            file: file.ok().flatten().map(|(f, _)| f),
            encrypted: true,
            recipients: Vec::new(),
            status: format!("not readable: {e}"),
            keys: 0,
        },
    };
    let secrets = secrets.ok().flatten();

    let mut nodes = Vec::new();
    for name in site.host_names() {
        match site.host(&name, None) {
            Ok(h) => {
                let status = h.api_token_key.as_ref().map(|k| match &secrets {
                    Some(s) if s.get(&["api_tokens", k]).is_some() => {
                        format!("found in {}", s.file)
                    }
                    Some(s) => format!("MISSING from {}", s.file),
                    None => "not checked (secrets not readable)".into(),
                });
                nodes.push(NodeOut {
                    ssh: format!(
                        "{}@{}:{}",
                        h.ssh_user,
                        h.ssh_host.as_deref().unwrap_or("?"),
                        h.ssh_port
                    ),
                    name: h.name,
                    file: h.file,
                    host_only: h.is_host_only,
                    simulated: h.simulated,
                    api_endpoint: h.api_endpoint,
                    api_token: h.api_token_key,
                    api_token_status: status,
                    datastore: h.datastore,
                    bridge: h.bridge,
                });
            }
            Err(e) => nodes.push(NodeOut {
                name,
                file: format!("error: {e}"),
                host_only: false,
                simulated: false,
                api_endpoint: None,
                api_token: None,
                api_token_status: None,
                ssh: String::new(),
                datastore: None,
                bridge: String::new(),
            }),
        }
    }

    let defaults = site
        .defaults()
        .and_then(|d| d.as_map())
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), text(v, &[]))))
        .collect();
    let problems = site.check_files();
    let n = problems.len();
    let out = ShowOut {
        site_config: site.dir.path.as_ref().map_or_else(
            || "built-in example (site-config-example)".to_string(),
            |p| p.display().to_string(),
        ),
        origin: site.dir.origin.to_string(),
        discovery,
        defaults,
        nodes,
        presets: summary(&site, Entity::Preset, |d| {
            format!(
                "{} cores, {} MB, {} GB",
                text(d, &["cores"]),
                text(d, &["memory"]),
                text(d, &["disk"])
            )
        }),
        templates: summary(&site, Entity::Template, |d| {
            format!(
                "preset {}, image {}",
                text(d, &["preset"]),
                text(d, &["image"])
            )
        }),
        envs: summary(&site, Entity::Env, |d| {
            format!(
                "posture {}, vmid_base {}, {} VM(s)",
                text(d, &["posture"]),
                text(d, &["vmid_base"]),
                d.get("vms")
                    .and_then(|v| match &v.value {
                        engine::yaml::Value::Seq(s) => Some(s.len()),
                        _ => None,
                    })
                    .unwrap_or(0)
            )
        }),
        postures: summary(&site, Entity::Posture, |d| {
            format!(
                "auth {}, root login {}, fail2ban {}",
                text(d, &["auth", "method"]),
                text(d, &["ssh", "permit_root_login"]),
                text(d, &["fail2ban", "enabled"])
            )
        }),
        specs: summary(&site, Entity::Spec, |d| {
            format!("posture {}", text(d, &["access", "posture"]))
        }),
        images: summary(&site, Entity::Image, |d| {
            format!("{} ({})", text(d, &["file"]), text(d, &["release"]))
        }),
        manifests: site.names(Entity::Manifest),
        secrets: secrets_out,
        problems: report_problems(problems),
    };
    if json {
        render::json::print(&out);
    } else {
        print_show(&out);
    }
    match n {
        0 => Ok(()),
        n => Err(problems_failure(n)),
    }
}

fn print_show(o: &ShowOut) {
    crate::outln!("site-config: {} (from {})", o.site_config, o.origin);
    crate::outln!("discovery:");
    for s in &o.discovery {
        crate::outln!(
            "  {:28} {:32} {}",
            s.origin,
            s.path.as_deref().unwrap_or(""),
            s.outcome
        );
    }
    if !o.defaults.is_empty() {
        crate::outln!("defaults (site.yaml):");
        for (k, v) in &o.defaults {
            crate::outln!("  {k}: {v}");
        }
    }
    crate::outln!("hosts:");
    for n in &o.nodes {
        let kind = if n.host_only {
            "host-only (SSH, no PVE API)"
        } else if n.simulated {
            "PVE node (simulated)"
        } else {
            "PVE node"
        };
        crate::outln!("  {}: {kind}  [{}]", n.name, n.file);
        if let Some(ep) = &n.api_endpoint {
            crate::outln!("    api: {ep}");
        }
        if let Some(t) = &n.api_token {
            crate::outln!(
                "    api_token: key '{t}' ({})",
                n.api_token_status.as_deref().unwrap_or("-")
            );
        }
        crate::outln!(
            "    ssh: {}  datastore: {}  bridge: {}",
            n.ssh,
            n.datastore.as_deref().unwrap_or("-"),
            n.bridge
        );
    }
    for (title, list) in [
        ("presets", &o.presets),
        ("templates", &o.templates),
        ("envs", &o.envs),
        ("postures", &o.postures),
        ("specs", &o.specs),
        ("images", &o.images),
    ] {
        if list.is_empty() {
            crate::outln!("{title}: none");
            continue;
        }
        crate::outln!("{title}:");
        for n in list {
            crate::outln!("  {}: {}", n.name, n.summary);
        }
    }
    if o.manifests.is_empty() {
        crate::outln!("manifests: none (the built-in ones apply)");
    } else {
        crate::outln!("manifests: {}", o.manifests.join(", "));
    }
    let s = &o.secrets;
    crate::outln!("secrets: {}", s.file.as_deref().unwrap_or("none"));
    crate::outln!("  {}", s.status);
    if !s.recipients.is_empty() {
        crate::outln!("  age recipients: {}", s.recipients.join(", "));
    }
    if s.keys > 0 {
        crate::outln!(
            "  {} value(s) (`driver secrets check` lists them, without values)",
            s.keys
        );
    }
}

/// Writes `text` to `path` readable by the owner only (it may hold secrets).
pub fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let fail = |e: std::io::Error| {
        Failure::Run(Some(miette::miette!(
            "cannot write {}: {e}",
            path.display()
        )))
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.write_all(b"\n").map_err(fail)
}

fn resolve(a: &ResolveArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = open_site(site_flag)?;
    let secrets = open_secrets(&site).map_err(config_failure)?;
    let r = Resolver::new(&site, secrets.as_ref());
    let tf = r.resolve_env(&a.env, &a.node).map_err(config_failure)?;
    let ans = r.resolve_ansible_vars(&a.env).map_err(config_failure)?;
    if let Some(p) = &a.tfvars {
        write_private(p, &tf.to_json(Reveal::Yes))?;
        crate::errln!(
            "wrote tfvars for env '{}' on node '{}' ({} VM(s)) to {}",
            a.env,
            a.node,
            tf.vms.len(),
            p.display()
        );
    }
    if let Some(p) = &a.ansible_vars {
        write_private(p, &ans.to_json())?;
        crate::errln!("wrote ansible vars for env '{}' to {}", a.env, p.display());
    }
    if a.tfvars.is_none() && a.ansible_vars.is_none() {
        // Redacted, so this is safe to paste into an issue or a log.
        crate::outln!(
            "{{\n\"tfvars\": {},\n\"ansible_vars\": {}\n}}",
            tf.to_json(Reveal::No),
            ans.to_json()
        );
    }
    Ok(())
}
