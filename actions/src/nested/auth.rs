//! The pull-mode tokens a nested PVE's driver is given: its own run's controller serves the
//! pull-mode nodes below it, and their postures may want `auth.site_token` or
//! `auth.node_tokens.NODE`. The child gets exactly those (of the nodes in its subtree, at
//! any depth, whose posture wants one), in its `secrets.yaml` beside its API token.

use std::collections::BTreeMap;

use engine::secrets::Secret;

/// What a child's secrets carry for its subtree's pull-mode nodes.
#[derive(Clone, Debug, Default)]
pub struct ChildAuth {
    /// Set when a node below wants the site token.
    pub site_token: Option<Secret<String>>,
    /// Node → its token, for the nodes below whose posture wants a node token.
    pub node_tokens: BTreeMap<String, Secret<String>>,
}

/// A YAML double-quoted scalar (JSON's string escapes are a subset of YAML's).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl ChildAuth {
    pub fn is_empty(&self) -> bool {
        self.site_token.is_none() && self.node_tokens.is_empty()
    }

    /// The child's `secrets.yaml`: its API token (`USER@REALM!ID=SECRET`) and these tokens.
    pub fn secrets_yaml(&self, pve: &str, api_token: &str) -> String {
        // Node names are plain names (the manifest's rule): keys need no quoting.
        let mut y = format!("api_tokens:\n  {pve}: {}\n", quoted(api_token));
        if self.is_empty() {
            return y;
        }
        y.push_str("auth:\n");
        if let Some(t) = &self.site_token {
            y.push_str(&format!("  site_token: {}\n", quoted(t.expose())));
        }
        if !self.node_tokens.is_empty() {
            y.push_str("  node_tokens:\n");
            for (node, t) in &self.node_tokens {
                y.push_str(&format!("    {node}: {}\n", quoted(t.expose())));
            }
        }
        y
    }
}

/// The API token in a `secrets.yaml` the parent wrote (`  NAME: "TOKEN"` under
/// `api_tokens:`), for rewriting it with other tokens.
pub fn api_token_in(secrets_yaml: &str, pve: &str) -> Option<String> {
    let key = format!("  {pve}: ");
    secrets_yaml
        .lines()
        .find_map(|l| serde_json::from_str::<String>(l.strip_prefix(&key)?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_gets_its_api_token_and_exactly_the_given_tokens() {
        let none = ChildAuth::default();
        assert_eq!(
            none.secrets_yaml("pve", "root@pam!driver-child=x"),
            "api_tokens:\n  pve: \"root@pam!driver-child=x\"\n"
        );
        let mut a = ChildAuth::default();
        a.node_tokens
            .insert("edge".into(), Secret::new("n\"1".to_string()));
        let y = a.secrets_yaml("pve", "root@pam!driver-child=x");
        assert_eq!(
            y,
            "api_tokens:\n  pve: \"root@pam!driver-child=x\"\nauth:\n  node_tokens:\n    \
             edge: \"n\\\"1\"\n"
        );
        assert_eq!(
            api_token_in(&y, "pve").as_deref(),
            Some("root@pam!driver-child=x")
        );
        assert_eq!(api_token_in(&y, "edge"), None);
    }
}
