//! Which values of a sops file are encrypted: sops' four mutually exclusive
//! selectors (suffixes and regexes over the key path), their default, and
//! how they are written back into the `sops:` block.

use super::SopsError;

const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Which values are encrypted: sops' four mutually exclusive selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<String>,
    pub encrypted_regex: Option<String>,
}

pub(super) struct CompiledSelector {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex_lite::Regex>,
    encrypted_regex: Option<regex_lite::Regex>,
}

impl Selector {
    fn is_empty(&self) -> bool {
        self == &Selector::default()
    }

    /// sops' default when nothing is chosen.
    pub(super) fn or_default(mut self) -> Self {
        if self.is_empty() {
            self.unencrypted_suffix = Some(DEFAULT_UNENCRYPTED_SUFFIX.into());
        }
        self
    }

    pub(super) fn compile(&self) -> Result<CompiledSelector, SopsError> {
        let re = |what, r: &Option<String>| -> Result<_, SopsError> {
            r.as_deref()
                .map(regex_lite::Regex::new)
                .transpose()
                .map_err(|e| SopsError::Regex {
                    what,
                    why: e.to_string(),
                })
        };
        Ok(CompiledSelector {
            unencrypted_suffix: self.unencrypted_suffix.clone().filter(|s| !s.is_empty()),
            encrypted_suffix: self.encrypted_suffix.clone().filter(|s| !s.is_empty()),
            unencrypted_regex: re("unencrypted_regex", &self.unencrypted_regex)?,
            encrypted_regex: re("encrypted_regex", &self.encrypted_regex)?,
        })
    }

    pub(super) fn entries(&self) -> Vec<(&'static str, String)> {
        [
            ("unencrypted_suffix", &self.unencrypted_suffix),
            ("encrypted_suffix", &self.encrypted_suffix),
            ("unencrypted_regex", &self.unencrypted_regex),
            ("encrypted_regex", &self.encrypted_regex),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

impl CompiledSelector {
    /// sops' rule, in its order: each selector looks at every key on the path.
    pub(super) fn encrypts(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix {
            if path.iter().any(|k| k.ends_with(s.as_str())) {
                enc = false;
            }
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex {
            if path.iter().any(|k| r.is_match(k)) {
                enc = false;
            }
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|k| r.is_match(k));
        }
        enc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_follow_sops() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let s = Selector {
            encrypted_regex: Some("^(data|stringData)$".into()),
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert!(s.encrypts(&p(&["data", "x"])));
        assert!(!s.encrypts(&p(&["metadata", "name"])));
        let s = Selector::default().or_default().compile().unwrap();
        assert!(!s.encrypts(&p(&["a", "b_unencrypted", "c"])));
        assert!(s.encrypts(&p(&["a", "b"])));
    }
}
