//! Where a container's template comes from: the `vztmpl:` mapping of `images/NAME.yaml` for
//! the image a `type: ct` node names. Either an entry of PVE's appliance index
//! (`vztmpl: {appliance: debian-12-standard}`: its newest version) or a file downloaded into
//! the host's storage (`vztmpl: {url: https://.../x.tar.zst, sha256: ...}`). Without a
//! `vztmpl:` (or an `images/NAME.yaml`), the appliance `NAME-standard`.

use std::collections::BTreeMap;

use crate::manifest::{Manifest, NodeKind};
use crate::yaml::Node;

use super::{ConfigError, Entity, SiteConfig};

/// A container template's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtTemplateSource {
    /// The newest `PACKAGE_VERSION_ARCH.tar.*` in PVE's appliance index (`pveam available`).
    Appliance { package: String },
    /// A file fetched by the host from `url` (PVE's `download-url`, content `vztmpl`).
    Url {
        url: String,
        /// The file name in the storage: the URL's last segment.
        file: String,
        /// `(algorithm, hex digest)`: `sha256` or `sha512`.
        checksum: Option<(String, String)>,
    },
}

impl CtTemplateSource {
    /// What a log line calls it.
    pub fn describe(&self) -> String {
        match self {
            CtTemplateSource::Appliance { package } => format!("appliance {package}"),
            CtTemplateSource::Url { url, .. } => url.clone(),
        }
    }
}

/// The keys `vztmpl:` takes.
const KEYS: [&str; 4] = ["appliance", "url", "sha256", "sha512"];
/// Container template archives PVE accepts (its `VZTMPL_EXT_RE_1`).
const EXTENSIONS: [&str; 5] = [".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2", ".tar"];

impl SiteConfig {
    /// Image name → the template source of every image a container of `manifest` uses.
    pub fn ct_templates(
        &self,
        manifest: &Manifest,
    ) -> Result<BTreeMap<String, CtTemplateSource>, ConfigError> {
        let mut out = BTreeMap::new();
        for node in manifest.nodes.iter().filter(|n| n.kind == NodeKind::Ct) {
            let Some(image) = node.image.as_deref() else {
                continue;
            };
            if out.contains_key(image) {
                continue;
            }
            let found = self.try_find(Entity::Image, image)?;
            let source = match found
                .as_ref()
                .and_then(|f| f.doc.get("vztmpl").map(|v| (f, v)))
            {
                Some((f, v)) => parse(&f.file, v)?,
                None => CtTemplateSource::Appliance {
                    package: format!("{image}-standard"),
                },
            };
            out.insert(image.to_string(), source);
        }
        Ok(out)
    }
}

fn invalid(file: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        message,
    }
}

/// One `vztmpl:` mapping.
pub(super) fn parse(file: &str, v: &Node) -> Result<CtTemplateSource, ConfigError> {
    let usage = "write `vztmpl: {appliance: debian-12-standard}` (from `pveam available`) or \
                 `vztmpl: {url: https://.../NAME.tar.zst, sha256: HEX}`";
    let Some(map) = v.as_map() else {
        return Err(invalid(
            file,
            format!("'vztmpl' must be a mapping, found {}: {usage}", v.kind()),
        ));
    };
    let mut fields = BTreeMap::new();
    for (k, val) in map {
        let key = k.as_str().unwrap_or("?");
        if !KEYS.contains(&key) {
            return Err(invalid(
                file,
                format!(
                    "unknown key '{}' in 'vztmpl' (allowed: {})",
                    crate::yaml::shorten(key, 64),
                    KEYS.join(", ")
                ),
            ));
        }
        let Some(text) = val.as_str().filter(|s| !s.trim().is_empty()) else {
            return Err(invalid(
                file,
                format!(
                    "'vztmpl.{key}' must be a non-empty string, found {} (quote a value YAML \
                     reads as a number)",
                    val.kind()
                ),
            ));
        };
        fields.insert(key, text.trim().to_string());
    }
    match (fields.remove("appliance"), fields.remove("url")) {
        (Some(package), None) => match fields.keys().next() {
            Some(k) => Err(invalid(
                file,
                format!("'vztmpl.{k}' checks a download from `url:`; the appliance index has its own checksums: remove it"),
            )),
            None => Ok(CtTemplateSource::Appliance { package }),
        },
        (None, Some(url)) => url_source(file, url, fields),
        (Some(_), Some(_)) => Err(invalid(
            file,
            "'vztmpl' has both 'appliance' and 'url': keep one".into(),
        )),
        (None, None) => Err(invalid(file, format!("'vztmpl' names no template: {usage}"))),
    }
}

