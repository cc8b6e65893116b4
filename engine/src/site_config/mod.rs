//! The site-config: finding it (`discover`), reading its entities (site
//! defaults, nodes and hosts, presets, templates, envs, postures, specs,
//! images), its secrets, and resolving them into what tofu and ansible are
//! given (`resolve`) or checking a manifest's references against it (`refs`);
//! where containers' templates come from (`ct_template`); what a nested PVE's driver is
//! given (`pve_config`).
//!
//! A site-config is a folder on disk or the example built into the binary;
//! both read through `Files`, so the rest does not care which. Entities are
//! keyed by file name (`presets/vm-small.yaml` is preset `vm-small`). Older
//! layouts are read too: `vms/presets/` for presets, `v2/postures/` for
//! postures, and `secrets.yaml.enc` when there is no `secrets.yaml`.

mod builtin;
mod check;
pub mod ct_template;
mod discover;
mod hosts;
pub mod images;
pub mod pve_config;
pub mod refs;
pub mod resolve;
pub mod run;
pub mod spec;

use std::path::{Path, PathBuf};

pub use discover::{
    discover, explain, DiscoveryError, Origin, Probe, ProbeOutcome, ProbeStep, SiteConfigDir,
};
pub use hosts::{HostConfig, ImagesMirror};
pub use images::{HashAlgorithm, ImageMirror, ImageSource, ImageSpec};

use crate::secrets::{self, sops, Identities, IdentityEnv, IdentitySource, SecretsError, Tree};
use crate::yaml::{self, Node, Value};

/// The kinds of entity a site-config holds, and where each lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    Node,
    Host,
    Preset,
    Template,
    Env,
    Posture,
    Spec,
    Image,
    Manifest,
}

impl Entity {
    pub const ALL: [Entity; 9] = [
        Entity::Node,
        Entity::Host,
        Entity::Preset,
        Entity::Template,
        Entity::Env,
        Entity::Posture,
        Entity::Spec,
        Entity::Image,
        Entity::Manifest,
    ];

