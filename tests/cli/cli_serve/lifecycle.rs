//! Limits, reload and stop: oversized requests refused, SIGHUP picking up a changed spec (and
//! keeping the old one when the new site-config is broken), SIGTERM draining and leaving no
//! temporary repo behind.

use std::process::Command;

use super::{curl, need, Daemon, Site};

#[test]
fn serve_refuses_oversized_requests() {
    let site = Site::new();
    let d = Daemon::start(site.path(), &[]);
    let big = format!("X-Big: {}", "a".repeat(40 * 1024));
    // hyper stops reading past its buffer: a 431, or the connection closed while curl still
    // sends (curl's "000"); never a 200.
    let (code, _) = curl(&d.url, "/health", None, &["-H", &big]);
    assert!(code == 431 || code == 0, "a 40 KiB header: {code}");
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let mut extra = Vec::new();
    for h in &many {
        extra.extend(["-H", h.as_str()]);
    }
    let (code, _) = curl(&d.url, "/health", None, &extra);
    assert_eq!(code, 431, "100 headers");
    let body = "a".repeat(64 * 1024);
    let (code, body) = curl(
        &d.url,
        "/health",
        None,
        &["-X", "GET", "--data-binary", &body],
    );
    assert_eq!(code, 413, "{body}");
    let (code, _) = curl(&d.url, &format!("/spec/{}", "a".repeat(4096)), None, &[]);
    assert_eq!(code, 400, "a 4 KiB path");
    // Still serving.
    assert_eq!(d.get("/health", None).0, 200);
}

#[test]
fn serve_reloads_on_sighup_and_stops_cleanly_on_sigterm() {
    need("git", "apt-get install git");
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("r");
    std::fs::create_dir(&repo).unwrap();
    for args in [
        &["init", "-q"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ] {
        assert!(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .unwrap()
            .success());
    }
    let arg = format!("r={}", repo.display());
    let mut d = Daemon::start(site.path(), &["--repo", &arg, "--repo-token", "t"]);
    let snapshots = d.listening["snapshot_dir"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&snapshots)
        .join("r.git/info/refs")
        .exists());
    assert!(
        snapshots.starts_with(d.tmp.path().to_str().unwrap()),
        "{snapshots}"
    );

    let (_, before) = d.get("/spec/open", None);
    assert!(!before.contains("ripgrep"));
    let spec = site.path().join("specs/open.yaml");
    std::fs::write(
        &spec,
        "schema_version: 1\naccess: {posture: dev}\nplatform: {packages: [ripgrep]}\n",
    )
    .unwrap();
    std::fs::write(site.path().join("specs/added.yaml"), "schema_version: 1\n").unwrap();
    d.signal("HUP");
    assert_eq!(d.wait_event("reloaded")["specs"], 4);
    let (code, after) = d.get("/spec/open", None);
    assert_eq!(code, 200);
    assert!(after.contains("ripgrep"), "{after}");
    assert_eq!(d.get("/spec/added", None).0, 200);

    // A broken site-config: the reload fails, the previous one is still served.
    std::fs::write(site.path().join("secrets.yaml"), "auth: [unclosed\n").unwrap();
    d.signal("HUP");
    let failed = d.wait_event("reload_failed");
    assert!(
        failed["error"].as_str().unwrap().contains("secrets.yaml"),
        "{failed}"
    );
    assert!(d.get("/spec/open", None).1.contains("ripgrep"));

    d.signal("TERM");
    d.wait_event("stopped");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !std::path::Path::new(&snapshots).exists(),
        "{snapshots} left behind"
    );
    let left: Vec<_> = std::fs::read_dir(d.tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn serve_stops_on_sigint_too() {
    let site = Site::new();
    let mut d = Daemon::start(site.path(), &[]);
    d.signal("INT");
    d.wait_event("stopped");
    assert!(d.child.wait().unwrap().success());
}
