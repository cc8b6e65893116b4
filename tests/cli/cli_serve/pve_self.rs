//! `driver config pve` (phase 2 of a `pve` node's pull-mode self-configure) on a *real* PVE
//! node, up to the process boundary: PVE's command line tools cannot be installed here, so
//! stand-ins (tests/support/pve_cli_standin.py) come first on its PATH, answer in PVE's JSON
//! shapes and record every call; the config comes from a running controller (`driver
//! serve --pve-node`). It must leave what a push-mode parent leaves over SSH.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{need, Daemon, Site, WEB1_TOKEN};
use crate::common::{repo, Run, BIN};

/// A node with PVE "installed" (stand-ins on PATH, their state), and the files its
/// cloud-init wrote: the parent's `pve-host.json` and the fetched spec.
struct Node {
    root: tempfile::TempDir,
}

impl Node {
    fn new(installed: bool) -> Node {
        need("python3", "apt-get install python3");
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let standin = repo().join("tests/support/pve_cli_standin.py");
        for tool in ["pveversion", "pvesh", "pveum", "pvesm", "qm", "ip"] {
            std::os::unix::fs::symlink(&standin, bin.join(tool)).unwrap();
        }
        let state = json!({
            "installed": installed,
            "node": "pve-hv",
            "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
            "ca_fingerprint": "11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22",
            "storage": [{"storage": "local", "type": "dir", "content": "iso,vztmpl,backup", "active": 1}],
            "network": [{"iface": "ens18", "type": "eth", "active": 1}],
            "guests": [],
            "tokens": {},
            "iface": "ens18",
            "address": "127.0.0.1",
            "prefixlen": 24,
            "gateway": "127.0.0.254",
            "api_down": 1,
        });
        std::fs::write(root.path().join("pve.json"), state.to_string()).unwrap();
        std::fs::write(
            root.path().join("pve-host.json"),
            r#"{"image": "debian-13-pve", "host": "installed"}"#,
        )
        .unwrap();
        // The spec phase 1 fetched (config.pve is not set: its nag removal would write
        // under this machine's /usr/share).
        std::fs::write(root.path().join("spec.yaml"), "{\"schema_version\": 1}\n").unwrap();
        Node { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `driver config pve` as the node's cloud-init runs it.
    fn configure(&self, d: &Daemon) -> Run {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Run::from(
            Command::new(BIN)
                .args(["config", "pve", "--server", &d.url, "--identity", "hv"])
                .args([
                    "--fingerprint",
                    d.listening["fingerprint"].as_str().unwrap(),
                ])
                .args(["--host-file", self.path("pve-host.json").to_str().unwrap()])
                .args(["--spec", self.path("spec.yaml").to_str().unwrap()])
                .args(["--dir", self.path("var/lib/driver").to_str().unwrap()])
                .args(["--address", "127.0.0.1"])
                .args(["--state-dir", self.path("pve-config").to_str().unwrap()])
                .env("PATH", path)
                .env("PVE_STANDIN_STATE", self.path("pve.json"))
                .env("HOME", self.root.path())
                .env("NO_COLOR", "1")
                .env_remove("HOMESTAK_AUTH_TOKEN")
                .env_remove("HOMESTAK_SPEC_SERVER")
                .env_remove("HOMESTAK_SPEC_FINGERPRINT")
                .env_remove("HOMESTAK_IDENTITY")
                .output()
                .unwrap(),
        )
    }

    fn state(&self) -> Value {
        serde_json::from_str(&read(&self.path("pve.json"))).unwrap()
    }

    fn calls(&self, tool: &str, words: &[&str]) -> usize {
        read(&self.path("pve.json.log"))
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap())
            .filter(|c| c[0] == tool && words.iter().all(|w| c.iter().any(|a| a == w)))
            .count()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_real_pve_node_sets_itself_up_from_its_config_as_a_push_parent_would() {
    let site = Site::new();
    let d = Daemon::start(
        site.path(),
        &[
            "--pve-node",
            "hv=open",
            "--node",
            "web1=locked",
            "--below",
            "hv=web1",
        ],
    );
    let node = Node::new(true);
    let out = node.configure(&d).ok();
    for step in [
        "bootstrap",
        "fetch_config",
        "ensure_pve",
        "setup_pve",
        "configure_bridge",
        "create_api_token",
        "write_marker",
    ] {
        assert!(
            out.stdout.contains(&format!("pve-config: {step}\n")),
            "{step}: {}",
            out.stdout
        );
    }
    let dir = node.path("var/lib/driver");
    // This driver, where delegation runs `./driver`; the site-config files it reads.
    assert_eq!(
        std::fs::metadata(dir.join("driver")).unwrap().len(),
        std::fs::metadata(BIN).unwrap().len()
    );
    assert_eq!(
        read(&dir.join("site-config/site.yaml")),
        read(&site.path().join("site.yaml"))
    );
    assert!(dir.join("site-config/specs/locked.yaml").is_file());
    assert!(!dir.join("site-config/secrets.yaml.enc").exists());
    // PVE's API waited for (down at first), storage for guests and snippets, the bridge.
    assert!(node.calls("pvesh", &["get", "/version"]) >= 2);
    let st = node.state();
    assert_eq!(
        st["storage"][0]["content"],
        "iso,vztmpl,backup,snippets,import,images,rootdir"
    );
    let bridge = st["network"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["iface"] == "vmbr0")
        .unwrap_or_else(|| panic!("no vmbr0: {st}"));
    assert_eq!(bridge["cidr"], "127.0.0.1/24");
    // The child driver's token, node file and secrets: its token and web1's, nothing else.
    let token = st["tokens"]["root@pam!driver-child"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {st}"))
        .to_string();
    let secrets = dir.join("site-config/secrets.yaml");
    assert_eq!(
        read(&secrets),
        format!(
            "api_tokens:\n  hv: \"root@pam!driver-child={token}\"\nauth:\n  node_tokens:\n    \
             web1: \"{WEB1_TOKEN}\"\n"
        )
    );
    assert_eq!(mode(&secrets), 0o600);
    let node_file = read(&dir.join("site-config/nodes/hv.yaml"));
    for want in [
        "node: pve-hv\n",
        "api_endpoint: https://127.0.0.1:8006\n",
        "api_token: hv\n",
        "bridge: vmbr0\n",
    ] {
        assert!(node_file.contains(want), "{want:?} not in:\n{node_file}");
    }
    let marker: Value = serde_json::from_str(&read(&node.path("pve-config/success.json"))).unwrap();
    assert_eq!(marker["status"], "success");
    assert_eq!(marker["identity"], "hv");
    assert!(!node.path("pve-config/failure.json").exists());

    // Again (a rerun told of a new controller): the token the secrets hold is kept.
    node.configure(&d).ok();
    assert_eq!(node.calls("pveum", &["token", "add"]), 1);
    assert_eq!(
        node.state()["tokens"]["root@pam!driver-child"]["value"],
        token.as_str()
    );
    assert!(read(&secrets).contains(&token));
}

#[test]
fn a_node_without_pve_fails_at_ensure_pve_and_says_so_in_its_marker() {
    let site = Site::new();
    let d = Daemon::start(site.path(), &["--pve-node", "hv=open"]);
    let node = Node::new(false);
    let out = node.configure(&d).code(1);
    let err = crate::common::flat(&out.stderr);
    assert!(
        err.contains("'hv' failed to set itself up as a PVE host at ensure_pve: Proxmox VE is not installed on hv"),
        "{err}"
    );
    let marker: Value = serde_json::from_str(&read(&node.path("pve-config/failure.json"))).unwrap();
    assert_eq!(marker["status"], "failed");
    assert_eq!(marker["failed_at"], "ensure_pve");
    assert!(
        marker["error"].as_str().unwrap().contains("pve: true"),
        "{marker}"
    );
    assert!(!node.path("pve-config/success.json").exists());
    // Fetched before: the site-config is there; nothing of PVE was touched.
    assert!(node.path("var/lib/driver/site-config/site.yaml").is_file());
    assert_eq!(node.calls("pveum", &[]), 0);
}
