//! The PVE lifecycle of a nested PVE on a *real* host, up to the process
//! boundary: a real OpenSSH sshd on 127.0.0.1 plays the nested PVE guest,
//! and PVE's command line tools (which cannot be installed here) are
//! stand-ins on its PATH (tests/support/pve_cli_standin.py) that answer in
//! PVE's JSON shapes and record every call and its effect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{repo_root, require, Sshd, SshdOptions};
use actions::nested::{Guest, InstalledPve, NestedHost, Nesting};
use actions::ssh::{self, Connection};
use serde_json::{json, Value};

/// The subtree a parent hands over (as JSON, the way delegation does).
fn subtree() -> String {
    let yaml = "schema_version: 2\nname: inner\nnodes:\n\
                  - {name: edge, type: pve, image: debian-12}\n\
                  - {name: edge2, type: vm, image: debian-12}\n\
                  - {name: deeper, type: vm, image: debian-11, parent: edge}\n";
    let loaded = engine::manifest::load(engine::manifest::Source::new("test", yaml))
        .expect("the test manifest is valid");
    loaded.manifest.to_json()
}

/// A guest with PVE "installed": stand-ins on PATH, their state, a folder
/// for the child driver and one for images.
struct PveGuest {
    sshd: Sshd,
    root: tempfile::TempDir,
}

impl PveGuest {
    fn start(state: Value) -> PveGuest {
        require("python3", "apt-get install python3");
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let standin = repo_root().join("tests/support/pve_cli_standin.py");
        for tool in ["pveversion", "pvesh", "pveum", "pvesm", "qm", "ip"] {
            std::os::unix::fs::symlink(&standin, bin.join(tool)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("iso")).unwrap();
        let state_file = root.path().join("pve.json");
        std::fs::write(&state_file, state.to_string()).unwrap();
        let sshd = Sshd::start_with(SshdOptions {
            extra: vec![format!(
                "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin PVE_STANDIN_STATE={}",
                bin.display(),
                state_file.display()
            )],
            ..SshdOptions::default()
        });
        PveGuest { sshd, root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("pve.json")).unwrap()).unwrap()
    }

    /// Every stand-in call so far, as argv lists.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("pve.json.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn called(&self, tool: &str, words: &[&str]) -> usize {
        self.calls()
            .iter()
            .filter(|c| c[0] == tool && words.iter().all(|w| c.iter().any(|a| a == w)))
            .count()
    }

    /// The nesting of a real host, with its folders inside this guest, and a
    /// stand-in driver binary (the real one is what the simulator tests run).
    fn nesting(&self) -> Nesting {
        let driver = self.path("driver-standin");
        std::fs::write(
            &driver,
            "#!/bin/sh\n\
             # Stand-in for the uploaded driver: its version, and `images download`.\n\
             echo \"$*\" >> driver-calls.log\n\
             case \"$1\" in\n\
             --version) echo 'driver 9.9.9-standin' ;;\n\
             images) dest=.; file=$3; shift 3\n\
               while [ $# -gt 0 ]; do [ \"$1\" = --dest ] && dest=$2; shift; done\n\
               echo image-bytes > \"$dest/$file\" ;;\n\
             esac\n",
        )
        .unwrap();
        let key = self.path("child_ed25519");
        crate::common::keygen(&key);
        Nesting {
            binary: driver,
            version: "driver 9.9.9-standin".into(),
            site_files: vec![
                ("site.yaml".into(), "defaults:\n  bridge: vmbr0\n".into()),
                (
                    "images/debian-12.yaml".into(),
                    "file: debian-12.qcow2\n".into(),
                ),
            ],
            ssh_key: key,
            timeout_buffer: 60,
            action_timeouts: Vec::new(),
            parallelism: None,
            clones_per_host: None,
            heal: None,
            child_auth: Default::default(),
            host: NestedHost::Installed(InstalledPve {
                dir: self.path("var/lib/driver").display().to_string(),
                image_dir: self.path("iso").display().to_string(),
                image_files: BTreeMap::from([("debian-12".into(), "debian-12.qcow2".into())]),
                ..InstalledPve::default()
            }),
        }
    }
}

