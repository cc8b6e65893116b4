//! One loaded snapshot of the site-config: its secrets opened, the node → spec bindings, the
//! `pve` nodes served a `/config`, and the specs (and configs) resolved so far (each resolved on first request, then kept with its body ready
//! to send). A reload builds a new snapshot and swaps it in (`http::AppState::swap`); the
//! old one lives on while requests still hold it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use engine::site_config::pve_config::{self, ChildAuth};
use engine::site_config::resolve::{AuthMethod, Resolver};
use engine::site_config::{plain_name, ConfigError, Entity, SiteConfig, SiteSecrets};

use crate::auth::{digest, Digest};
use crate::SpecSource;

/// A resolved spec, ready to serve.
pub(crate) struct Served {
    pub auth: AuthMethod,
    /// The expected token's digest; `None` for `network`, or when the token is empty (then
    /// nothing authenticates: an empty secret must not mean "no password").
    pub token: Option<Digest>,
    pub body: Bytes,
}

pub(crate) enum Lookup {
    Found(Arc<Served>),
    Unknown,
    /// The spec exists but does not resolve (a missing secret, a bad posture): the
    /// operator's problem, logged here, a bare 500 for the client.
    Broken,
}

pub(crate) struct Specs {
    site: SiteConfig,
    secrets: Option<SiteSecrets>,
    nodes: HashMap<String, String>,
    names: Vec<String>,
    cache: Mutex<HashMap<String, Arc<Served>>>,
    /// `pve` node → the pull-mode nodes below it (node, spec): its `/config`'s tokens.
    configs: HashMap<String, Vec<(String, String)>>,
    config_cache: Mutex<HashMap<String, Arc<Served>>>,
}

impl Specs {
    pub fn load(source: &SpecSource) -> Result<Specs, ConfigError> {
        let site = SiteConfig::open(source.site.clone())?;
        let ids = site.identities(&source.identities)?;
        let secrets = site.secrets(&ids)?;
        let names = site.names(Entity::Spec);
        Ok(Specs {
            site,
            secrets,
            nodes: source.nodes.iter().cloned().collect(),
            names,
            cache: Mutex::new(HashMap::new()),
            configs: source
                .configs
                .iter()
                .map(|g| (g.node.clone(), g.below.clone()))
                .collect(),
            config_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The `pve` nodes served a `/config`.
    pub fn configs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.configs.keys().cloned().collect();
        v.sort();
        v
    }

    /// `GET /config/{identity}` for a `pve` node in pull mode: authenticated as its spec is
    /// (its posture), its body the site-config its driver reads and the tokens of the nodes
    /// below it (`engine::site_config::pve_config`). Any other identity is unknown.
    pub fn config(&self, identity: &str) -> Lookup {
        let Some(below) = self.configs.get(identity) else {
            return Lookup::Unknown;
        };
        if let Some(hit) = self
            .config_cache
            .lock()
            .ok()
            .and_then(|c| c.get(identity).cloned())
        {
            return Lookup::Found(hit);
        }
        let spec = match self.lookup(identity) {
            Lookup::Found(s) => s,
            other => return other,
        };
        let auth = ChildAuth::for_nodes(&self.site, self.secrets.as_ref(), below);
        let doc = match pve_config::config_doc(&self.site, identity, &auth) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(identity, "config does not resolve: {e}");
                return Lookup::Broken;
            }
        };
        let mut body = doc.to_string().into_bytes();
        body.push(b'\n');
        let served = Arc::new(Served {
            auth: spec.auth,
            token: spec.token,
            body: Bytes::from(body),
        });
        if let Ok(mut c) = self.config_cache.lock() {
            c.insert(identity.to_string(), served.clone());
        }
        Lookup::Found(served)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nodes.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn lookup(&self, identity: &str) -> Lookup {
        if !plain_name(identity) {
            return Lookup::Unknown;
        }
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(identity).cloned())
        {
            return Lookup::Found(hit);
        }
        let spec = match self.nodes.get(identity) {
            Some(s) => s.as_str(),
            None if self.names.iter().any(|n| n == identity) => identity,
            None => return Lookup::Unknown,
        };
        let resolver = Resolver::new(&self.site, self.secrets.as_ref());
        let resolved =
            match resolver.resolve_spec(&self.site, self.secrets.as_ref(), identity, spec) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(identity, spec, "spec does not resolve: {e}");
                    return Lookup::Broken;
                }
            };
        let token = match resolved.auth {
            AuthMethod::Network => None,
            _ if resolved.token.is_empty() => {
                tracing::warn!(
                    identity,
                    "the posture's token is empty in the secrets: nothing will authenticate"
                );
                None
            }
            _ => Some(digest(resolved.token.expose().as_bytes())),
        };
        let mut body = resolved.doc.to_string().into_bytes();
        body.push(b'\n');
        let served = Arc::new(Served {
            auth: resolved.auth,
            token,
            body: Bytes::from(body),
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(identity.to_string(), served.clone());
        }
        Lookup::Found(served)
    }
}
