//! A node's spec, fully resolved for the node itself: the spec file
//! (`specs/{name}.yaml`) merged with its posture, the site defaults and the
//! secrets the node is entitled to (its users' SSH public keys, nothing else),
//! plus what the controller needs to authenticate the node (the posture's auth
//! method and the token it expects). This is what `driver serve` answers
//! `GET /spec/{identity}` with and what `driver config apply` applies.
//!
//! Pure: reads the site-config through [`SiteConfig`], never the network.
//! Keys the spec schema (`defs/spec.schema.json`) does not know are refused,
//! not ignored.

use serde_json::{json, Map, Value as Json};

use super::resolve::{AuthMethod, Resolver};
use super::{ConfigError, Entity, SiteConfig, SiteSecrets};
use crate::secrets::Secret;
use crate::yaml::{Node, Value};

/// What the controller serves for one identity.
#[derive(Clone, Debug)]
pub struct ResolvedSpec {
    pub identity: String,
    /// The spec file's name (`base` for `specs/base.yaml`).
    pub spec: String,
    pub posture: String,
    pub auth: AuthMethod,
    /// The token the node must present (empty for `network`).
    pub token: Secret<String>,
    /// The document the node receives (no token in it).
    pub doc: Json,
}

/// Keys a spec may have, per section (`None`: any key, as `config` allows).
const SECTIONS: &[(&str, Option<&[&str]>)] = &[
    ("schema_version", Some(&[])),
    ("identity", Some(&["hostname", "domain"])),
    ("network", Some(&["ip", "gateway", "dns"])),
    ("access", Some(&["posture", "users"])),
    ("platform", Some(&["packages", "services"])),
    ("config", None),
    (
        "run",
        Some(&[
            "trigger",
            "interval",
            "port",
            "path",
            "repo",
            "branch",
            "poll_interval",
        ]),
    ),
];

/// YAML → JSON, keeping scalars' types.
pub fn to_json(n: &Node) -> Json {
    match &n.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

fn strings(n: Option<&Node>) -> Vec<String> {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn push_unique(list: &mut Vec<String>, more: Vec<String>) {
    for m in more {
        if !list.contains(&m) {
            list.push(m);
        }
    }
}

/// Refuses keys the spec schema does not describe (a typo would otherwise be silently dropped).
fn check_keys(file: &str, doc: &Node) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        file: file.to_string(),
        message,
    };
    let top = doc
        .as_map()
        .ok_or_else(|| invalid("a spec must be a mapping".into()))?;
    for (k, v) in top {
        let key = k.as_str().unwrap_or_default();
        let Some((_, allowed)) = SECTIONS.iter().find(|(s, _)| *s == key) else {
            let names: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
            return Err(invalid(format!(
                "unknown key '{key}' (a spec has: {})",
                names.join(", ")
            )));
        };
        let Some(allowed) = allowed.filter(|a| !a.is_empty()) else {
            continue;
        };
        for (sk, _) in v.as_map().unwrap_or_default() {
            let sub = sk.as_str().unwrap_or_default();
            if !allowed.contains(&sub) {
                return Err(invalid(format!(
                    "unknown key '{key}.{sub}' ({key} has: {})",
                    allowed.join(", ")
                )));
            }
        }
    }
    match doc.get("schema_version").map(|n| &n.value) {
        Some(Value::Int(1)) => Ok(()),
        _ => Err(invalid("schema_version must be 1".into())),
    }
}

