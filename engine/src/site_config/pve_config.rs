//! What a nested PVE's own driver is given, in either execution mode: the non-secret part of
//! the site-config it reads, and secrets scoped to it ([`ChildAuth`]: the pull-mode tokens
//! of the nodes below it whose postures want one, beside the API token it gets on the node).
//! Push mode uploads them over SSH; a `pve` node in pull mode fetches them itself from the
//! controller's `GET /config/{identity}` ([`config_doc`], seed 001's two-phase
//! self-configure). Never another host's API token, another node's token, the site's
//! signing key or a private key: a node makes its own SSH key.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use super::resolve::{AuthMethod, Resolver};
use super::{ConfigError, SiteConfig, SiteSecrets};
use crate::secrets::Secret;

/// The pull-mode tokens a nested PVE's driver carries for the nodes below it: its own run's
/// controller serves them, and their postures may want `auth.site_token` or
/// `auth.node_tokens.NODE`. Exactly those (of the nodes in its subtree, at any depth, whose
/// posture wants one), in its `secrets.yaml` beside its API token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildAuth {
    /// Set when a node below wants the site token.
    pub site_token: Option<Secret<String>>,
    /// Node → its token, for the nodes below whose posture wants a node token.
    pub node_tokens: BTreeMap<String, Secret<String>>,
}

/// A YAML double-quoted scalar (JSON's string escapes are a subset of YAML's).
fn quoted(s: &str) -> String {
    Json::String(s.to_string()).to_string()
}

impl ChildAuth {
    /// The tokens for pull-mode nodes `below` (node, spec). A spec that does not resolve, or
    /// whose token the secrets lack, is left out: the driver below refuses that node, naming
    /// the secret it lacks.
    pub fn for_nodes(
        site: &SiteConfig,
        secrets: Option<&SiteSecrets>,
        below: &[(String, String)],
    ) -> ChildAuth {
        let resolver = Resolver::new(site, secrets);
        let mut a = ChildAuth::default();
        for (node, spec) in below {
            let Ok(resolved) = resolver.resolve_spec(site, secrets, node, spec) else {
                continue;
            };
            if resolved.token.is_empty() {
                continue;
            }
            match resolved.auth {
                AuthMethod::Network => {}
                AuthMethod::SiteToken => a.site_token = Some(resolved.token),
                AuthMethod::NodeToken => {
                    a.node_tokens.insert(node.clone(), resolved.token);
                }
            }
        }
        a
    }

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

    /// `{"auth": {"site_token": .., "node_tokens": {..}}}`, the secrets of a `/config`
    /// answer (values revealed: it goes to the node, over the controller's TLS).
    pub fn to_json(&self) -> Json {
        let mut auth = Map::new();
        if let Some(t) = &self.site_token {
            auth.insert("site_token".into(), t.expose().clone().into());
        }
        if !self.node_tokens.is_empty() {
            let tokens: Map<String, Json> = self
                .node_tokens
                .iter()
                .map(|(n, t)| (n.clone(), t.expose().clone().into()))
                .collect();
            auth.insert("node_tokens".into(), tokens.into());
        }
        json!({ "auth": auth })
    }

    /// Read back from a `/config` answer's `secrets` ([`Self::to_json`]); `None` when it is
    /// not that shape.
    pub fn from_json(secrets: &Json) -> Option<ChildAuth> {
        let auth = match secrets.get("auth") {
            None => return Some(ChildAuth::default()),
            Some(a) => a.as_object()?,
        };
        let site_token = match auth.get("site_token") {
            None => None,
            Some(t) => Some(Secret::new(t.as_str()?.to_string())),
        };
        let mut node_tokens = BTreeMap::new();
        if let Some(tokens) = auth.get("node_tokens") {
            for (node, t) in tokens.as_object()? {
                if !super::plain_name(node) {
                    return None;
                }
                node_tokens.insert(node.clone(), Secret::new(t.as_str()?.to_string()));
            }
        }
        Some(ChildAuth {
            site_token,
            node_tokens,
        })
    }
}

/// The API token in a `secrets.yaml` [`ChildAuth::secrets_yaml`] wrote (`  NAME: "TOKEN"`
/// under `api_tokens:`), for rewriting it with other tokens.
pub fn api_token_in(secrets_yaml: &str, pve: &str) -> Option<String> {
    let key = format!("  {pve}: ");
    secrets_yaml
        .lines()
        .find_map(|l| serde_json::from_str::<String>(l.strip_prefix(&key)?).ok())
}

/// The answer of `GET /config/{identity}` for `pve` node `identity` in pull mode (the
/// original's shape, `site` and `secrets`, plus the files its driver reads):
/// `{"identity", "site": site.yaml's defaults, "files": {path: text} (site.yaml, presets,
/// specs, postures, images, templates), "secrets": auth.to_json()}`.
pub fn config_doc(
    site: &SiteConfig,
    identity: &str,
    auth: &ChildAuth,
) -> Result<Json, ConfigError> {
    let defaults = site.defaults().map_or(Json::Null, super::spec::to_json);
    let files: Map<String, Json> = site
        .child_files()?
        .into_iter()
        .map(|(rel, text)| (rel, Json::String(text)))
        .collect();
    Ok(json!({
        "identity": identity,
        "site": defaults,
        "files": files,
        "secrets": auth.to_json(),
    }))
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

    #[test]
    fn tokens_go_through_json_unchanged() {
        let mut a = ChildAuth {
            site_token: Some(Secret::new("s".to_string())),
            ..ChildAuth::default()
        };
        a.node_tokens
            .insert("web1".into(), Secret::new("t1".to_string()));
        let j = a.to_json();
        assert_eq!(
            j,
            json!({"auth": {"site_token": "s", "node_tokens": {"web1": "t1"}}})
        );
        assert_eq!(ChildAuth::from_json(&j), Some(a));
        assert_eq!(
            ChildAuth::from_json(&json!({"auth": {}})),
            Some(ChildAuth::default())
        );
        for bad in [
            json!({"auth": []}),
            json!({"auth": {"node_tokens": {"../x": "t"}}}),
            json!({"auth": {"site_token": 3}}),
        ] {
            assert_eq!(ChildAuth::from_json(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_config_of_a_pve_node_has_the_site_files_and_no_other_secret() {
        let site = SiteConfig::builtin();
        let doc = config_doc(&site, "hv", &ChildAuth::default()).unwrap();
        assert_eq!(doc["identity"], "hv");
        assert_eq!(doc["site"]["bridge"], "vmbr0");
        let files = doc["files"].as_object().unwrap();
        for f in ["site.yaml", "presets/vm-small.yaml", "specs/base.yaml"] {
            assert!(files.contains_key(f), "{f}: {:?}", files.keys());
        }
        assert!(
            files
                .keys()
                .all(|k| !k.contains("secrets") && !k.starts_with("nodes/")),
            "{:?}",
            files.keys()
        );
        assert_eq!(doc["secrets"], json!({"auth": {}}));
    }
}
