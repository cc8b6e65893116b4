//! `driver serve`, the controller daemon, run as a real process on 127.0.0.1 (port 0) and
//! talked to with real clients: curl for HTTP (`--path-as-is`, so traversal attempts reach
//! the server as written), openssl for the certificate, git for dumb-HTTP clones. Each test
//! waits on the daemon's own JSON lines (`listening`, `reloaded`, `stopped`), never on time.

mod configs;
mod fetch_apply;
mod lifecycle;
mod pve_self;
mod repos;
mod specs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::common::BIN;

/// How long a daemon may take to say something before the test gives up (a bound for a
/// hung daemon on a loaded machine, not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(180);

pub fn need(tool: &str, install: &str) {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{tool} is needed by this test: {install}");
}

/// A site-config with one spec per posture kind and plain (unencrypted) secrets.
pub struct Site {
    pub dir: tempfile::TempDir,
}

pub const SITE_TOKEN: &str = "site-tok-4f9c2a";
pub const WEB1_TOKEN: &str = "node-tok-web1-77aa";
pub const WEB2_TOKEN: &str = "node-tok-web2-88bb";
/// The node token of `hv`, a pve node in pull mode (tests of `/config`).
pub const HV_TOKEN: &str = "node-tok-hv-99cc";
/// Secrets no node is served: the site's signing key and a host's API token.
pub const SIGNING_KEY: &str = "5161aa0000000000000000000000000000000000000000000000000000005161";
pub const API_SECRET: &str = "api-secret-5e1f";

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "site.yaml",
            "defaults:\n  timezone: Europe/Oslo\n  packages: [htop]\n",
        );
        w("postures/dev.yaml", "auth: {method: network}\n");
        w("postures/stage.yaml", "auth: {method: site_token}\n");
        w(
            "postures/prod.yaml",
            "auth: {method: node_token}\nsudo: {nopasswd: false}\n",
        );
        w(
            "specs/open.yaml",
            "schema_version: 1\naccess: {posture: dev, users: [{name: ops, sudo: true}]}\nplatform: {packages: [curl]}\n",
        );
        w(
            "specs/staged.yaml",
            "schema_version: 1\naccess: {posture: stage}\nplatform: {packages: [nginx]}\n",
        );
        w(
            "specs/locked.yaml",
            "schema_version: 1\naccess: {posture: prod}\nplatform: {packages: [postgresql]}\n",
        );
        w(
            "secrets.yaml",
            &format!(
                "ssh_keys: {{ops: ssh-ed25519 AAAAtestkey ops@example}}\nauth:\n  site_token: {SITE_TOKEN}\n  signing_key: {SIGNING_KEY}\n  node_tokens: {{web1: {WEB1_TOKEN}, web2: {WEB2_TOKEN}, hv: {HV_TOKEN}}}\napi_tokens: {{father: 'root@pam!driver={API_SECRET}'}}\n"
            ),
        );
        Site { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A running `driver serve --json-output`; killed if a test ends without stopping it.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub listening: Value,
    pub url: String,
    /// $TMPDIR of the daemon (where its temporary repos go).
    pub tmp: tempfile::TempDir,
    _logs: tempfile::TempDir,
    stderr: PathBuf,
}

impl Daemon {
    pub fn start(site: &Path, args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let stderr = logs.path().join("stderr");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--json-output",
            ])
            .args(args)
            .env("HOMESTAK_SITE_CONFIG", site)
            .env("TMPDIR", tmp.path())
            // The access log is at info: it must be there, without a secret in it.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("DRIVER_REPO_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("driver serve starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            listening: Value::Null,
            url: String::new(),
            tmp,
            _logs: logs,
            stderr,
        };
        d.listening = d.wait_event("listening");
        d.url = d.listening["url"].as_str().unwrap().to_string();
        d
    }

    /// The next JSON line; every line must be the event named (the daemon prints nothing else).
    pub fn wait_event(&mut self, event: &str) -> Value {
        let line = self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "driver serve said nothing for {PATIENCE:?} (waiting for '{event}'); stderr:\n{}",
                self.stderr()
            )
        });
        crate::cli_schemas::validate("serve", &line, false);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], event, "{line}\nstderr:\n{}", self.stderr());
        v
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// GET `path` (sent as written); returns the status and the body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        curl(&self.url, path, token, &[])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// curl `url` + `path` as written; `extra` goes before the URL.
pub fn curl(url: &str, path: &str, token: Option<&str>, extra: &[&str]) -> (u16, String) {
    need("curl", "apt-get install curl");
    let mut c = Command::new("curl");
    c.args(["-sk", "--path-as-is", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = c.args(extra).arg(format!("{url}{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