impl Resolver<'_> {
    /// Resolves spec `spec_name` for the node called `identity`.
    pub fn resolve_spec(
        &self,
        site: &SiteConfig,
        secrets: Option<&SiteSecrets>,
        identity: &str,
        spec_name: &str,
    ) -> Result<ResolvedSpec, ConfigError> {
        let loaded = site.find(Entity::Spec, spec_name)?;
        let doc = &loaded.doc;
        check_keys(&loaded.file, doc)?;
        let access = doc.get("access");
        let (posture_name, explicit) = match access.and_then(|a| a.get("posture")) {
            Some(p) => (p.as_str().unwrap_or_default().to_string(), true),
            None => ("dev".to_string(), false),
        };
        let posture = self.posture(&posture_name, explicit)?;
        let token = self.auth_token(&posture, identity)?;
        let vars = self.ansible_for_posture(&posture_name, explicit)?;

        let mut packages = vars.packages.clone();
        let platform = doc.get("platform");
        push_unique(
            &mut packages,
            strings(platform.and_then(|p| p.get("packages"))),
        );
        let services = platform.and_then(|p| p.get("services"));

        let users = access
            .and_then(|a| a.get("users"))
            .and_then(|u| match &u.value {
                Value::Seq(items) => Some(items.as_slice()),
                _ => None,
            })
            .unwrap_or_default();
        let mut users_out = Vec::new();
        for u in users {
            let name =
                u.get("name")
                    .and_then(Node::as_str)
                    .ok_or_else(|| ConfigError::Invalid {
                        file: loaded.file.clone(),
                        message: "every access.users entry needs a name".into(),
                    })?;
            let keys = self.user_keys(secrets, &loaded.file, name, u.get("ssh_keys"))?;
            users_out.push(json!({
                "name": name,
                "sudo": matches!(u.get("sudo").map(|n| &n.value), Some(Value::Bool(true))),
                "ssh_keys": keys,
            }));
        }

        let mut config = match doc.get("config").map(to_json) {
            Some(Json::Object(m)) => m,
            _ => Map::new(),
        };
        if !config.contains_key("timezone") {
            config.insert("timezone".into(), json!(vars.timezone));
        }
        let spec_identity = doc.get("identity");
        let domain = spec_identity
            .and_then(|i| i.get("domain"))
            .and_then(Node::as_str)
            .or_else(|| site.default_str("domain"))
            .unwrap_or_default();
        let hostname = spec_identity
            .and_then(|i| i.get("hostname"))
            .and_then(Node::as_str)
            .unwrap_or(identity);

        let mut out = json!({
            "schema_version": 1,
            "identity": {"name": identity, "hostname": hostname, "domain": domain},
            "spec": spec_name,
            "access": {"posture": posture_name, "users": users_out},
            "posture": {
                "name": posture_name,
                "ssh": {
                    "port": vars.ssh_port,
                    "permit_root_login": vars.ssh_permit_root_login,
                    "password_authentication": vars.ssh_password_authentication,
                },
                "sudo": {"nopasswd": vars.sudo_nopasswd},
                "fail2ban": {"enabled": vars.fail2ban_enabled},
            },
            "platform": {
                "packages": packages,
                "services": {
                    "enable": strings(services.and_then(|s| s.get("enable"))),
                    "disable": strings(services.and_then(|s| s.get("disable"))),
                },
            },
            "config": config,
        });
        for key in ["network", "run"] {
            if let Some(n) = doc.get(key) {
                out[key] = to_json(n);
            }
        }
        Ok(ResolvedSpec {
            identity: identity.to_string(),
            spec: spec_name.to_string(),
            posture: posture_name,
            auth: posture.auth,
            token,
            doc: out,
        })
    }

    /// A user's public keys: the named ones from `secrets.ssh_keys`, or all of them.
    fn user_keys(
        &self,
        secrets: Option<&SiteSecrets>,
        file: &str,
        user: &str,
        wanted: Option<&Node>,
    ) -> Result<Vec<String>, ConfigError> {
        let all = secrets.and_then(|s| s.tree.get("ssh_keys"));
        let entries = all.map(|t| t.entries()).unwrap_or_default();
        let Some(wanted) = wanted else {
            return Ok(entries
                .iter()
                .filter_map(|(_, v)| v.secret().map(|s| s.expose().clone()))
                .collect());
        };
        strings(Some(wanted))
            .into_iter()
            .map(|id| {
                entries
                    .iter()
                    .find(|(k, _)| *k == id)
                    .and_then(|(_, v)| v.secret())
                    .map(|s| s.expose().clone())
                    .ok_or_else(|| ConfigError::MissingSecret {
                        file: file.to_string(),
                        key: format!("ssh_keys.{id}"),
                        secrets: secrets
                            .map(|s| s.file.clone())
                            .unwrap_or_else(|| "secrets.yaml (which does not exist)".into()),
                        wanted_by: format!("user '{user}'"),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_config::SiteConfig;

    fn site(files: &[(&str, &str)]) -> (tempfile::TempDir, SiteConfig) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let s = SiteConfig::at(dir.path()).unwrap();
        (dir, s)
    }

    fn secrets(text: &str) -> SiteSecrets {
        let ids = crate::secrets::Identities::default();
        crate::site_config::load_secrets_text("secrets.yaml", text, &ids).unwrap()
    }

    #[test]
    fn merges_site_posture_and_spec_and_names_the_token() {
        let (_d, s) = site(&[
            ("site.yaml", "defaults: {packages: [htop, curl], timezone: Europe/Oslo, domain: lan}\n"),
            ("postures/stage.yaml", "auth: {method: site_token}\npackages: [strace, htop]\nsudo: {nopasswd: false}\n"),
            ("specs/web.yaml", "schema_version: 1\naccess:\n  posture: stage\n  users:\n    - {name: ops, sudo: true, ssh_keys: [a]}\nplatform: {packages: [nginx, curl], services: {enable: [nginx]}}\n"),
        ]);
        let sec = secrets("ssh_keys: {a: ssh-ed25519 AAAA a@x, b: ssh-ed25519 BBBB b@x}\nauth: {site_token: s3cret}\n");
        let r = Resolver::new(&s, Some(&sec));
        let spec = r.resolve_spec(&s, Some(&sec), "web1", "web").unwrap();
        assert_eq!(spec.auth, AuthMethod::SiteToken);
        assert_eq!(spec.token.expose(), "s3cret");
        assert_eq!(
            spec.doc["platform"]["packages"],
            json!(["htop", "curl", "strace", "nginx"])
        );
        assert_eq!(
            spec.doc["access"]["users"][0]["ssh_keys"],
            json!(["ssh-ed25519 AAAA a@x"])
        );
        assert_eq!(spec.doc["config"]["timezone"], "Europe/Oslo");
        assert_eq!(spec.doc["identity"]["domain"], "lan");
        assert!(!spec.doc.to_string().contains("s3cret"));
    }

    #[test]
    fn unknown_keys_and_missing_tokens_are_refused() {
        let (_d, s) = site(&[
            ("postures/prod.yaml", "auth: {method: node_token}\n"),
            ("specs/typo.yaml", "schema_version: 1\nplatfrom: {}\n"),
            (
                "specs/p.yaml",
                "schema_version: 1\naccess: {posture: prod}\n",
            ),
        ]);
        let r = Resolver::new(&s, None);
        let e = r.resolve_spec(&s, None, "x", "typo").unwrap_err();
        assert!(e.to_string().contains("unknown key 'platfrom'"), "{e}");
        let e = r.resolve_spec(&s, None, "x", "p").unwrap_err();
        assert!(e.to_string().contains("auth.node_tokens.x"), "{e}");
    }
}