    /// Folders searched, first match wins (the later ones are older layouts).
    pub fn dirs(self) -> &'static [&'static str] {
        match self {
            Entity::Node => &["nodes"],
            Entity::Host => &["hosts"],
            Entity::Preset => &["presets", "vms/presets"],
            Entity::Template => &["vms"],
            Entity::Env => &["envs"],
            Entity::Posture => &["postures", "v2/postures"],
            Entity::Spec => &["specs", "v2/specs"],
            Entity::Image => &["images"],
            Entity::Manifest => &["manifests"],
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Entity::Node => "node",
            Entity::Host => "host",
            Entity::Preset => "preset",
            Entity::Template => "template",
            Entity::Env => "env",
            Entity::Posture => "posture",
            Entity::Spec => "spec",
            Entity::Image => "image",
            Entity::Manifest => "manifest",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Entity::Node => "nodes",
            Entity::Host => "hosts",
            Entity::Preset => "presets",
            Entity::Template => "templates",
            Entity::Env => "envs",
            Entity::Posture => "postures",
            Entity::Spec => "specs",
            Entity::Image => "images",
            Entity::Manifest => "manifests",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{col}: YAML syntax error: {message}")]
    Yaml {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{noun} '{name}' not found: no {}", looked_in.join(" or "))]
    NotFound {
        noun: &'static str,
        name: String,
        looked_in: Vec<String>,
        available: Vec<String>,
    },
    #[error("'{name}' is not a valid {noun} name (letters, digits, '.', '_', '-' only)")]
    BadName {
        noun: &'static str,
        name: String,
        available: Vec<String>,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: '{key}' is not in {secrets} (needed by {wanted_by})")]
    MissingSecret {
        file: String,
        key: String,
        secrets: String,
        wanted_by: String,
    },
    #[error("host '{name}' is host-only ({file}): it has no PVE API yet, so there is nothing to provision on")]
    HostOnly { name: String, file: String },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl ConfigError {
    /// What the user can do about it, where there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigError::NotFound {
                name, available, ..
            }
            | ConfigError::BadName {
                name, available, ..
            } => {
                let names: Vec<&str> = available.iter().map(String::as_str).collect();
                let guess = crate::manifest::did_you_mean(name, &names)
                    .map(|g| format!("did you mean '{g}'? "))
                    .unwrap_or_default();
                Some(format!(
                    "{guess}available: {}",
                    if available.is_empty() {
                        "none".to_string()
                    } else {
                        available.join(", ")
                    }
                ))
            }
            ConfigError::HostOnly { name, .. } => Some(format!(
                "make it a PVE node first: driver host install-pve -H {name} && driver host setup -H {name} \
                 (setup writes nodes/{name}.yaml)"
            )),
            ConfigError::Secrets(SecretsError::Sops {
                source: sops::SopsError::NoIdentity { .. },
                ..
            }) => Some(
                "point SOPS_AGE_KEY_FILE at your age key (or put it in ~/.config/sops/age/keys.txt)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Where files are read from.
#[derive(Clone, Debug)]
enum Files {
    Disk(PathBuf),
    Builtin,
}

impl Files {
    fn describe(&self, rel: &str) -> String {
        match self {
            Files::Disk(root) => root.join(rel).display().to_string(),
            Files::Builtin => format!("(built-in) site-config-example/{rel}"),
        }
    }

    fn read(&self, rel: &str) -> Result<Option<String>, ConfigError> {
        match self {
            Files::Disk(root) => match crate::files::read_text(&root.join(rel)) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(ConfigError::Read {
                    file: self.describe(rel),
                    reason: e.to_string(),
                }),
            },
            Files::Builtin => Ok(builtin::FILES
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, t)| t.to_string())),
        }
    }

    fn has_dir(&self, dir: &str) -> bool {
        match self {
            Files::Disk(root) => root.join(dir).is_dir(),
            Files::Builtin => {
                let prefix = format!("{dir}/");
                builtin::FILES.iter().any(|(p, _)| p.starts_with(&prefix))
            }
        }
    }

    /// Names (file stems) of the `*.yaml` files directly in `dir`, sorted.
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Files::Disk(root) => std::fs::read_dir(root.join(dir))
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter(|e| e.path().is_file())
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()
                                .and_then(|n| n.strip_suffix(".yaml"))
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Files::Builtin => {
                let prefix = format!("{dir}/");
                builtin::FILES
                    .iter()
                    .filter_map(|(p, _)| p.strip_prefix(&prefix))
                    .filter(|rest| !rest.contains('/'))
                    .filter_map(|rest| rest.strip_suffix(".yaml"))
                    .map(str::to_string)
                    .collect()
            }
        };
        names.sort();
        names
    }
}

/// Is `name` safe to turn into a file name (no paths, no hidden files)?
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One entity file, parsed.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    /// Path relative to the site-config root.
    pub rel: String,
    /// Where it is, for messages.
    pub file: String,
    pub doc: Node,
}

/// The secrets of a site-config, decrypted (or read plain).
#[derive(Debug)]
pub struct SiteSecrets {
    pub file: String,
    pub encrypted: bool,
    /// The recipients the file is encrypted to (public keys).
    pub recipients: Vec<String>,
    /// Which of its values the file encrypts (its sops metadata's
    /// `encrypted_regex` and the like): a re-encryption keeps it.
    pub selector: secrets::sops::Selector,
    /// The recipient whose identity opened it, and where that identity came from.
    pub opened_by: Option<(String, String)>,
    pub tree: Tree,
}

impl SiteSecrets {
    /// A string (or other scalar) at a dotted path.
    pub fn get(&self, path: &[&str]) -> Option<secrets::Secret<String>> {
        self.tree.at(path).and_then(Tree::secret)
    }
}

/// An opened site-config.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    pub dir: SiteConfigDir,
    files: Files,
    site: Node,
}

fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    yaml::parse(text).map_err(|e| ConfigError::Yaml {
        file: file.to_string(),
        line: e.line,
        col: e.col,
        message: e.message,
    })
}

