//! A `pve` node whose image lacks PVE, on a *real* host: its `install_pve`
//! step installs Proxmox VE onto the plain Debian 13 guest with the steps of
//! `driver host install-pve` (over the guest's SSH connection, reconnecting
//! after the reboot), then the rest of the PVE lifecycle sets it up. A real
//! OpenSSH sshd on 127.0.0.1 plays the guest; Debian's and PVE's tools are
//! stand-ins on its PATH (tests/support/host_standin.py, pve_cli_standin.py),
//! the guest's files under a folder (the host steps' root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{repo_root, require, Sshd, SshdOptions};
use actions::nested::{Guest, InstalledPve, NestedHost, Nesting};
use actions::ssh::{self, Connection, SshTarget};
use serde_json::{json, Value};

const HOST_TOOLS: &[&str] = &[
    "apt-get",
    "dpkg-query",
    "systemctl",
    "reboot",
    "curl",
    "debconf-set-selections",
    "update-grub",
    "sysctl",
    "pvecm",
    "hostname",
];
const PVE_TOOLS: &[&str] = &["pveversion", "pvesh", "pveum", "pvesm", "qm", "ip"];

/// A plain Debian 13 guest: no PVE, the Debian kernel.
struct DebianGuest {
    sshd: Sshd,
    dir: tempfile::TempDir,
}

