//! `.sops.yaml` creation rules: which age recipients (and which values) a
//! file is encrypted to, as sops decides it.
//!
//! The config is found by walking up from the file's folder (then from the
//! working directory, where sops itself starts). The first rule whose
//! `path_regex` matches the file's path relative to the config's folder (or
//! the path as given) wins; a rule without `path_regex` matches everything.

use std::path::{Path, PathBuf};

use crate::yaml::{self, Node, Value};

use super::age::Recipient;
use super::sops::Selector;

pub const CONFIG_NAME: &str = ".sops.yaml";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("no {CONFIG_NAME} found in {} or its parents (pass --age RECIPIENT, or create one)", start.display())]
    NoConfig { start: PathBuf },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: no creation rule matches {file}", path.display())]
    NoMatch { path: PathBuf, file: String },
    #[error("{}: creation rule {index} has no age recipients; driver encrypts to age only (use sops for pgp/kms/vault keys)", path.display())]
    NoAge { path: PathBuf, index: usize },
}

#[derive(Clone, Debug)]
pub struct CreationRule {
    /// 1-based, as a user counts them.
    pub index: usize,
    pub path_regex: Option<String>,
    pub recipients: Vec<Recipient>,
    pub selector: Selector,
    /// Key types of the rule that driver cannot use (pgp, kms, ...).
    pub other_keys: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SopsConfig {
    pub path: PathBuf,
    pub rules: Vec<CreationRule>,
}

/// The nearest `.sops.yaml` at or above `dir`.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors()
        .map(|d| d.join(CONFIG_NAME))
        .find(|p| p.is_file())
}

/// The config that governs `file`: near the file first, then near the working directory.
pub fn config_for(file: &Path) -> Result<SopsConfig, RulesError> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let found = find_config(dir).or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|cwd| find_config(&cwd))
    });
    let path = found.ok_or_else(|| RulesError::NoConfig {
        start: dir.to_path_buf(),
    })?;
    SopsConfig::load(&path)
}

fn strings(node: &Node) -> Vec<String> {
    match &node.value {
        // sops accepts a comma-separated string, with any whitespace.
        Value::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Seq(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

const OTHER_KEYS: [&str; 6] = [
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault_transit_uri",
    "hckms",
];

impl SopsConfig {
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = crate::files::read_text(path).map_err(|e| RulesError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, RulesError> {
        let invalid = |message: String| RulesError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let root =
            yaml::parse(text).map_err(|e| invalid(format!("line {}: {}", e.line, e.message)))?;
        let Some(Value::Seq(items)) = root.get("creation_rules").map(|n| &n.value) else {
            return Err(invalid("it has no creation_rules list".into()));
        };
        let mut rules = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let index = i + 1;
            let s = |k: &str| r.get(k).and_then(Node::as_str).map(str::to_string);
            let mut texts: Vec<String> = r.get("age").map(strings).unwrap_or_default();
            let mut other_keys: Vec<String> = OTHER_KEYS
                .iter()
                .filter(|k| r.get(k).is_some_and(|v| !strings(v).is_empty()))
                .map(|k| k.to_string())
                .collect();
            if let Some(Value::Seq(groups)) = r.get("key_groups").map(|n| &n.value) {
                for g in groups {
                    texts.extend(g.get("age").map(strings).unwrap_or_default());
                    other_keys.extend(
                        OTHER_KEYS
                            .iter()
                            .filter(|k| g.get(k).is_some())
                            .map(|k| k.to_string()),
                    );
                }
            }
            let recipients = texts
                .iter()
                .map(|t| Recipient::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("creation rule {index}: {e}")))?;
            let selector = Selector {
                unencrypted_suffix: s("unencrypted_suffix"),
                encrypted_suffix: s("encrypted_suffix"),
                unencrypted_regex: s("unencrypted_regex"),
                encrypted_regex: s("encrypted_regex"),
            };
            let path_regex = s("path_regex");
            if let Some(re) = &path_regex {
                regex_lite::Regex::new(re)
                    .map_err(|e| invalid(format!("creation rule {index}: bad path_regex: {e}")))?;
            }
            rules.push(CreationRule {
                index,
                path_regex,
                recipients,
                selector,
                other_keys,
            });
        }
        Ok(SopsConfig {
            path: path.to_path_buf(),
            rules,
        })
    }

    /// The rule for `file`, checked to be usable (it has age recipients).
    pub fn rule_for(&self, file: &Path) -> Result<&CreationRule, RulesError> {
        let given = file.to_string_lossy().replace('\\', "/");
        let base = self.path.parent().unwrap_or(Path::new("."));
        let abs = file.canonicalize().unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|c| c.join(file))
                .unwrap_or_else(|_| file.to_path_buf())
        });
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let relative = abs
            .strip_prefix(&base)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_else(|_| given.clone());
        let rule = self
            .rules
            .iter()
            .find(|r| match &r.path_regex {
                None => true,
                Some(re) => regex_lite::Regex::new(re)
                    .map(|re| re.is_match(&relative) || re.is_match(&given))
                    .unwrap_or(false),
            })
            .ok_or_else(|| RulesError::NoMatch {
                path: self.path.clone(),
                file: relative.clone(),
            })?;
        if rule.recipients.is_empty() {
            return Err(RulesError::NoAge {
                path: self.path.clone(),
                index: rule.index,
            });
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "age19g7xlyf8fndus5zzh72w7hlac28fzefwasa2rh6aju74eyh2tq8q2jhc2g";
    const R2: &str = "age106dn94074uskzjua39h4v0ql89l528wrqp2f84xpcznpr9f6ye4q9k8hp8";

    #[test]
    fn first_matching_rule_wins() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join(CONFIG_NAME);
        std::fs::write(
            &cfg,
            format!(
                "creation_rules:\n  - path_regex: secrets\\.yaml$\n    age: {R1}, {R2}\n    encrypted_regex: ^(api_tokens|passwords)$\n  - path_regex: other/.*\n    pgp: ABCDEF\n  - age:\n      - {R2}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("sub/other")).unwrap();
        let found = config_for(&t.path().join("sub/secrets.yaml")).unwrap();
        let r = found.rule_for(&t.path().join("sub/secrets.yaml")).unwrap();
        assert_eq!(r.index, 1);
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(
            r.selector.encrypted_regex.as_deref(),
            Some("^(api_tokens|passwords)$")
        );
        assert!(matches!(
            found.rule_for(&t.path().join("other/x.yaml")),
            Err(RulesError::NoAge { index: 2, .. })
        ));
        let r = found.rule_for(&t.path().join("plain.yaml")).unwrap();
        assert_eq!(r.index, 3);
        assert_eq!(r.recipients[0].to_string(), R2);
    }

    #[test]
    fn reference_sops_yaml_parses() {
        let text = "creation_rules:\n  - path_regex: secrets\\.yaml$\n    age: age19g7xlyf8fndus5zzh72w7hlac28fzefwasa2rh6aju74eyh2tq8q2jhc2g\n";
        let c = SopsConfig::parse(Path::new("/x/.sops.yaml"), text).unwrap();
        assert!(c.rule_for(Path::new("/x/secrets.yaml")).is_ok());
        assert!(matches!(
            c.rule_for(Path::new("/x/site.yaml")),
            Err(RulesError::NoMatch { .. })
        ));
    }
}
