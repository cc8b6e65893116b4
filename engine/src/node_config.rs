//! What applying a resolved spec means on the node (`driver config apply`): the spec's JSON
//! (as `GET /spec/{identity}` serves it, see `site_config::spec`) turned into a list of
//! items, each one thing to make true: a package installed, a user present, a file with this
//! content, a service enabled or disabled; and, for the ansible checkout's
//! `config-apply.yml` playbook where the node has one, the same spec as that playbook's
//! variables (`ansible_vars`). Pure: checking and changing the machine is
//! `actions::node_config`.
//!
//! What the apply cannot do is refused here, by name, instead of being skipped: a static
//! `network` (cloud-init sets the address before the node can fetch anything), `run`
//! (convergence triggers) and `config` keys other than `timezone` (a `pve` node's
//! `config.pve` is applied by its own PVE setup, `driver config pve`: [`pve_settings`]).

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Package(String),
    User {
        name: String,
    },
    File {
        path: String,
        content: String,
        mode: u32,
        owner: Option<String>,
    },
    Service {
        name: String,
        enable: bool,
    },
}

impl Item {
    /// `package htop`, `file /etc/timezone`: how reports and errors name it.
    pub fn label(&self) -> String {
        match self {
            Item::Package(p) => format!("package {p}"),
            Item::User { name } => format!("user {name}"),
            Item::File { path, .. } => format!("file {path}"),
            Item::Service { name, enable: true } => format!("service {name} (enabled)"),
            Item::Service {
                name,
                enable: false,
            } => format!("service {name} (disabled)"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Item::Package(_) => "package",
            Item::User { .. } => "user",
            Item::File { .. } => "file",
            Item::Service { .. } => "service",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the spec is not a resolved spec: {0}")]
    NotASpec(String),
    #[error("spec key '{key}' cannot be applied by `driver config apply`: {why}")]
    Unsupported { key: String, why: &'static str },
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Names that become paths or command arguments: no separators, no options.
fn safe(name: &str) -> bool {
    crate::site_config::plain_name(name) && !name.starts_with('-')
}

/// What the node is: a `pve` node's spec may hold `config.pve`, which its own PVE setup
/// (`driver config pve`, phase 2 of its self-configure) applies, not the spec's apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    Guest,
    Pve,
}

/// A `pve` node's `config.pve`, applied by its phase 2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PveSettings {
    /// Remove the "no valid subscription" notice of PVE's web UI.
    pub remove_subscription_nag: bool,
}

/// The spec's `config.pve` (absent: nothing to do); a key it does not know is refused.
pub fn pve_settings(spec: &Value) -> Result<PveSettings, PlanError> {
    let Some(pve) = spec["config"].get("pve") else {
        return Ok(PveSettings::default());
    };
    let obj = pve
        .as_object()
        .ok_or_else(|| PlanError::NotASpec("config.pve is not a mapping".into()))?;
    if let Some(k) = obj.keys().find(|k| *k != "remove_subscription_nag") {
        return Err(PlanError::Unsupported {
            key: format!("config.pve.{k}"),
            why: "a PVE node's own setup applies config.pve.remove_subscription_nag only",
        });
    }
    Ok(PveSettings {
        remove_subscription_nag: pve["remove_subscription_nag"].as_bool().unwrap_or(false),
    })
}

/// The items of a resolved spec, in the order they are applied (packages before the
/// services they bring, users before their files).
pub fn plan(spec: &Value, role: NodeRole) -> Result<Vec<Item>, PlanError> {
    let obj = spec
        .as_object()
        .ok_or_else(|| PlanError::NotASpec("not a JSON object".into()))?;
    if obj.get("schema_version") != Some(&Value::from(1)) {
        return Err(PlanError::NotASpec("schema_version is not 1".into()));
    }
    if obj.get("network").is_some() {
        return Err(PlanError::Unsupported {
            key: "network".into(),
            why:
                "a static address is set by cloud-init at create time (push mode), not by the node",
        });
    }
    if obj.get("run").is_some() {
        return Err(PlanError::Unsupported {
            key: "run".into(),
            why: "convergence triggers are not implemented; apply again to converge",
        });
    }
    let config = spec["config"].as_object();
    let applied = |k: &str| k == "timezone" || (k == "pve" && role == NodeRole::Pve);
    if let Some(k) = config.and_then(|c| c.keys().find(|k| !applied(k))) {
        return Err(PlanError::Unsupported {
            key: format!("config.{k}"),
            why: "only config.timezone is applied on the node (and a pve node's own setup \
                  applies config.pve); use push mode for the rest",
        });
    }
    if role == NodeRole::Pve {
        // Refused here too, before anything is applied.
        pve_settings(spec)?;
    }
    let bad = |what: &str, name: &str| {
        PlanError::NotASpec(format!("{what} '{name}' is not a plain name"))
    };
    let mut items = Vec::new();
    for p in strings(&spec["platform"]["packages"]) {
        if !safe(&p) {
            return Err(bad("package", &p));
        }
        items.push(Item::Package(p));
    }
    let nopasswd = spec["posture"]["sudo"]["nopasswd"]
        .as_bool()
        .unwrap_or(false);
    for u in spec["access"]["users"].as_array().into_iter().flatten() {
        let name = u["name"].as_str().unwrap_or_default().to_string();
        if !safe(&name) {
            return Err(bad("user", &name));
        }
        items.push(Item::User { name: name.clone() });
        let keys = strings(&u["ssh_keys"]);
        if !keys.is_empty() {
            items.push(Item::File {
                path: format!("/home/{name}/.ssh/authorized_keys"),
                content: keys.join("\n") + "\n",
                mode: 0o600,
                owner: Some(name.clone()),
            });
        }
        if u["sudo"].as_bool() == Some(true) {
            let rule = if nopasswd { "NOPASSWD: ALL" } else { "ALL" };
            items.push(Item::File {
                path: format!("/etc/sudoers.d/driver-{name}"),
                content: format!("{name} ALL=(ALL) {rule}\n"),
                mode: 0o440,
                owner: None,
            });
        }
    }
    let ssh = &spec["posture"]["ssh"];
    if ssh.is_object() {
        let mut text = String::from("# written by driver config apply (the spec's posture)\n");
        if let Some(p) = ssh["port"].as_i64() {
            text.push_str(&format!("Port {p}\n"));
        }
        for (key, directive) in [
            ("permit_root_login", "PermitRootLogin"),
            ("password_authentication", "PasswordAuthentication"),
        ] {
            if let Some(v) = ssh[key].as_str() {
                text.push_str(&format!("{directive} {v}\n"));
            }
        }
        items.push(Item::File {
            path: "/etc/ssh/sshd_config.d/50-driver.conf".into(),
            content: text,
            mode: 0o644,
            owner: None,
        });
    }
    if let Some(tz) = config
        .and_then(|c| c.get("timezone"))
        .and_then(Value::as_str)
    {
        let tz_ok = !tz.is_empty()
            && !tz.starts_with('/')
            && !tz.contains("..")
            && tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+-/".contains(c));
        if !tz_ok {
            return Err(bad("timezone", tz));
        }
        items.push(Item::File {
            path: "/etc/timezone".into(),
            content: format!("{tz}\n"),
            mode: 0o644,
            owner: None,
        });
    }
    let services = &spec["platform"]["services"];
    for (key, enable) in [("enable", true), ("disable", false)] {
        for s in strings(&services[key]) {
            if !safe(&s) {
                return Err(bad("service", &s));
            }
            items.push(Item::Service { name: s, enable });
        }
    }
    Ok(items)
}

/// The spec as the variables of the original's `config-apply.yml` playbook (its
/// `spec_to_ansible_vars`): `packages`, `timezone`, `local_user` and `user_sudo` (the first
/// user), `ssh_authorized_keys` (every user's), the posture's `ssh_*`, `sudo_nopasswd` and
/// `fail2ban_enabled`, `services_enable` / `services_disable`. Empty lists are left out, so
/// the roles' defaults apply.
pub fn ansible_vars(spec: &Value) -> Map<String, Value> {
    let mut v = Map::new();
    let mut list = |key: &str, items: Vec<String>| {
        if !items.is_empty() {
            v.insert(key.into(), Value::from(items));
        }
    };
    list("packages", strings(&spec["platform"]["packages"]));
    let users = spec["access"]["users"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list(
        "ssh_authorized_keys",
        users.iter().flat_map(|u| strings(&u["ssh_keys"])).collect(),
    );
    let services = &spec["platform"]["services"];
    list("services_enable", strings(&services["enable"]));
    list("services_disable", strings(&services["disable"]));
    if let Some(tz) = spec["config"]["timezone"].as_str() {
        v.insert("timezone".into(), Value::from(tz));
    }
    if let Some(first) = users.first() {
        if let Some(name) = first["name"].as_str() {
            v.insert("local_user".into(), Value::from(name));
        }
        if first["sudo"].as_bool() == Some(true) {
            v.insert("user_sudo".into(), Value::Bool(true));
        }
    }
    let posture = &spec["posture"];
    for (key, from) in [
        ("ssh_port", &posture["ssh"]["port"]),
        (
            "ssh_permit_root_login",
            &posture["ssh"]["permit_root_login"],
        ),
        (
            "ssh_password_authentication",
            &posture["ssh"]["password_authentication"],
        ),
        ("sudo_nopasswd", &posture["sudo"]["nopasswd"]),
        ("fail2ban_enabled", &posture["fail2ban"]["enabled"]),
    ] {
        if !from.is_null() {
            v.insert(key.into(), from.clone());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_becomes_items_and_what_cannot_apply_is_refused() {
        let spec = json!({
            "schema_version": 1,
            "access": {"users": [{"name": "ops", "sudo": true, "ssh_keys": ["ssh-ed25519 AAAA k"]}]},
            "posture": {"ssh": {"port": 22, "permit_root_login": "no"}, "sudo": {"nopasswd": true}},
            "platform": {"packages": ["htop"], "services": {"enable": ["ssh"], "disable": ["rpcbind"]}},
            "config": {"timezone": "Europe/Oslo"}
        });
        let labels: Vec<String> = plan(&spec, NodeRole::Guest)
            .unwrap()
            .iter()
            .map(Item::label)
            .collect();
        assert_eq!(
            labels,
            [
                "package htop",
                "user ops",
                "file /home/ops/.ssh/authorized_keys",
                "file /etc/sudoers.d/driver-ops",
                "file /etc/ssh/sshd_config.d/50-driver.conf",
                "file /etc/timezone",
                "service ssh (enabled)",
                "service rpcbind (disabled)",
            ]
        );
        for (key, v) in [
            ("network", json!({"ip": "10.0.0.2", "gateway": "10.0.0.1"})),
            ("run", json!({"trigger": "manual"})),
        ] {
            let mut s = spec.clone();
            s[key] = v;
            assert!(plan(&s, NodeRole::Guest)
                .unwrap_err()
                .to_string()
                .contains(&format!("'{key}'")));
        }
        let mut s = spec.clone();
        s["config"]["pve"] = json!({"remove_subscription_nag": true});
        let e = plan(&s, NodeRole::Guest).unwrap_err().to_string();
        assert!(e.contains("config.pve"), "{e}");
        // A pve node leaves it to its own PVE setup, which knows only what it applies.
        assert_eq!(plan(&s, NodeRole::Pve).unwrap().len(), 8);
        assert!(pve_settings(&s).unwrap().remove_subscription_nag);
        s["config"]["pve"]["ha"] = json!(true);
        let e = plan(&s, NodeRole::Pve).unwrap_err().to_string();
        assert!(e.contains("'config.pve.ha'"), "{e}");
        assert_eq!(pve_settings(&spec).unwrap(), PveSettings::default());
        let mut s = spec;
        s["platform"]["packages"] = json!(["-oAPT::x"]);
        assert!(plan(&s, NodeRole::Guest).is_err());
    }

    #[test]
    fn a_spec_becomes_the_playbooks_variables_as_the_original_named_them() {
        let spec = json!({
            "schema_version": 1,
            "access": {"users": [
                {"name": "ops", "sudo": true, "ssh_keys": ["k1"]},
                {"name": "dev", "ssh_keys": ["k2"]}
            ]},
            "posture": {"ssh": {"port": 2222, "permit_root_login": "no"},
                        "sudo": {"nopasswd": false}, "fail2ban": {"enabled": true}},
            "platform": {"packages": ["htop"], "services": {"enable": ["ssh"], "disable": []}},
            "config": {"timezone": "Europe/Oslo"}
        });
        assert_eq!(
            Value::Object(ansible_vars(&spec)),
            json!({
                "packages": ["htop"],
                "ssh_authorized_keys": ["k1", "k2"],
                "services_enable": ["ssh"],
                "timezone": "Europe/Oslo",
                "local_user": "ops",
                "user_sudo": true,
                "ssh_port": 2222,
                "ssh_permit_root_login": "no",
                "sudo_nopasswd": false,
                "fail2ban_enabled": true
            })
        );
        assert!(ansible_vars(&json!({"schema_version": 1})).is_empty());
    }
}
