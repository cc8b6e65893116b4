//! Finding the site-config folder (the user's configuration).
//!
//! Discovery order, as the original: `--site-config`, `$HOMESTAK_SITE_CONFIG`,
//! `../site-config`, `/usr/local/etc/homestak`, `/opt/homestak/site-config`,
//! then the built-in example shipped with driver (so a fresh clone works).

use std::fmt;
use std::path::{Path, PathBuf};

/// Which rule found the site-config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    Sibling,
    UsrLocalEtc,
    Opt,
    /// No site-config on disk: the example built into driver.
    Builtin,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--site-config",
            Origin::Env => "$HOMESTAK_SITE_CONFIG",
            Origin::Sibling => "../site-config",
            Origin::UsrLocalEtc => "/usr/local/etc/homestak",
            Origin::Opt => "/opt/homestak/site-config",
            Origin::Builtin => "built-in example",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteConfigDir {
    /// `None` for the built-in example.
    pub path: Option<PathBuf>,
    pub origin: Origin,
}

impl SiteConfigDir {
    pub fn builtin() -> Self {
        SiteConfigDir {
            path: None,
            origin: Origin::Builtin,
        }
    }

    /// `manifests/` of this site-config, if it is on disk.
    pub fn manifests_dir(&self) -> Option<PathBuf> {
        self.path.as_ref().map(|p| p.join("manifests"))
    }
}

impl fmt::Display for SiteConfigDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} (from {})", p.display(), self.origin),
            None => write!(f, "{}", self.origin),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("{origin} points to {path}, which is not a directory")]
    NotADirectory { origin: Origin, path: PathBuf },
}

/// The places discovery looks at, so tests can point them elsewhere.
#[derive(Clone, Debug)]
pub struct Probe {
    pub flag: Option<PathBuf>,
    pub env: Option<PathBuf>,
    pub cwd: PathBuf,
    pub usr_local_etc: PathBuf,
    pub opt: PathBuf,
}

impl Probe {
    /// The real places, from the process environment.
    pub fn from_env(flag: Option<PathBuf>) -> Self {
        Probe {
            flag,
            env: std::env::var_os("HOMESTAK_SITE_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            usr_local_etc: PathBuf::from("/usr/local/etc/homestak"),
            opt: PathBuf::from("/opt/homestak/site-config"),
        }
    }
}

/// Applies the discovery order. An explicit choice (flag or variable) that
/// does not exist is an error rather than a silent fall-through.
pub fn discover(probe: &Probe) -> Result<SiteConfigDir, DiscoveryError> {
    for (path, origin) in [(&probe.flag, Origin::Flag), (&probe.env, Origin::Env)] {
        if let Some(p) = path {
            if !p.is_dir() {
                return Err(DiscoveryError::NotADirectory {
                    origin,
                    path: p.clone(),
                });
            }
            return Ok(SiteConfigDir {
                path: Some(p.clone()),
                origin,
            });
        }
    }
    let candidates: [(PathBuf, Origin); 3] = [
        (probe.cwd.join("..").join("site-config"), Origin::Sibling),
        (probe.usr_local_etc.clone(), Origin::UsrLocalEtc),
        (probe.opt.clone(), Origin::Opt),
    ];
    for (path, origin) in candidates {
        if path.is_dir() {
            return Ok(SiteConfigDir {
                path: Some(normalize(&path)),
                origin,
            });
        }
    }
    Ok(SiteConfigDir::builtin())
}

fn normalize(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(root: &Path) -> Probe {
        Probe {
            flag: None,
            env: None,
            cwd: root.join("work"),
            usr_local_etc: root.join("etc"),
            opt: root.join("opt"),
        }
    }

    #[test]
    fn discovery_order() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("work")).unwrap();
        let mut p = probe(root);
        assert_eq!(discover(&p).unwrap(), SiteConfigDir::builtin());

        std::fs::create_dir_all(root.join("opt")).unwrap();
        assert_eq!(discover(&p).unwrap().origin, Origin::Opt);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        assert_eq!(discover(&p).unwrap().origin, Origin::UsrLocalEtc);
        std::fs::create_dir_all(root.join("site-config")).unwrap();
        assert_eq!(discover(&p).unwrap().origin, Origin::Sibling);

        std::fs::create_dir_all(root.join("envsc")).unwrap();
        p.env = Some(root.join("envsc"));
        assert_eq!(discover(&p).unwrap().origin, Origin::Env);
        p.flag = Some(root.join("missing"));
        assert_eq!(
            discover(&p).unwrap_err(),
            DiscoveryError::NotADirectory {
                origin: Origin::Flag,
                path: root.join("missing")
            }
        );
    }
}