impl SiteConfig {
    /// Opens a discovered site-config and reads its `site.yaml` (which may be absent).
    pub fn open(dir: SiteConfigDir) -> Result<Self, ConfigError> {
        let files = match &dir.path {
            Some(p) => Files::Disk(p.clone()),
            None => Files::Builtin,
        };
        let site = match files.read("site.yaml")? {
            Some(text) => parse(&files.describe("site.yaml"), &text)?,
            None => Node {
                value: Value::Null,
                span: Default::default(),
            },
        };
        Ok(SiteConfig { dir, files, site })
    }

    /// The example built into the binary.
    pub fn builtin() -> Self {
        // The embedded files are checked by this crate's tests.
        Self::open(SiteConfigDir::builtin()).unwrap_or_else(|_| SiteConfig {
            dir: SiteConfigDir::builtin(),
            files: Files::Builtin,
            site: Node {
                value: Value::Null,
                span: Default::default(),
            },
        })
    }

    /// Opens the folder at `path` (as if named with `--site-config`).
    pub fn at(path: &Path) -> Result<Self, ConfigError> {
        Self::open(SiteConfigDir {
            path: Some(path.to_path_buf()),
            origin: Origin::Flag,
        })
    }

    pub fn is_builtin(&self) -> bool {
        matches!(self.files, Files::Builtin)
    }

    /// A path inside the site-config, as shown to users.
    pub fn describe(&self, rel: &str) -> String {
        self.files.describe(rel)
    }

    /// `site.yaml`'s `defaults` mapping (null when absent).
    pub fn defaults(&self) -> Option<&Node> {
        self.site.get("defaults")
    }

    /// `defaults.timeouts` (e.g. `{wait_ip: 600}`): per-action time limits
    /// that replace the built-in ones. Unknown actions and non-numbers are
    /// refused, not ignored.
    pub fn action_timeouts(
        &self,
    ) -> Result<std::collections::HashMap<crate::plan::Action, std::time::Duration>, ConfigError>
    {
        let mut out = std::collections::HashMap::new();
        let Some(t) = self.defaults().and_then(|d| d.get("timeouts")) else {
            return Ok(out);
        };
        let invalid = |message: String| ConfigError::Invalid {
            file: self.describe("site.yaml"),
            message,
        };
        let map = t
            .as_map()
            .ok_or_else(|| invalid("defaults.timeouts must map action names to seconds".into()))?;
        for (k, v) in map {
            let name = k.as_str().unwrap_or_default();
            let action = crate::plan::Action::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = crate::plan::Action::ALL.iter().map(|a| a.name()).collect();
                invalid(format!(
                    "defaults.timeouts names an unknown action '{name}' (actions: {})",
                    names.join(", ")
                ))
            })?;
            let crate::yaml::Value::Int(secs) = v.value else {
                return Err(invalid(format!(
                    "defaults.timeouts.{name} must be a number of seconds"
                )));
            };
            out.insert(action, std::time::Duration::from_secs(secs.max(1) as u64));
        }
        Ok(out)
    }

    /// A default from `site.yaml`, as a string.
    pub fn default_str(&self, key: &str) -> Option<&str> {
        self.defaults()
            .and_then(|d| d.get(key))
            .and_then(Node::as_str)
    }

    /// Does the site-config have a folder for this kind of entity at all?
    pub fn has_catalogue(&self, kind: Entity) -> bool {
        kind.dirs().iter().any(|d| self.files.has_dir(d))
    }

    /// Names of every entity of a kind, over all its folders, sorted and unique.
    pub fn names(&self, kind: Entity) -> Vec<String> {
        let mut v: Vec<String> = kind
            .dirs()
            .iter()
            .flat_map(|d| self.files.list(d))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The text of a file of the site-config (`rel` to its root), if there.
    pub fn read_text(&self, rel: &str) -> Result<Option<String>, ConfigError> {
        self.files.read(rel)
    }

    /// Where `find` would look for `name`, as shown to users.
    pub fn candidates(&self, kind: Entity, name: &str) -> Vec<String> {
        kind.dirs()
            .iter()
            .map(|d| self.describe(&format!("{d}/{name}.yaml")))
            .collect()
    }

    /// Reads one entity; a missing one is an error naming every file looked at.
    pub fn find(&self, kind: Entity, name: &str) -> Result<Loaded, ConfigError> {
        self.try_find(kind, name)?
            .ok_or_else(|| ConfigError::NotFound {
                noun: kind.noun(),
                name: name.to_string(),
                looked_in: self.candidates(kind, name),
                available: self.names(kind),
            })
    }

    /// Reads one entity if it exists.
    pub fn try_find(&self, kind: Entity, name: &str) -> Result<Option<Loaded>, ConfigError> {
        if !plain_name(name) {
            return Err(ConfigError::BadName {
                noun: kind.noun(),
                name: name.to_string(),
                available: self.names(kind),
            });
        }
        for d in kind.dirs() {
            let rel = format!("{d}/{name}.yaml");
            if let Some(text) = self.files.read(&rel)? {
                let file = self.describe(&rel);
                let doc = parse(&file, &text)?;
                return Ok(Some(Loaded {
                    name: name.to_string(),
                    rel,
                    file,
                    doc,
                }));
            }
        }
        Ok(None)
    }

    /// The identities to open this site-config's secrets with: the environment's,
    /// plus the published test key when this is the built-in example.
    pub fn identities(&self, env: &IdentityEnv) -> Result<Identities, ConfigError> {
        let mut ids = Identities::load(env)?;
        if self.is_builtin() {
            if let Some(text) = self.files.read(builtin::TEST_KEY_FILE)? {
                ids.add_text(
                    &text,
                    &IdentitySource::BuiltinTestKey,
                    builtin::TEST_KEY_FILE,
                )?;
                tracing::info!("using the built-in example's TEST age key for its secrets");
            }
        }
        Ok(ids)
    }

    /// The secrets file: `secrets.yaml`, else `secrets.yaml.enc`.
    pub fn secrets_file(&self) -> Result<Option<(String, String)>, ConfigError> {
        for rel in ["secrets.yaml", "secrets.yaml.enc"] {
            if let Some(text) = self.files.read(rel)? {
                return Ok(Some((self.describe(rel), text)));
            }
        }
        Ok(None)
    }

    /// Reads (and if need be decrypts, checking its MAC) the secrets file.
    /// `None` when the site-config has none.
    pub fn secrets(&self, ids: &Identities) -> Result<Option<SiteSecrets>, ConfigError> {
        let Some((file, text)) = self.secrets_file()? else {
            tracing::info!("no secrets.yaml in {}", self.dir);
            return Ok(None);
        };
        load_secrets_text(&file, &text, ids).map(Some)
    }
}

