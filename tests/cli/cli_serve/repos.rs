//! Git repos over dumb HTTP: a real `git clone`, raw files of `_working`, the repo token,
//! and every way out of the repo refused (dot segments, encoded slashes, git's own files,
//! a symlink in the served repo pointing outside).

use std::path::Path;
use std::process::Command;

use super::{need, Daemon, Site};

const TOKEN: &str = "repo-tok-5e1d";
const OUTSIDE: &str = "OUTSIDE-THE-REPO-c0ffee";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repo with a commit, an uncommitted change, an untracked file, an ignored file and a
/// symlink to a file outside it.
fn served_repo(root: &Path) -> std::path::PathBuf {
    let repo = root.join("boot");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("install.sh"), "echo committed\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "ignored.txt\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "init"]);
    std::fs::write(repo.join("install.sh"), "echo uncommitted\n").unwrap();
    std::fs::write(repo.join("new.txt"), "untracked\n").unwrap();
    std::fs::write(repo.join("ignored.txt"), "ignored\n").unwrap();
    std::fs::write(root.join("secret.txt"), OUTSIDE).unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), repo.join("leak")).unwrap();
    repo
}

fn clone(url: &str, token: Option<&str>, dest: &Path, branch: &str) -> std::process::Output {
    let mut c = Command::new("git");
    if let Some(t) = token {
        c.args(["-c", &format!("http.extraHeader=Authorization: Bearer {t}")]);
    }
    c.args([
        "-c",
        "http.sslVerify=false",
        "clone",
        "-q",
        "-b",
        branch,
        url,
    ])
    .arg(dest)
    .env("GIT_TERMINAL_PROMPT", "0")
    .output()
    .unwrap()
}

#[test]
fn serve_git_repos_clone_over_dumb_http_and_stay_confined() {
    need("git", "apt-get install git");
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let repo = served_repo(work.path());
    let arg = format!("boot={}", repo.display());
    let d = Daemon::start(site.path(), &["--repo", &arg, "--repo-token", TOKEN]);
    let r = &d.listening["repos"][0];
    assert_eq!(r["name"], "boot");
    assert_eq!(r["dirty"], true);
    let url = r["url"].as_str().unwrap().to_string();

    // A real clone: main is the commit, _working the uncommitted state (ignored file left out).
    let main = work.path().join("main");
    let out = clone(&url, Some(TOKEN), &main, "main");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(main.join("install.sh")).unwrap(),
        "echo committed\n"
    );
    let working = work.path().join("working");
    let out = clone(&url, Some(TOKEN), &working, "_working");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(working.join("install.sh")).unwrap(),
        "echo uncommitted\n"
    );
    assert!(working.join("new.txt").exists());
    assert!(!working.join("ignored.txt").exists());
    // The symlink travels as a link (its target's text), never as the outside file's content.
    let leak = std::fs::symlink_metadata(working.join("leak")).unwrap();
    assert!(leak.file_type().is_symlink());
    // The source repo is untouched: its change is still uncommitted, its index as it was.
    let status = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(" M install.sh") && status.contains("?? new.txt"),
        "{status}"
    );

    // Without the token, or with a wrong one, no clone.
    assert!(!clone(&url, None, &work.path().join("x1"), "main")
        .status
        .success());
    assert!(!clone(&url, Some("wrong"), &work.path().join("x2"), "main")
        .status
        .success());

    // Raw files of _working.
    assert_eq!(
        d.get("/boot.git/install.sh", Some(TOKEN)),
        (200, "echo uncommitted\n".into())
    );
    assert_eq!(d.get("/boot.git/new.txt", Some(TOKEN)).0, 200);
    assert_eq!(
        d.get("/boot.git/install.sh", None),
        (401, "unauthorized\n".into())
    );
    assert_eq!(
        d.get("/boot.git/install.sh", Some("wrong")),
        (403, "forbidden\n".into())
    );
    assert_eq!(d.get("/other.git/install.sh", Some(TOKEN)).0, 404);
    // Unknown repos look the same as known ones to a client without the token.
    assert_eq!(d.get("/other.git/install.sh", None).0, 401);

    // Ways out: none answers 200 or shows what is outside.
    for path in [
        "/boot.git/leak",
        "/..%2f..%2fetc/passwd",
        "/boot.git/..%2f..%2f..%2fetc%2fpasswd",
        "/boot.git/../../x",
        "/boot.git/../../../../etc/passwd",
        "/boot.git/%2e%2e/%2e%2e/etc/passwd",
        "/boot.git/objects/../config",
        "/boot.git/config",
        "/boot.git/working.index",
        "/boot.git/hooks/pre-commit.sample",
        "/boot.git/.git/config",
        "/boot.git/ignored.txt",
    ] {
        let (code, body) = d.get(path, Some(TOKEN));
        assert!(code == 404 || code == 400, "{path}: {code} {body}");
        assert!(
            !body.contains(OUTSIDE) && !body.contains("root:"),
            "{path}: {body}"
        );
    }
}

