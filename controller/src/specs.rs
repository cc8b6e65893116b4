//! One loaded snapshot of the site-config: its secrets opened, the node → spec bindings, and
//! the specs resolved so far (each resolved on first request, then kept with its body ready
//! to send). A reload builds a new snapshot and swaps it in (`http::AppState::swap`); the
//! old one lives on while requests still hold it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
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
        })
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
