//! Serving the git repos' snapshots (made and renewed in `snapshots`): a request gets either
//! a file of git's dumb HTTP protocol (`HEAD`, `info/refs`, `objects/...`, by strict pattern,
//! read from the bare repo, never through a symlink) or a raw file of `_working` (read with
//! git from the tree, so nothing outside the repo is reachable; symlinks are not served).
//! A request holds the [`Repo`] it reads from; the last holder of a replaced snapshot
//! removes its folder.

use std::path::PathBuf;

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

/// One snapshot's bare repo, as requests read it.
#[derive(Debug)]
pub(crate) struct Repo {
    pub name: String,
    pub bare: PathBuf,
}

impl Drop for Repo {
    /// Nobody serves from it any more (a reload replaced it, or the controller stopped).
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.bare) {
            Ok(()) => tracing::debug!(repo = %self.name, "removed {}", self.bare.display()),
            // Already gone with the whole temporary folder at stop.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(repo = %self.name, "cannot remove {}: {e}", self.bare.display())
            }
        }
        // A later generation's folder (`{n}/`), once its last repo is gone; never the root.
        if let Some(parent) = self.bare.parent() {
            let generation = parent
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if generation {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
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
