//! Checking a whole site-config: every entity file parses, and postures name
//! an auth method the resolver knows. `driver validate --all` and `driver
//! config show` report what this finds. A run checks only the files it
//! loads, through the same reads, so it refuses them with the same errors.

use super::resolve::Resolver;
use super::{ConfigError, Entity, SiteConfig};

impl SiteConfig {
    /// Every problem of the site-config's entity files, in folder order.
    /// `site.yaml` was read by `open`; manifests are `validate`'s, and
    /// secrets `secrets check`'s.
    pub fn check_files(&self) -> Vec<ConfigError> {
        let resolver = Resolver::new(self, None);
        let mut problems = Vec::new();
        for kind in Entity::ALL {
            if kind == Entity::Manifest {
                continue;
            }
            for name in self.names(kind) {
                let checked = match kind {
                    Entity::Posture => resolver.posture(&name, true).map(drop),
                    Entity::Image => self.check_image(&name),
                    Entity::Node => self
                        .find(kind, &name)
                        .and_then(|f| super::hosts::check_node_keys(&f.file, &f.doc)),
                    _ => self.find(kind, &name).map(drop),
                };
                if let Err(e) = checked {
                    problems.push(e);
                }
            }
        }
        problems
    }
}