fn fresh_pve() -> Value {
    json!({
        "node": "pve-inner",
        "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        "ca_fingerprint": "11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22",
        // A fresh install: `local` takes no guest disks yet.
        "storage": [{"storage": "local", "type": "dir", "content": "iso,vztmpl,backup", "active": 1}],
        "network": [{"iface": "ens18", "type": "eth", "active": 1}],
        "guests": [],
        "tokens": {},
        "iface": "ens18",
        "address": "127.0.0.1",
        "prefixlen": 24,
        "gateway": "127.0.0.254",
        // The API is still starting for the first two calls.
        "api_down": 2,
    })
}

const T: Duration = Duration::from_secs(120);

/// The guest as the steps see it (the sshd's address).
fn guest<'a>(sub: &'a str, log: &'a (dyn Fn(String) + Send + Sync)) -> Guest<'a> {
    Guest {
        name: "inner",
        ip: "127.0.0.1",
        image: Some("debian-13-pve"),
        subtree: Some(sub),
        timeout: T,
        log,
    }
}

/// Every setup step, in the order a create runs them.
async fn set_up(n: &Nesting, c: &Connection, lines: &Mutex<Vec<String>>) {
    let log = |l: String| lines.lock().unwrap().push(l);
    let sub = subtree();
    let g = guest(&sub, &log);
    n.bootstrap(c, &g).await.expect("bootstrap");
    n.copy_secrets(c).await.expect("secrets");
    n.create_api_token(c, &g).await.expect("api token");
    n.configure_bridge(c, &g).await.expect("bridge");
    n.download_images(c, &g).await.expect("images");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pve_guest_is_set_up_with_pves_own_tools_once() {
    let pve = PveGuest::start(fresh_pve());
    let n = pve.nesting();
    let c = ssh::connect(&pve.sshd.target()).await.expect("connect");
    let lines = Mutex::new(Vec::new());
    set_up(&n, &c, &lines).await;

    let dir = pve.path("var/lib/driver");
    // Bootstrap: the driver and the site-config subset, in the child's folder.
    assert_eq!(read(&dir.join("driver")), read(&n.binary));
    assert_eq!(
        read(&dir.join("site-config/images/debian-12.yaml")),
        "file: debian-12.qcow2\n"
    );
    // Secrets: the child's key pair, private to root.
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir.join("state/ssh/id_ed25519")), 0o600);
    assert_eq!(
        read(&dir.join("state/ssh/id_ed25519.pub")),
        read(&n.ssh_key.with_extension("pub"))
    );
    // The waiting on the API: it answered on the third try.
    assert!(pve.called("pvesh", &["get", "/version"]) >= 3);
    // Storage: `local` now takes disks, snippets and imports (the seed's fix).
    let st = pve.state();
    assert_eq!(
        st["storage"][0]["content"],
        "iso,vztmpl,backup,snippets,import,images,rootdir"
    );
    // API token: made by pveum, without privilege separation; it and the
    // node file are what the child driver reads.
    let token = &st["tokens"]["root@pam!driver-child"];
    assert_eq!(token["privsep"], "0", "{st}");
    let secrets = read(&dir.join("site-config/secrets.yaml"));
    assert_eq!(
        secrets,
        format!(
            "api_tokens:\n  inner: \"root@pam!driver-child={}\"\n",
            token["value"].as_str().unwrap()
        )
    );
    assert_eq!(mode(&dir.join("site-config/secrets.yaml")), 0o600);
    let node_file = read(&dir.join("site-config/nodes/inner.yaml"));
    for want in [
        "node: pve-inner\n",
        "api_endpoint: https://127.0.0.1:8006\n",
        &format!("fingerprint: \"{}\"\n", st["fingerprint"].as_str().unwrap()),
        "api_token: inner\n",
        "datastore: local\n",
        "bridge: vmbr0\n",
    ] {
        assert!(node_file.contains(want), "{want:?} not in:\n{node_file}");
    }
    // Bridge: vmbr0 over the interface holding the guest's address, applied.
    let bridge = st["network"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["iface"] == "vmbr0")
        .unwrap_or_else(|| panic!("no vmbr0: {st}"));
    assert_eq!(bridge["bridge_ports"], "ens18");
    assert_eq!(bridge["cidr"], "127.0.0.1/24");
    assert_eq!(bridge["gateway"], "127.0.0.254");
    assert_eq!(bridge["active"], 1);
    // Images: the one image the top-level guests need, downloaded by the
    // child driver into PVE's image folder, then imported as a template.
    let driver_calls = read(&dir.join("driver-calls.log"));
    assert!(
        driver_calls.contains(&format!(
            "images download debian-12.qcow2 --dest {}",
            pve.path("iso").display()
        )),
        "{driver_calls}"
    );
    let templates: Vec<&Value> = st["guests"].as_array().unwrap().iter().collect();
    assert_eq!(templates.len(), 1, "{st}");
    assert_eq!(templates[0]["name"], "debian-12");
    assert_eq!(templates[0]["template"], 1);
    let disk = templates[0]["options"]["scsi0"].as_str().unwrap();
    assert_eq!(
        disk,
        format!(
            "local:0,import-from={}/debian-12.qcow2",
            pve.path("iso").display()
        )
    );
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("pve-manager/9.2.11"), "{log}");
    assert!(
        log.contains("bridge vmbr0 on ens18 (127.0.0.1/24), network reloaded"),
        "{log}"
    );

    // Again, as a resumed run does: what is there is kept.
    let before = pve.calls().len();
    let first_token = token["value"].clone();
    lines.lock().unwrap().clear();
    set_up(&n, &c, &lines).await;
    let again: Vec<Vec<String>> = pve.calls().split_off(before);
    let writes: Vec<&Vec<String>> = again
        .iter()
        .filter(|c| {
            matches!(c[0].as_str(), "qm" | "pvesm")
                || (c[0] == "pvesh" && (c[1] == "create" || c[1] == "set"))
        })
        .collect();
    assert!(
        writes.is_empty(),
        "a second setup changed things: {writes:?}"
    );
    assert_eq!(
        read(&dir.join("driver-calls.log"))
            .matches("images")
            .count(),
        1,
        "the image is downloaded once"
    );
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("uploading driver")),
        "the same driver is not uploaded twice"
    );
    // The token the child's secrets hold is kept (no pveum add or remove).
    let st = pve.state();
    assert_eq!(st["tokens"]["root@pam!driver-child"]["value"], first_token);
    assert!(
        !again.iter().any(|c| c[0] == "pveum" && c[3] != "list"),
        "{again:?}"
    );
    assert!(read(&dir.join("site-config/secrets.yaml")).contains(first_token.as_str().unwrap()));

    // A token whose secret the child lacks is made anew (shown only once).
    std::fs::remove_file(dir.join("site-config/secrets.yaml")).unwrap();
    set_up(&n, &c, &lines).await;
    let st = pve.state();
    let new = st["tokens"]["root@pam!driver-child"]["value"].clone();
    assert_ne!(new, first_token);
    assert!(read(&dir.join("site-config/secrets.yaml")).contains(new.as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_without_pve_is_refused_with_what_to_do() {
    let mut st = fresh_pve();
    st["installed"] = json!(false);
    let pve = PveGuest::start(st);
    let n = pve.nesting();
    let c = ssh::connect(&pve.sshd.target()).await.expect("connect");
    let sub = subtree();
    let g = guest(&sub, &|_| {});
    let e = n.bootstrap(&c, &g).await.expect_err("no PVE there");
    assert!(
        e.message().contains("inner does not run Proxmox VE")
            && e.message().contains("pveversion: not found")
            && e.message().contains("debian-13-pve"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_site_config_does_not_name_is_a_clear_error() {
    let mut st = fresh_pve();
    st["api_down"] = json!(0);
    let pve = PveGuest::start(st);
    let mut n = pve.nesting();
    if let NestedHost::Installed(i) = &mut n.host {
        i.image_files.clear();
    }
    let c = ssh::connect(&pve.sshd.target()).await.expect("connect");
    let sub = subtree();
    let g = guest(&sub, &|_| {});
    let e = n.download_images(&c, &g).await.expect_err("unknown image");
    assert!(
        e.message()
            .contains("image 'debian-12' (for edge) is not on inner")
            && e.message().contains("images/debian-12.yaml"),
        "{}",
        e.message()
    );
}
