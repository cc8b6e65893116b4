//! The temporary bare clones behind the served repos, and their renewal on reload.
//!
//! One `TempDir` holds every snapshot: generation 0 (made at start) as `{name}.git`, each
//! later one (made by a reload) as `{generation}/{name}.git`, built beside the one served
//! while the old keeps serving. A snapshot is a bare clone of the source, a `_working` branch
//! with a commit of the source's uncommitted changes (tracked and untracked, `.gitignore`
//! respected; the source's index and objects are not touched), and `git update-server-info`
//! so git's dumb HTTP protocol can read it.
//!
//! A clone is many requests (`info/refs`, then objects and packs): one that read the old
//! refs must still find their objects after a reload. So a new snapshot also gets the old
//! one's object files (hard links, or copies across file systems) before its server info is
//! written. The swap itself is the served list replaced under a lock (`http::AppState`); a
//! snapshot's folder is removed when the last holder of its [`Repo`] (the list, a request in
//! flight) lets go.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use engine::site_config::plain_name;

use crate::repos::{Repo, RepoInfo, WORKING};
use crate::ControllerError;

/// A snapshot as served, with what `listening` / `reloaded` report about it.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub repo: Arc<Repo>,
    pub source: PathBuf,
    /// The commit `_working` points at, and whether it differs from the source's HEAD.
    pub working: String,
    pub dirty: bool,
}

pub(crate) struct RepoSet {
    dir: tempfile::TempDir,
    generation: u64,
    current: Vec<Snapshot>,
}

/// What a reload builds from, taken from the set so the build runs without holding it.
pub(crate) struct Rebuild {
    dir: PathBuf,
    generation: u64,
    old: Vec<Snapshot>,
}

/// git with none of the caller's repository environment (GIT_DIR and friends would redirect it).
fn git() -> Command {
    let mut c = Command::new("git");
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CEILING_DIRECTORIES",
    ] {
        c.env_remove(v);
    }
    c.env("GIT_TERMINAL_PROMPT", "0");
    c
}

