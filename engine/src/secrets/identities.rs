//! Where age identities come from, in sops' order: `$SOPS_AGE_KEY` (the keys
//! themselves), `$SOPS_AGE_KEY_FILE`, then `~/.config/sops/age/keys.txt`
//! (`$XDG_CONFIG_HOME/sops/age/keys.txt` when that is set).

use std::fmt;
use std::path::{Path, PathBuf};

use super::age::{Identity, Recipient};
use super::secret::Secret;
use super::SecretsError;

/// The environment that identity discovery reads, so tests can supply their own.
#[derive(Clone, Debug, Default)]
pub struct IdentityEnv {
    pub sops_age_key: Option<Secret<String>>,
    pub sops_age_key_file: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
    pub config_dir: Option<PathBuf>,
}

impl IdentityEnv {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        IdentityEnv {
            sops_age_key: std::env::var("SOPS_AGE_KEY")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new),
            sops_age_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            config_dir: var("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config"))),
        }
    }

    pub fn default_keys_file(&self) -> Option<PathBuf> {
        self.config_dir
            .as_ref()
            .map(|d| d.join("sops").join("age").join("keys.txt"))
    }
}

/// Where an identity was found (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    EnvKey,
    File(PathBuf),
    /// The test key of the built-in example site-config.
    BuiltinTestKey,
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::EnvKey => f.write_str("$SOPS_AGE_KEY"),
            IdentitySource::File(p) => write!(f, "{}", p.display()),
            IdentitySource::BuiltinTestKey => f.write_str(
                "the built-in example's TEST key (site-config-example/age-test-key.txt)",
            ),
        }
    }
}

/// The identities available to decrypt with.
#[derive(Clone, Debug, Default)]
pub struct Identities {
    entries: Vec<(Identity, IdentitySource)>,
}

impl Identities {
    /// Reads every source in `env`. A source that is named but unreadable is an
    /// error; the default keys file may simply not exist.
    pub fn load(env: &IdentityEnv) -> Result<Self, SecretsError> {
        let mut ids = Identities::default();
        if let Some(k) = &env.sops_age_key {
            ids.add_text(k.expose(), &IdentitySource::EnvKey, "$SOPS_AGE_KEY")?;
        }
        if let Some(p) = &env.sops_age_key_file {
            ids.add_file(p, true)?;
        }
        if let Some(p) = env.default_keys_file() {
            if env.sops_age_key_file.as_deref() != Some(p.as_path()) {
                ids.add_file(&p, false)?;
            }
        }
        tracing::debug!("{} age identit(ies) loaded", ids.len());
        Ok(ids)
    }

    fn add_file(&mut self, path: &Path, required: bool) -> Result<(), SecretsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Secret::new(text);
                self.add_text(
                    text.expose(),
                    &IdentitySource::File(path.to_path_buf()),
                    &path.display().to_string(),
                )
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SecretsError::KeyFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// Adds every `AGE-SECRET-KEY-1` line of a keys file; comments and blank
    /// lines are skipped, and so (with a warning) are other key types.
    pub fn add_text(
        &mut self,
        text: &str,
        source: &IdentitySource,
        origin: &str,
    ) -> Result<(), SecretsError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !line.starts_with("AGE-SECRET-KEY-1") {
                tracing::warn!(
                    "{origin}: line {} is not an X25519 age identity; skipped",
                    i + 1
                );
                continue;
            }
            let id = Identity::parse(line).map_err(|e| SecretsError::BadKey {
                origin: origin.to_string(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            self.push(id, source.clone());
        }
        Ok(())
    }

    pub fn push(&mut self, id: Identity, source: IdentitySource) {
        if !self
            .entries
            .iter()
            .any(|(e, _)| e.recipient() == id.recipient())
        {
            self.entries.push((id, source));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn identities(&self) -> Vec<Identity> {
        self.entries.iter().map(|(i, _)| i.clone()).collect()
    }

    /// Where the identity for `recipient` came from, if we have it.
    pub fn source_for(&self, recipient: &Recipient) -> Option<&IdentitySource> {
        self.entries
            .iter()
            .find(|(i, _)| i.recipient() == *recipient)
            .map(|(_, s)| s)
    }

    /// Where the identity for a recipient (as text) came from, for messages.
    pub fn source_of(&self, recipient: &str) -> String {
        Recipient::parse(recipient)
            .ok()
            .and_then(|r| self.source_for(&r).map(ToString::to_string))
            .unwrap_or_else(|| "unknown".into())
    }

    /// The distinct places identities came from, for messages.
    pub fn sources(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (_, s) in &self.entries {
            let s = s.to_string();
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_order_and_missing_default_is_fine() {
        let t = tempfile::tempdir().unwrap();
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        let file = t.path().join("k.txt");
        std::fs::write(
            &file,
            format!(
                "# created: now\n# public key: {}\n{}\n\n",
                b.recipient(),
                b.to_secret_string().expose()
            ),
        )
        .unwrap();
        let env = IdentityEnv {
            sops_age_key: Some(a.to_secret_string()),
            sops_age_key_file: Some(file.clone()),
            config_dir: Some(t.path().join("nothing-here")),
        };
        let ids = Identities::load(&env).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            ids.source_for(&a.recipient()),
            Some(&IdentitySource::EnvKey)
        );
        assert_eq!(
            ids.source_for(&b.recipient()),
            Some(&IdentitySource::File(file))
        );

        // The default file is read from the config dir.
        let cfg = t.path().join("cfg");
        std::fs::create_dir_all(cfg.join("sops/age")).unwrap();
        std::fs::write(
            cfg.join("sops/age/keys.txt"),
            a.to_secret_string().expose().as_str(),
        )
        .unwrap();
        let env = IdentityEnv {
            config_dir: Some(cfg),
            ..Default::default()
        };
        assert_eq!(Identities::load(&env).unwrap().len(), 1);
    }

    #[test]
    fn named_file_must_exist_and_bad_keys_are_not_echoed() {
        let env = IdentityEnv {
            sops_age_key_file: Some(PathBuf::from("/nonexistent/keys.txt")),
            ..Default::default()
        };
        assert!(matches!(
            Identities::load(&env),
            Err(SecretsError::KeyFile { .. })
        ));
        let env = IdentityEnv {
            sops_age_key: Some(Secret::from("AGE-SECRET-KEY-1NOTAVALIDKEYATALL")),
            ..Default::default()
        };
        let e = Identities::load(&env).unwrap_err().to_string();
        assert!(e.contains("$SOPS_AGE_KEY") && e.contains("line 1"), "{e}");
        assert!(!e.contains("NOTAVALIDKEY"), "{e}");
    }
}
