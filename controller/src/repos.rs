//! The served git repos: at start, a temporary bare clone of each (`{name}.git` in one
//! `TempDir`), a `_working` branch with a snapshot of the source's uncommitted changes
//! (tracked and untracked, `.gitignore` respected; the source's index and objects are not
//! touched), and `git update-server-info` so git's dumb HTTP protocol can read it. Requests
//! get either a file of that protocol (`HEAD`, `info/refs`, `objects/...`, by strict pattern,
//! read from the bare repo, never through a symlink) or a raw file of `_working` (read with
//! git from the tree, so nothing outside the repo is reachable; symlinks are not served).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use engine::site_config::plain_name;

use crate::ControllerError;

pub const WORKING: &str = "_working";

/// A served repo as the operator sees it.
#[derive(Clone, Debug)]
pub struct RepoInfo {
    pub name: String,
    pub source: PathBuf,
    pub url: String,
    /// The commit `_working` points at.
    pub working: String,
    /// Whether `_working` differs from the source's HEAD (uncommitted changes).
    pub dirty: bool,
}

#[derive(Debug)]
pub(crate) struct Repo {
    pub name: String,
    pub bare: PathBuf,
}

pub(crate) struct RepoSet {
    dir: tempfile::TempDir,
    repos: Vec<(Arc<Repo>, PathBuf, String, bool)>,
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

impl RepoSet {
    pub fn prepare(wanted: &[(String, PathBuf)]) -> Result<RepoSet, ControllerError> {
        let dir = tempfile::Builder::new()
            .prefix("driver-serve-")
            .tempdir()
            .map_err(|e| {
                ControllerError::Internal(format!("cannot make a temporary folder: {e}"))
            })?;
        let mut repos = Vec::new();
        for (name, source) in wanted {
            if !plain_name(name) || name.ends_with(".git") {
                return Err(ControllerError::BadRepoName(name.clone()));
            }
            if repos
                .iter()
                .any(|(r, ..): &(Arc<Repo>, _, _, _)| r.name == *name)
            {
                return Err(ControllerError::Repo {
                    repo: name.clone(),
                    message: "named twice".into(),
                });
            }
            let (working, dirty) = snapshot(name, source, &dir.path().join(format!("{name}.git")))?;
            let bare = dir.path().join(format!("{name}.git"));
            tracing::info!(repo = %name, %working, dirty, "serving {}", source.display());
            repos.push((
                Arc::new(Repo {
                    name: name.clone(),
                    bare,
                }),
                source.clone(),
                working,
                dirty,
            ));
        }
        Ok(RepoSet { dir, repos })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn served(&self) -> Vec<Arc<Repo>> {
        self.repos.iter().map(|(r, ..)| r.clone()).collect()
    }

    pub fn info(&self, url: &str) -> Vec<RepoInfo> {
        self.repos
            .iter()
            .map(|(r, source, working, dirty)| RepoInfo {
                name: r.name.clone(),
                source: source.clone(),
                url: format!("{url}/{}.git", r.name),
                working: working.clone(),
                dirty: *dirty,
            })
            .collect()
    }

    pub fn remove(self) -> Result<(), ControllerError> {
        let path = self.dir.path().to_path_buf();
        self.dir.close().map_err(|e| {
            ControllerError::Internal(format!("cannot remove {}: {e}", path.display()))
        })
    }
}

/// Bare clone of `source` at `bare`, `_working` committed in it; returns `_working` and
/// whether it differs from HEAD.
fn snapshot(name: &str, source: &Path, bare: &Path) -> Result<(String, bool), ControllerError> {
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
    run(
        name,
        git().arg("--git-dir").arg(bare).arg("update-server-info"),
    )?;
    let dirty = working != head;
    Ok((working, dirty))
}

fn is_hex(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Is this (already confined) path one of the files git's dumb HTTP protocol reads?
pub(crate) fn is_protocol_file(rest: &[String]) -> bool {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    match r.as_slice() {
        ["HEAD"] | ["info", "refs"] => true,
        ["objects", "info", f] => matches!(*f, "packs" | "alternates" | "http-alternates"),
        ["objects", dir, file] if is_hex(dir, 2..=2) => is_hex(file, 38..=62),
        ["objects", "pack", f] => f
            .strip_prefix("pack-")
            .and_then(|s| s.strip_suffix(".pack").or_else(|| s.strip_suffix(".idx")))
            .is_some_and(|h| is_hex(h, 40..=64)),
        _ => false,
    }
}

/// Reads a protocol file from the bare repo: a regular file, not through a symlink, and
/// still inside the repo once resolved. `None` when absent (404).
pub(crate) async fn protocol_file(repo: &Repo, rest: &[String]) -> Option<Vec<u8>> {
    let mut path = repo.bare.clone();
    for s in rest {
        path.push(s);
    }
    let meta = tokio::fs::symlink_metadata(&path).await.ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let real = tokio::fs::canonicalize(&path).await.ok()?;
    let root = tokio::fs::canonicalize(&repo.bare).await.ok()?;
    if !real.starts_with(&root) {
        tracing::warn!(repo = %repo.name, "refused a path resolving outside the repo");
        return None;
    }
    tokio::fs::read(&real).await.ok()
}

/// A raw file of `_working`: a blob at that path (not a symlink, not a folder, not a
/// submodule). `None` when there is none.
pub(crate) async fn raw_file(repo: &Repo, rest: &[String]) -> Option<Vec<u8>> {
    let path = rest.join("/");
    let ls = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo.bare)
        .args(["ls-tree", "-z", WORKING, "--"])
        .arg(&path)
        .env_remove("GIT_DIR")
        // A path, not a pattern.
        .env("GIT_LITERAL_PATHSPECS", "1")
        .output()
        .await
        .ok()?;
    // "<mode> <type> <object>\t<path>\0", exactly one entry with exactly our path.
    let text = String::from_utf8(ls.stdout).ok()?;
    let entry = text.strip_suffix('\0')?;
    let (meta, listed) = entry.split_once('\t')?;
    if listed != path || entry.contains('\0') {
        return None;
    }
    let mut parts = meta.split(' ');
    let (mode, kind, object) = (parts.next()?, parts.next()?, parts.next()?);
    if kind != "blob" || !(mode == "100644" || mode == "100755") {
        if mode == "120000" {
            tracing::info!(repo = %repo.name, "refused to serve a symlink");
        }
        return None;
    }
    let blob = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo.bare)
        .args(["cat-file", "blob", object])
        .env_remove("GIT_DIR")
        .output()
        .await
        .ok()?;
    blob.status.success().then_some(blob.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn only_dumb_protocol_files_come_from_the_bare_repo() {
        for ok in [
            "HEAD",
            "info/refs",
            "objects/info/packs",
            "objects/ab/0123456789abcdef0123456789abcdef012345",
            "objects/pack/pack-0123456789abcdef0123456789abcdef01234567.idx",
        ] {
            assert!(is_protocol_file(&v(ok)), "{ok}");
        }
        for no in [
            "config",
            "hooks/pre-commit",
            "working.index",
            "objects/info/../../config",
            "objects/zz/0123456789abcdef0123456789abcdef012345",
            "objects/pack/other.pack",
            "install.sh",
        ] {
            assert!(!is_protocol_file(&v(no)), "{no}");
        }
    }
}
