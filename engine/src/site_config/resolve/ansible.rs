//! The ansible side of resolution: site defaults merged with an env's or a
//! spec's posture (packages merged, site first).

use crate::site_config::{ConfigError, Entity};
use crate::yaml::{Node, Value};

use super::{scalar_str, AnsibleVars, Resolver};

fn str_list(n: Option<&Node>) -> Vec<String> {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(scalar_str).collect(),
        _ => Vec::new(),
    }
}

impl Resolver<'_> {
    /// Resolves `envs/{env}.yaml` (its posture) with the site defaults into ansible variables.
    pub fn resolve_ansible_vars(&self, env: &str) -> Result<AnsibleVars, ConfigError> {
        let env_file = self.site.find(Entity::Env, env)?;
        let (posture_name, explicit) = match env_file.doc.get("posture").and_then(Node::as_str) {
            Some(p) => (p.to_string(), true),
            None => ("dev".to_string(), false),
        };
        let mut vars = self.ansible_for_posture(&posture_name, explicit)?;
        vars.env_name = env.to_string();
        Ok(vars)
    }

    /// Site defaults + a posture, for anything that has a posture (an env, a spec).
    pub fn ansible_for_posture(
        &self,
        posture_name: &str,
        explicit: bool,
    ) -> Result<AnsibleVars, ConfigError> {
        let posture = self.posture(posture_name, explicit)?;
        let defaults = self.site.defaults();
        let d = |k: &str| defaults.and_then(|d| d.get(k));
        let p = |section: &str, key: &str, flat: &str| {
            let doc = posture.doc.as_ref()?;
            doc.get(section)
                .and_then(|s| s.get(key))
                .or_else(|| doc.get(flat))
        };
        let mut packages = str_list(d("packages"));
        for pkg in str_list(posture.doc.as_ref().and_then(|doc| doc.get("packages"))) {
            if !packages.contains(&pkg) {
                packages.push(pkg);
            }
        }
        let boolean = |n: Option<&Node>, default: bool| match n.map(|n| &n.value) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        };
        Ok(AnsibleVars {
            timezone: d("timezone")
                .and_then(scalar_str)
                .unwrap_or_else(|| "UTC".into()),
            pve_remove_subscription_nag: boolean(d("pve_remove_subscription_nag"), true),
            packages,
            ssh_port: match p("ssh", "port", "ssh_port").map(|n| &n.value) {
                Some(Value::Int(i)) => *i,
                _ => 22,
            },
            ssh_permit_root_login: p("ssh", "permit_root_login", "ssh_permit_root_login")
                .and_then(scalar_str)
                .unwrap_or_else(|| "prohibit-password".into()),
            ssh_password_authentication: p(
                "ssh",
                "password_authentication",
                "ssh_password_authentication",
            )
            .and_then(scalar_str)
            .unwrap_or_else(|| "no".into()),
            sudo_nopasswd: boolean(p("sudo", "nopasswd", "sudo_nopasswd"), false),
            fail2ban_enabled: boolean(p("fail2ban", "enabled", "fail2ban_enabled"), false),
            env_name: String::new(),
            posture_name: posture_name.to_string(),
            ssh_authorized_keys: self
                .secrets
                .and_then(|s| s.tree.get("ssh_keys"))
                .map(|k| {
                    k.entries()
                        .iter()
                        .filter_map(|(_, v)| v.secret().map(|s| s.expose().clone()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}