/// Reads a secrets file's text: sops-encrypted (decrypted here) or plain.
pub fn load_secrets_text(
    file: &str,
    text: &str,
    ids: &Identities,
) -> Result<SiteSecrets, ConfigError> {
    let sops_err = |source| {
        ConfigError::Secrets(SecretsError::Sops {
            origin: file.to_string(),
            source,
        })
    };
    if sops::is_encrypted(text) {
        let d = sops::decrypt(text, ids).map_err(sops_err)?;
        let source = ids.source_of(&d.opened_by);
        tracing::info!("decrypted {file} (MAC verified)");
        Ok(SiteSecrets {
            file: file.to_string(),
            encrypted: true,
            recipients: d.metadata.age.iter().map(|(r, _)| r.clone()).collect(),
            selector: d.metadata.selector,
            opened_by: Some((d.opened_by, source)),
            tree: d.tree,
        })
    } else {
        let node = yaml::parse(text).map_err(|e| ConfigError::Yaml {
            file: file.to_string(),
            line: e.line,
            col: e.col,
            message: e.message,
        })?;
        let tree = match node.value {
            Value::Null => Tree::Map(Vec::new()),
            _ => Tree::from_node(&node).map_err(|e| sops_err(e.into()))?,
        };
        if !matches!(tree, Tree::Map(_)) {
            return Err(sops_err(sops::SopsError::NotAMap));
        }
        tracing::info!("{file} is not encrypted; read as plain YAML");
        Ok(SiteSecrets {
            file: file.to_string(),
            encrypted: false,
            recipients: Vec::new(),
            selector: Default::default(),
            opened_by: None,
            tree,
        })
    }
}

#[cfg(test)]
mod tests;
