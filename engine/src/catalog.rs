//! Where manifests come from: `-M NAME` (the site-config's `manifests/`
//! first, then the ones built into driver), `--manifest-file PATH` and
//! `--manifest-json JSON`.
//!
//! A name is never turned into an arbitrary path: only plain names
//! (letters, digits, `.`, `_`, `-`, not starting with `.`) are looked up, so
//! `-M ../../etc/passwd` is refused before anything is read.

use std::path::{Path, PathBuf};

use crate::manifest::Source;
use crate::site_config::SiteConfigDir;

/// Manifests shipped inside the binary (the repository's `manifests/`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("n1-basic", include_str!("../../manifests/n1-basic.yaml")),
    ("n1-pull", include_str!("../../manifests/n1-pull.yaml")),
    ("n1-push", include_str!("../../manifests/n1-push.yaml")),
    ("n2-quick", include_str!("../../manifests/n2-quick.yaml")),
    ("n2-pull", include_str!("../../manifests/n2-pull.yaml")),
    ("n2-push", include_str!("../../manifests/n2-push.yaml")),
    (
        "n2-pull-pve",
        include_str!("../../manifests/n2-pull-pve.yaml"),
    ),
    ("n3-deep", include_str!("../../manifests/n3-deep.yaml")),
    ("n2-wide", include_str!("../../manifests/n2-wide.yaml")),
    ("wide-50", include_str!("../../manifests/wide-50.yaml")),
    (
        "n3-cluster",
        include_str!("../../manifests/n3-cluster.yaml"),
    ),
];

/// How the user named the manifest.
#[derive(Clone, Debug)]
pub enum ManifestRef {
    Name(String),
    File(PathBuf),
    Json(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("'{0}' is not a manifest name")]
    BadName(String),
    #[error("manifest '{name}' not found")]
    NotFound {
        name: String,
        searched: Vec<String>,
        available: Vec<String>,
    },
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: crate::files::ReadError,
    },
}

impl CatalogError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            CatalogError::BadName(_) => Some(
                "-M takes a name from manifests/ (e.g. n2-quick); use --manifest-file for a path"
                    .into(),
            ),
            CatalogError::NotFound {
                name,
                searched,
                available,
            } => {
                let names: Vec<&str> = available.iter().map(String::as_str).collect();
                let guess = crate::manifest::did_you_mean(name, &names)
                    .map(|g| format!("did you mean '{g}'? "))
                    .unwrap_or_default();
                Some(format!(
                    "{guess}looked in: {}; available: {}",
                    searched.join(", "),
                    if available.is_empty() {
                        "none".to_string()
                    } else {
                        available.join(", ")
                    }
                ))
            }
            CatalogError::Read { .. } => None,
        }
    }
}

/// Is `name` a plain manifest name (no path parts)?
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Finds and reads a manifest.
pub fn resolve(r: &ManifestRef, site: &SiteConfigDir) -> Result<Source, CatalogError> {
    match r {
        ManifestRef::Json(json) => Ok(Source::new("--manifest-json", json.clone())),
        ManifestRef::File(path) => read(path),
        ManifestRef::Name(name) => {
            if !is_plain_name(name) {
                return Err(CatalogError::BadName(name.clone()));
            }
            let mut searched = Vec::new();
            if let Some(dir) = site.manifests_dir() {
                let path = dir.join(format!("{name}.yaml"));
                if path.is_file() {
                    return read(&path);
                }
                searched.push(dir.display().to_string());
            }
            if let Some((n, text)) = BUILTIN.iter().find(|(n, _)| n == name) {
                return Ok(Source::new(format!("builtin:{n}"), *text));
            }
            searched.push("built-in manifests".into());
            Err(CatalogError::NotFound {
                name: name.clone(),
                searched,
                available: list(site).into_iter().map(|e| e.name).collect(),
            })
        }
    }
}

fn read(path: &Path) -> Result<Source, CatalogError> {
    crate::files::read_text(path)
        .map(|text| Source::new(path.display().to_string(), text))
        .map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The file, or `None` for a built-in manifest.
    pub path: Option<PathBuf>,
    /// A site manifest with the same name hides the built-in one.
    pub shadows_builtin: bool,
}

/// Every manifest `-M` can name, site-config first, sorted by name.
pub fn list(site: &SiteConfigDir) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    if let Some(dir) = site.manifests_dir() {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let path = e.path();
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if path.extension().is_some_and(|x| x == "yaml")
                    && path.is_file()
                    && is_plain_name(stem)
                {
                    out.push(Entry {
                        name: stem.to_string(),
                        shadows_builtin: BUILTIN.iter().any(|(n, _)| *n == stem),
                        path: Some(path),
                    });
                }
            }
        }
    }
    for (name, _) in BUILTIN {
        if !out.iter().any(|e| e.name == *name) {
            out.push(Entry {
                name: name.to_string(),
                path: None,
                shadows_builtin: false,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_config::Origin;

    #[test]
    fn names_cannot_escape() {
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "",
            "x\0y",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
            let e = resolve(&ManifestRef::Name(bad.into()), &SiteConfigDir::builtin()).unwrap_err();
            assert!(matches!(e, CatalogError::BadName(_)), "{bad:?}: {e}");
        }
        assert!(is_plain_name("n2-quick"));
        assert!(is_plain_name("my_manifest.v2"));
    }

    #[test]
    fn site_manifests_come_first_then_builtin() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("manifests")).unwrap();
        std::fs::write(t.path().join("manifests/n1-basic.yaml"), "mine").unwrap();
        std::fs::write(t.path().join("manifests/extra.yaml"), "extra").unwrap();
        let site = SiteConfigDir {
            path: Some(t.path().to_path_buf()),
            origin: Origin::Flag,
        };
        let s = resolve(&ManifestRef::Name("n1-basic".into()), &site).unwrap();
        assert_eq!(s.text.as_str(), "mine");
        let s = resolve(&ManifestRef::Name("n3-deep".into()), &site).unwrap();
        assert_eq!(s.origin, "builtin:n3-deep");
        let l = list(&site);
        let basic = l.iter().find(|e| e.name == "n1-basic").unwrap();
        assert!(basic.shadows_builtin && basic.path.is_some());
        assert!(l.iter().any(|e| e.name == "extra"));
        match resolve(&ManifestRef::Name("n3-deap".into()), &site).unwrap_err() {
            e @ CatalogError::NotFound { .. } => {
                assert!(
                    e.help().unwrap().contains("did you mean 'n3-deep'"),
                    "{:?}",
                    e.help()
                )
            }
            e => panic!("{e}"),
        }
    }
}