#[test]
fn serve_refuses_repos_without_a_token_and_bad_repo_names() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let arg = format!("boot={}", work.path().display());
    let run = |args: &[&str]| {
        Command::new(crate::common::BIN)
            .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(args)
            .env("HOMESTAK_SITE_CONFIG", site.path())
            .env_remove("DRIVER_REPO_TOKEN")
            .output()
            .unwrap()
    };
    let out = run(&["--repo", &arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repo-token"));
    let out = run(&[
        "--repo",
        &format!("x/y={}", work.path().display()),
        "--repo-token",
        "t",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a git repo: said so, nothing served.
    let out = run(&["--repo", &arg, "--repo-token", "t"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a git repo"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `git fetch URL SHA` into a fresh repo; the fetched commit's `path`.
fn fetch_commit(url: &str, sha: &str, dest: &Path, path: &str) -> Result<String, String> {
    git(
        dest.parent().unwrap(),
        &["init", "-q", dest.to_str().unwrap()],
    );
    let out = Command::new("git")
        .arg("-C")
        .arg(dest)
        .args([
            "-c",
            &format!("http.extraHeader=Authorization: Bearer {TOKEN}"),
            "-c",
            "http.sslVerify=false",
            "fetch",
            "-q",
            url,
            sha,
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let show = Command::new("git")
        .arg("-C")
        .arg(dest)
        .args(["show", &format!("{sha}:{path}")])
        .output()
        .unwrap();
    Ok(String::from_utf8_lossy(&show.stdout).into_owned())
}

#[test]
fn serve_sighup_resnapshots_repos_and_a_clone_in_progress_still_finds_its_objects() {
    need("git", "apt-get install git");
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let repo = served_repo(work.path());
    let arg = format!("boot={}", repo.display());
    let mut d = Daemon::start(site.path(), &["--repo", &arg, "--repo-token", TOKEN]);
    let url = d.listening["repos"][0]["url"].as_str().unwrap().to_string();
    let old_working = d.listening["repos"][0]["working"]
        .as_str()
        .unwrap()
        .to_string();
    let snapshots = Path::new(d.listening["snapshot_dir"].as_str().unwrap()).to_path_buf();

    let before = work.path().join("before");
    assert!(clone(&url, Some(TOKEN), &before, "_working")
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(before.join("install.sh")).unwrap(),
        "echo uncommitted\n"
    );
    // A clone that has read the refs (the first request of git's dumb protocol) and will
    // ask for their objects after the reload.
    let (code, refs) = d.get("/boot.git/info/refs", Some(TOKEN));
    assert_eq!(code, 200);
    assert!(refs.contains(&old_working), "{refs}");

    // The source moves on: the uncommitted change is committed, another one made.
    git(&repo, &["add", "install.sh"]);
    git(&repo, &["commit", "-qm", "second"]);
    std::fs::write(repo.join("install.sh"), "echo third\n").unwrap();
    d.signal("HUP");
    let reloaded = d.wait_event("reloaded");
    let r = &reloaded["repos"][0];
    assert_eq!(r["name"], "boot");
    assert_eq!(r["dirty"], true);
    let new_working = r["working"].as_str().unwrap().to_string();
    assert_ne!(new_working, old_working);

    // The next clone sees both: main has the new commit, _working the new change.
    let main = work.path().join("after-main");
    assert!(clone(&url, Some(TOKEN), &main, "main").status.success());
    assert_eq!(
        std::fs::read_to_string(main.join("install.sh")).unwrap(),
        "echo uncommitted\n"
    );
    let after = work.path().join("after");
    assert!(clone(&url, Some(TOKEN), &after, "_working")
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(after.join("install.sh")).unwrap(),
        "echo third\n"
    );
    assert_eq!(
        d.get("/boot.git/install.sh", Some(TOKEN)),
        (200, "echo third\n".into())
    );
    // The clone in progress gets what its refs named, though no ref names it any more.
    let late = fetch_commit(&url, &old_working, &work.path().join("late"), "install.sh");
    assert_eq!(late.as_deref(), Ok("echo uncommitted\n"));

    // The replaced snapshot is gone (no request holds it); the new one is beside where it was.
    assert!(!snapshots.join("boot.git").exists());
    assert!(snapshots.join("1/boot.git/info/refs").exists());

    // A source that cannot be snapshotted: nothing swapped, the last snapshot still served.
    std::fs::rename(&repo, work.path().join("moved")).unwrap();
    d.signal("HUP");
    let failed = d.wait_event("reload_failed");
    assert!(
        failed["error"].as_str().unwrap().contains("boot"),
        "{failed}"
    );
    assert_eq!(
        d.get("/boot.git/install.sh", Some(TOKEN)),
        (200, "echo third\n".into())
    );
    assert!(!snapshots.join("2").exists());

    d.signal("TERM");
    d.wait_event("stopped");
    assert!(d.child.wait().unwrap().success());
    assert!(!snapshots.exists());
}