fn url_source(
    file: &str,
    url: String,
    mut fields: BTreeMap<&str, String>,
) -> Result<CtTemplateSource, ConfigError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(
            file,
            format!("'vztmpl.url' must be an http(s) URL (PVE downloads it), found '{url}'"),
        ));
    }
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    if !EXTENSIONS
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e))
    {
        return Err(invalid(
            file,
            format!(
                "'vztmpl.url' must end in a container template file name ({}), found '{url}'",
                EXTENSIONS.join(", ")
            ),
        ));
    }
    let checksum = match (fields.remove("sha256"), fields.remove("sha512")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                file,
                "'vztmpl' has both 'sha256' and 'sha512': keep one".into(),
            ))
        }
        (Some(h), None) => Some(("sha256".to_string(), hex(file, "sha256", h, 64)?)),
        (None, Some(h)) => Some(("sha512".to_string(), hex(file, "sha512", h, 128)?)),
        (None, None) => None,
    };
    Ok(CtTemplateSource::Url {
        url,
        file: name,
        checksum,
    })
}

fn hex(file: &str, key: &str, h: String, len: usize) -> Result<String, ConfigError> {
    if h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(invalid(
            file,
            format!("'vztmpl.{key}' must be {len} hex digits (`{key}sum FILE`), found '{h}'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(yaml: &str) -> Result<CtTemplateSource, String> {
        let doc = crate::yaml::parse(yaml).map_err(|e| format!("{e:?}"))?;
        let v = doc.get("vztmpl").ok_or("no vztmpl")?;
        parse("images/x.yaml", v).map_err(|e| e.to_string())
    }

    #[test]
    fn appliance_or_url_with_a_checksum_and_refusals_with_hints() {
        assert_eq!(
            src("vztmpl: {appliance: debian-12-standard}\n"),
            Ok(CtTemplateSource::Appliance {
                package: "debian-12-standard".into()
            })
        );
        let sha = "A".repeat(64);
        assert_eq!(
            src(&format!(
                "vztmpl: {{url: 'https://example.org/t/deb_1_amd64.tar.zst?x=1', sha256: {sha}}}\n"
            )),
            Ok(CtTemplateSource::Url {
                url: "https://example.org/t/deb_1_amd64.tar.zst?x=1".into(),
                file: "deb_1_amd64.tar.zst".into(),
                checksum: Some(("sha256".into(), "a".repeat(64))),
            })
        );
        for (yaml, phrase) in [
            ("vztmpl: debian\n", "must be a mapping"),
            (
                "vztmpl: {appliance: a, url: 'https://e/x.tar.gz'}\n",
                "both 'appliance' and 'url'",
            ),
            ("vztmpl: {}\n", "names no template"),
            ("vztmpl: {applianse: a}\n", "unknown key 'applianse'"),
            ("vztmpl: {appliance: a, sha256: abc}\n", "remove it"),
            ("vztmpl: {url: 'ftp://e/x.tar.gz'}\n", "http(s) URL"),
            (
                "vztmpl: {url: 'https://e/x.qcow2'}\n",
                "container template file name",
            ),
            (
                "vztmpl: {url: 'https://e/x.tar.gz', sha256: abc}\n",
                "64 hex digits",
            ),
            (
                "vztmpl: {url: 'https://e/x.tar.gz', sha512: '12'}\n",
                "128 hex digits",
            ),
            (
                "vztmpl: {url: 'https://e/x.tar.gz', sha512: 12}\n",
                "quote a value",
            ),
        ] {
            let e = src(yaml).expect_err(yaml);
            assert!(e.contains(phrase), "{yaml}: {e}");
            assert!(e.starts_with("images/x.yaml: "), "{e}");
        }
    }
}
