//! Finding the site-config folder (the user's configuration).
//!
//! Discovery order, as the original: `--site-config`, `$HOMESTAK_SITE_CONFIG`,
//! `../site-config`, `/usr/local/etc/homestak`, `/opt/homestak/site-config`,
//! then the built-in example shipped with driver (so a fresh clone works).
//! `explain` tells what each step found, for `driver config show`.

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

/// One step of discovery as `driver config show` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStep {
    pub origin: Origin,
    pub path: Option<PathBuf>,
    pub outcome: ProbeOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    Chosen,
    NotSet,
    NotFound,
    /// An earlier step was chosen, so this one was not looked at.
    NotReached,
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeOutcome::Chosen => "chosen",
            ProbeOutcome::NotSet => "not set",
            ProbeOutcome::NotFound => "not found",
            ProbeOutcome::NotReached => "not checked (an earlier one was chosen)",
        })
    }
}

/// Every discovery step and what it found, in order (the chosen one marked).
pub fn explain(probe: &Probe) -> Vec<ProbeStep> {
    let chosen = discover(probe).ok().map(|d| d.origin);
    let mut steps = Vec::new();
    let mut reached = true;
    let mut push = |origin: Origin, path: Option<PathBuf>, exists: bool, set: bool| {
        let outcome = if !reached {
            ProbeOutcome::NotReached
        } else if Some(origin) == chosen {
            reached = false;
            ProbeOutcome::Chosen
        } else if !set {
            ProbeOutcome::NotSet
        } else if exists {
            ProbeOutcome::Chosen
        } else {
            ProbeOutcome::NotFound
        };
        steps.push(ProbeStep {
            origin,
            path,
            outcome,
        });
    };
    for (p, origin) in [(&probe.flag, Origin::Flag), (&probe.env, Origin::Env)] {
        push(
            origin,
            p.clone(),
            p.as_ref().is_some_and(|p| p.is_dir()),
            p.is_some(),
        );
    }
    for (p, origin) in [
        (probe.cwd.join("..").join("site-config"), Origin::Sibling),
        (probe.usr_local_etc.clone(), Origin::UsrLocalEtc),
        (probe.opt.clone(), Origin::Opt),
    ] {
        let exists = p.is_dir();
        push(origin, Some(p), exists, true);
    }
    push(Origin::Builtin, None, true, true);
    steps
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

    #[test]
    fn explain_marks_the_chosen_step() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("work")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let steps = explain(&probe(root));
        let outcomes: Vec<(Origin, ProbeOutcome)> =
            steps.iter().map(|s| (s.origin, s.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![
                (Origin::Flag, ProbeOutcome::NotSet),
                (Origin::Env, ProbeOutcome::NotSet),
                (Origin::Sibling, ProbeOutcome::NotFound),
                (Origin::UsrLocalEtc, ProbeOutcome::Chosen),
                (Origin::Opt, ProbeOutcome::NotReached),
                (Origin::Builtin, ProbeOutcome::NotReached),
            ]
        );
        let steps = explain(&Probe {
            usr_local_etc: root.join("none"),
            ..probe(root)
        });
        assert_eq!(steps.last().map(|s| s.outcome), Some(ProbeOutcome::Chosen));
    }
}