impl DebianGuest {
    fn start() -> DebianGuest {
        require("python3", "apt-get install python3");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let support = repo_root().join("tests/support");
        for (tools, script) in [
            (HOST_TOOLS, "host_standin.py"),
            (PVE_TOOLS, "pve_cli_standin.py"),
        ] {
            for t in tools {
                std::os::unix::fs::symlink(support.join(script), bin.join(t)).unwrap();
            }
        }
        let root = d.join("root");
        for (p, text) in [
            (
                "etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_CODENAME=trixie\n",
            ),
            ("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 inner\n"),
            ("proc/sys/kernel/random/boot_id", "boot-1\n"),
        ] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), text).unwrap();
        }
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d")).unwrap();
        std::fs::create_dir_all(d.join("iso")).unwrap();
        let host = json!({"packages": ["linux-image-amd64"], "services": {}, "hostname": "inner", "users": []});
        std::fs::write(d.join("host.json"), host.to_string()).unwrap();
        let pve = json!({
            "installed": false,
            "node": "inner",
            "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
            "ca_fingerprint": "11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22",
            // What a fresh install on Debian has: `local` only, for ISOs and templates.
            "storage": [{"storage": "local", "type": "dir", "content": "iso,vztmpl,backup", "active": 1}],
            "network": [{"iface": "ens18", "type": "eth", "active": 1}],
            "guests": [], "tokens": {},
            "iface": "ens18", "address": "127.0.0.1", "prefixlen": 24, "gateway": "127.0.0.254",
        });
        std::fs::write(d.join("pve.json"), pve.to_string()).unwrap();
        let sshd = Sshd::start_with(SshdOptions {
            extra: vec![format!(
                "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin HOST_STANDIN_STATE={} \
                 HOST_STANDIN_ROOT={} PVE_STANDIN_STATE={}",
                bin.display(),
                d.join("host.json").display(),
                root.display(),
                d.join("pve.json").display(),
            )],
            ..SshdOptions::default()
        });
        DebianGuest { sshd, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn state(&self, file: &str) -> Value {
        serde_json::from_str(&read(&self.path(file))).unwrap()
    }

    /// The stand-in calls (argv lists) in `log`.
    fn calls(&self, log: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path(log))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn nesting(&self) -> Nesting {
        let driver = self.path("driver-standin");
        std::fs::write(
            &driver,
            "#!/bin/sh\ncase \"$1\" in --version) echo 'driver 9.9.9-standin' ;; esac\n",
        )
        .unwrap();
        let key = self.path("child_ed25519");
        crate::common::keygen(&key);
        Nesting {
            binary: driver,
            version: "driver 9.9.9-standin".into(),
            site_files: vec![("site.yaml".into(), "defaults:\n  bridge: vmbr0\n".into())],
            ssh_key: key,
            timeout_buffer: 60,
            action_timeouts: Vec::new(),
            parallelism: None,
            clones_per_host: None,
            heal: None,
            child_auth: Default::default(),
            host: NestedHost::Installed(InstalledPve {
                dir: self.path("root/var/lib/driver").display().to_string(),
                image_dir: self.path("iso").display().to_string(),
                image_files: BTreeMap::new(),
                root: self.path("root").display().to_string(),
                reboot_timeout: Duration::from_secs(120),
            }),
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every create step of the PVE lifecycle, as the plan orders them for a
/// node whose image lacks PVE.
async fn create(n: &Nesting, c: &Connection, target: &SshTarget, lines: &Mutex<Vec<String>>) {
    let log = |l: String| lines.lock().unwrap().push(l);
    let g = Guest {
        name: "inner",
        ip: "127.0.0.1",
        image: Some("debian-13"),
        subtree: None,
        timeout: Duration::from_secs(120),
        log: &log,
    };
    n.install_pve(c, target, &g).await.expect("install_pve");
    n.bootstrap(c, &g).await.expect("bootstrap");
    n.copy_secrets(c).await.expect("secrets");
    n.configure_bridge(c, &g).await.expect("bridge");
    n.create_api_token(c, &g).await.expect("api token");
    n.download_images(c, &g).await.expect("images");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_debian_guest_gets_pve_installed_then_set_up_once() {
    let vm = DebianGuest::start();
    let n = vm.nesting();
    let target = vm.sshd.target();
    let c = ssh::connect(&target).await.expect("connect");
    let lines = Mutex::new(Vec::new());

    // Without the install step the guest is refused (it has no PVE).
    let quiet = |_: String| {};
    let bare = Guest {
        name: "inner",
        ip: "127.0.0.1",
        image: Some("debian-13"),
        subtree: None,
        timeout: Duration::from_secs(60),
        log: &quiet,
    };
    let e = n.bootstrap(&c, &bare).await.expect_err("no PVE yet");
    assert!(
        e.message().contains("inner does not run Proxmox VE"),
        "{}",
        e.message()
    );

    create(&n, &c, &target, &lines).await;
    let host = vm.state("host.json");
    let pkgs: Vec<&str> = host["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for p in [
        "proxmox-default-kernel",
        "proxmox-ve",
        "postfix",
        "open-iscsi",
        "chrony",
    ] {
        assert!(pkgs.contains(&p), "{p} not installed: {host}");
    }
    assert!(
        !pkgs.contains(&"linux-image-amd64"),
        "Debian kernel kept: {host}"
    );
    assert_eq!(host["reboots"], 1, "one reboot into the Proxmox kernel");
    let root = |rel: &str| read(&vm.path("root").join(rel));
    assert!(
        root("etc/hosts").contains("127.0.0.1 inner\n"),
        "{}",
        root("etc/hosts")
    );
    assert!(
        !root("etc/hosts").contains("127.0.1.1"),
        "{}",
        root("etc/hosts")
    );
    assert!(root("etc/apt/sources.list.d/pve-install-repo.sources").contains("pve-no-subscription"));
    assert!(!root("etc/pve/local/pve-ssl.pem").is_empty());
    // Then set up as any PVE guest: storage, bridge, token, node file.
    let pve = vm.state("pve.json");
    assert_eq!(pve["installed"], true);
    let content = pve["storage"][0]["content"].as_str().unwrap();
    for c in ["images", "rootdir", "snippets", "import", "iso"] {
        assert!(content.split(',').any(|x| x == c), "{c} not in {content}");
    }
    let bridge = pve["network"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["iface"] == "vmbr0")
        .unwrap_or_else(|| panic!("no vmbr0: {pve}"));
    assert_eq!(bridge["bridge_ports"], "ens18");
    assert_eq!(bridge["active"], 1);
    let dir = vm.path("root/var/lib/driver");
    let token = pve["tokens"]["root@pam!driver-child"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {pve}"))
        .to_string();
    assert!(read(&dir.join("site-config/secrets.yaml")).contains(&token));
    assert!(read(&dir.join("site-config/nodes/inner.yaml")).contains("datastore: local\n"));
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("installed proxmox-ve"), "{log}");

    // Again, as a resumed or repeated run: nothing is installed, rebooted,
    // created or replaced.
    let (host_before, pve_before) = (
        vm.calls("host.json.log").len(),
        vm.calls("pve.json.log").len(),
    );
    lines.lock().unwrap().clear();
    create(&n, &c, &target, &lines).await;
    let host_again = vm.calls("host.json.log").split_off(host_before);
    let writes: Vec<&Vec<String>> = host_again
        .iter()
        .filter(|c| {
            matches!(c[0].as_str(), "apt-get" | "reboot" | "pvecm" | "curl")
                || (c[0] == "systemctl" && c[1] != "is-active")
        })
        .collect();
    assert!(
        writes.is_empty(),
        "a second install changed things: {writes:?}"
    );
    let pve_again = vm.calls("pve.json.log").split_off(pve_before);
    let writes: Vec<&Vec<String>> = pve_again
        .iter()
        .filter(|c| {
            matches!(c[0].as_str(), "qm" | "pvesm")
                || (c[0] == "pvesh" && (c[1] == "create" || c[1] == "set"))
                || (c[0] == "pveum" && c[3] != "list")
        })
        .collect();
    assert!(
        writes.is_empty(),
        "a second setup changed things: {writes:?}"
    );
    assert_eq!(vm.state("host.json")["reboots"], 1);
    assert_eq!(
        vm.state("pve.json")["tokens"]["root@pam!driver-child"]["value"],
        token.as_str(),
        "the token the child holds is kept"
    );
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("Proxmox VE is installed"), "{log}");
}