fn run(name: &str, c: &mut Command) -> Result<String, ControllerError> {
    let err = |message: String| ControllerError::Repo {
        repo: name.to_string(),
        message,
    };
    let out = c.output().map_err(|e| {
        err(format!(
            "cannot run git ({e}); install it: apt-get install git"
        ))
    })?;
    if !out.status.success() {
        return Err(err(format!(
            "git failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where generation `generation` of repo `name` lives.
fn bare_path(dir: &Path, generation: u64, name: &str) -> PathBuf {
    match generation {
        0 => dir.join(format!("{name}.git")),
        g => dir.join(g.to_string()).join(format!("{name}.git")),
    }
}

/// Snapshots of `wanted` as generation `generation`, each carrying the objects of its
/// predecessor in `old` (by name). On error, those made so far are removed again.
fn build(
    dir: &Path,
    generation: u64,
    wanted: &[(String, PathBuf)],
    old: &[Snapshot],
) -> Result<Vec<Snapshot>, ControllerError> {
    let mut made = Vec::new();
    for (name, source) in wanted {
        let bare = bare_path(dir, generation, name);
        let before = old.iter().find(|s| s.repo.name == *name);
        match snapshot(name, source, &bare, before.map(|s| s.repo.bare.as_path())) {
            Ok((working, dirty)) => {
                tracing::info!(repo = %name, %working, dirty, generation, "serving {}", source.display());
                made.push(Snapshot {
                    repo: Arc::new(Repo {
                        name: name.clone(),
                        bare,
                    }),
                    source: source.clone(),
                    working,
                    dirty,
                });
            }
            Err(e) => {
                // Not yet a `Repo`, so nothing else removes it; `made` goes with its drop.
                let _ = std::fs::remove_dir_all(&bare);
                if generation > 0 {
                    let _ = std::fs::remove_dir(dir.join(generation.to_string()));
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}

impl RepoSet {
    pub fn prepare(wanted: &[(String, PathBuf)]) -> Result<RepoSet, ControllerError> {
        let dir = tempfile::Builder::new()
            .prefix("driver-serve-")
            .tempdir()
            .map_err(|e| {
                ControllerError::Internal(format!("cannot make a temporary folder: {e}"))
            })?;
        for (i, (name, _)) in wanted.iter().enumerate() {
            if !plain_name(name) || name.ends_with(".git") {
                return Err(ControllerError::BadRepoName(name.clone()));
            }
            if wanted[..i].iter().any(|(n, _)| n == name) {
                return Err(ControllerError::Repo {
                    repo: name.clone(),
                    message: "named twice".into(),
                });
            }
        }
        let current = build(dir.path(), 0, wanted, &[])?;
        Ok(RepoSet {
            dir,
            generation: 0,
            current,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn served(&self) -> Vec<Arc<Repo>> {
        self.current.iter().map(|s| s.repo.clone()).collect()
    }

    pub fn info(&self, url: &str) -> Vec<RepoInfo> {
        self.current
            .iter()
            .map(|s| RepoInfo {
                name: s.repo.name.clone(),
                source: s.source.clone(),
                url: format!("{url}/{}.git", s.repo.name),
                working: s.working.clone(),
                dirty: s.dirty,
            })
            .collect()
    }

    /// What the next generation is built from.
    pub fn rebuild(&self) -> Rebuild {
        Rebuild {
            dir: self.dir.path().to_path_buf(),
            generation: self.generation + 1,
            old: self.current.clone(),
        }
    }

    /// Puts a built generation in place of the current one (which goes once unheld).
    pub fn install(&mut self, generation: u64, fresh: Vec<Snapshot>) {
        self.generation = generation;
        self.current = fresh;
    }

    pub fn remove(self) -> Result<(), ControllerError> {
        let path = self.dir.path().to_path_buf();
        // The snapshots' own removal (on drop) finds nothing left.
        self.dir.close().map_err(|e| {
            ControllerError::Internal(format!("cannot remove {}: {e}", path.display()))
        })
    }
}

impl Rebuild {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Snapshots every repo again, from the same sources (blocking: runs git).
    pub fn build(&self) -> Result<Vec<Snapshot>, ControllerError> {
        let wanted: Vec<(String, PathBuf)> = self
            .old
            .iter()
            .map(|s| (s.repo.name.clone(), s.source.clone()))
            .collect();
        build(&self.dir, self.generation, &wanted, &self.old)
    }
}

/// Bare clone of `source` at `bare`, `_working` committed in it, the objects of `carry`
/// (the previous snapshot) added; returns `_working` and whether it differs from HEAD.
fn snapshot(
    name: &str,
    source: &Path,
    bare: &Path,
    carry: Option<&Path>,
) -> Result<(String, bool), ControllerError> {
    let head = run(
        name,
        git()
            .arg("-C")
            .arg(source)
            .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]),
    )
    .map_err(|_| ControllerError::Repo {
        repo: name.to_string(),
        message: format!(
            "{} is not a git repo with at least one commit",
            source.display()
        ),
    })?;
    run(
        name,
        git()
            .args(["clone", "--bare", "--quiet", "--no-hardlinks", "--"])
            .arg(source)
            .arg(bare),
    )?;
    let is_bare = run(
        name,
        git()
            .arg("-C")
            .arg(source)
            .args(["rev-parse", "--is-bare-repository"]),
    )? == "true";
    let working = if is_bare {
        head.clone()
    } else {
        let top = run(
            name,
            git()
                .arg("-C")
                .arg(source)
                .args(["rev-parse", "--show-toplevel"]),
        )?;
        let index = bare.join("working.index");
        let in_bare = |args: &[&str]| {
            let mut c = git();
            c.arg("--git-dir")
                .arg(bare)
                .arg("--work-tree")
                .arg(&top)
                .env("GIT_INDEX_FILE", &index)
                .env("GIT_AUTHOR_NAME", "driver serve")
                .env("GIT_AUTHOR_EMAIL", "driver-serve@localhost")
                .env("GIT_COMMITTER_NAME", "driver serve")
                .env("GIT_COMMITTER_EMAIL", "driver-serve@localhost")
                .args(args);
            run(name, &mut c)
        };
        in_bare(&["read-tree", &head])?;
        in_bare(&["add", "--all", "--", "."])?;
        let tree = in_bare(&["write-tree"])?;
        let head_tree = in_bare(&["rev-parse", &format!("{head}^{{tree}}")])?;
        let _ = std::fs::remove_file(&index);
        if tree == head_tree {
            head.clone()
        } else {
            in_bare(&[
                "commit-tree",
                &tree,
                "-p",
                &head,
                "-m",
                "driver serve: uncommitted changes",
            ])?
        }
    };
    run(
        name,
        git().arg("--git-dir").arg(bare).args([
            "update-ref",
            &format!("refs/heads/{WORKING}"),
            &working,
        ]),
    )?;
    if let Some(old) = carry {
        carry_objects(&old.join("objects"), &bare.join("objects")).map_err(|e| {
            ControllerError::Repo {
                repo: name.to_string(),
                message: format!("cannot carry the previous snapshot's objects: {e}"),
            }
        })?;
    }
    // After the carried packs are in: objects/info/packs lists them too.
    run(
        name,
        git().arg("--git-dir").arg(bare).arg("update-server-info"),
    )?;
    let dirty = working != head;
    Ok((working, dirty))
}

/// Links (else copies) into `to` the loose objects and pack files of `from` it lacks.
fn carry_objects(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let sub = entry.file_name();
        let Some(sub) = sub.to_str() else { continue };
        let loose = sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_hexdigit());
        if !(loose || sub == "pack") || !entry.file_type()?.is_dir() {
            continue;
        }
        let dest = to.join(sub);
        std::fs::create_dir_all(&dest)?;
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let name = file.file_name();
            let wanted = loose || name.to_str().is_some_and(|n| n.starts_with("pack-"));
            let target = dest.join(&name);
            if !wanted || !file.file_type()?.is_file() || target.exists() {
                continue;
            }
            if std::fs::hard_link(file.path(), &target).is_err() {
                std::fs::copy(file.path(), &target)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) {
        let ok = git()
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git {args:?} (needs git: apt-get install git)");
    }

    #[test]
    fn a_rebuilt_snapshot_keeps_the_old_objects_and_the_old_one_goes_once_unheld() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        std::fs::create_dir(&src).unwrap();
        git_in(&src, &["init", "-q"]);
        std::fs::write(src.join("a.txt"), "one\n").unwrap();
        git_in(&src, &["add", "."]);
        git_in(&src, &["commit", "-qm", "one"]);
        std::fs::write(src.join("a.txt"), "uncommitted\n").unwrap();
        let mut set = RepoSet::prepare(&[("r".into(), src.clone())]).unwrap();
        let old = set.current[0].clone();
        assert!(old.dirty);

        // The uncommitted change goes away: the old _working commit is in no new ref.
        git_in(&src, &["checkout", "-q", "--", "a.txt"]);
        let next = set.rebuild();
        let fresh = next.build().unwrap();
        assert!(!fresh[0].dirty);
        assert_ne!(fresh[0].working, old.working);
        set.install(next.generation(), fresh);
        let new_bare = set.current[0].repo.bare.clone();
        assert_eq!(new_bare, set.dir().join("1/r.git"));
        // ...yet a client that read the old refs still finds the commit.
        let cat = git()
            .arg("--git-dir")
            .arg(&new_bare)
            .args(["cat-file", "-e", &format!("{}^{{commit}}", old.working)])
            .status()
            .unwrap();
        assert!(cat.success(), "the old _working commit was not carried");
        let refs = std::fs::read_to_string(new_bare.join("info/refs")).unwrap();
        assert!(refs.contains(&set.current[0].working), "{refs}");

        // Held (a request in flight): still there; let go: removed.
        let held = old.repo.clone();
        let old_bare = held.bare.clone();
        drop(next);
        drop(old);
        assert!(old_bare.join("info/refs").exists());
        drop(held);
        assert!(!old_bare.exists());
        assert!(new_bare.join("info/refs").exists());
        set.remove().unwrap();
    }
}
