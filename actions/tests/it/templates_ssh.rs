//! The SSH fallback of template making, against a real OpenSSH sshd on 127.0.0.1 whose
//! PATH has the stand-ins for PVE's `pvesh` and `qm` (tests/support/pve_cli_standin.py):
//! a host whose API has no storage for content `import` (the seeded simulator, an older
//! install) gets the template made with `qm` over SSH, the image fetched there with the
//! real `curl` from a loopback HTTP server and checked with the real `sha256sum`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{repo_root, require, Sshd, SshdOptions};
use actions::pve::{tls, GuestKind, PveClient, PveTarget, TlsTrust};
use actions::templates::{Ensured, ImageSetup, Templates};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(120);

/// Serves one file at `/img.qcow2`; counts the GETs.
fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut s) = c else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut x = String::new();
                if r.read_line(&mut x).is_err() || x.trim().is_empty() {
                    break;
                }
            }
            h.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    (base, hits)
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A PVE host's shell: sshd with the stand-ins first on PATH, and their state.
struct HostShell {
    sshd: Sshd,
    root: tempfile::TempDir,
}

impl HostShell {
    fn start() -> HostShell {
        require("python3", "apt-get install python3");
        require("curl", "apt-get install curl");
        require("sha256sum", "apt-get install coreutils");
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let standin = repo_root().join("tests/support/pve_cli_standin.py");
        for tool in ["pvesh", "qm"] {
            std::os::unix::fs::symlink(&standin, bin.join(tool)).unwrap();
        }
        let state = json!({
            "node": "pve1",
            "storage": [{"storage": "local-lvm", "type": "lvmthin", "content": "images,rootdir", "active": 1}],
            "network": [], "guests": [], "tokens": {},
        });
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
        HostShell { sshd, root }
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.root.path().join("pve.json")).unwrap())
            .unwrap()
    }

    fn iso(&self) -> std::path::PathBuf {
        self.root.path().join("iso")
    }
}

fn setup(shell: &HostShell, url: &str, sum: &str) -> ImageSetup {
    let doc = engine::yaml::parse(&format!(
        "url: {url}\nfile: ubuntu-24.qcow2\nsha256: {sum}\n"
    ))
    .unwrap();
    let spec = engine::site_config::images::parse_image("ubuntu-24", "images/ubuntu-24.yaml", &doc)
        .unwrap();
    ImageSetup {
        images: BTreeMap::from([("ubuntu-24".to_string(), spec)]),
        default_release: "latest".into(),
        cache_dir: shell.root.path().join("cache"),
        bridge: "vmbr0".into(),
        ssh: Some(shell.sshd.target()),
        host_image_dir: shell.iso().display().to_string(),
        ..ImageSetup::default()
    }
}

/// The seeded simulator: an install whose `local` takes no `import`.
async fn older_host() -> (sim::SimHandle, PveClient) {
    let h = sim::PveSim::start(sim::SimConfig {
        node_name: "pve1".into(),
        guest_ssh_port: 0,
        ..sim::SimConfig::default()
    })
    .await
    .unwrap();
    let t = h.token();
    let client = PveClient::new(&PveTarget {
        endpoint: h.url(),
        node: h.node().into(),
        token_id: t.full_id(),
        token_secret: t.secret.clone(),
        trust: TlsTrust::Fingerprint(tls::parse_fingerprint(h.fingerprint()).unwrap()),
    })
    .unwrap();
    (h, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_import_content_gets_its_template_over_ssh_with_qm() {
    let shell = HostShell::start();
    let image = b"QFI\xfbupstream-image-bytes".repeat(1000);
    let (base, hits) = serve(image.clone());
    let url = format!("{base}/img.qcow2");
    let templates = Templates::new(setup(&shell, &url, &sha256_hex(&image)));
    let (h, client) = older_host().await;
    let lines = Mutex::new(Vec::new());
    let log = |l: String| lines.lock().unwrap().push(l);
    let got = templates
        .ensure(&client, GuestKind::Qemu, "ubuntu-24", "a", T, &log)
        .await
        .expect("made over SSH");
    let Ensured::Made(id) = got else {
        panic!("{got:?}")
    };
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no storage on node pve1 holds content 'import'")),
        "{lines:?}"
    );
    // The file is on the host under its name, fetched once, whole.
    assert_eq!(
        std::fs::read(shell.iso().join("ubuntu-24.qcow2")).unwrap(),
        image
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // qm made it a template, from that file, on the disk storage the API named.
    let st = shell.state();
    let g = &st["guests"][0];
    assert_eq!(g["vmid"], id);
    assert_eq!(g["name"], "ubuntu-24");
    assert_eq!(g["template"], 1);
    let scsi0 = g["options"]["scsi0"].as_str().unwrap();
    assert_eq!(
        scsi0,
        format!(
            "local-lvm:0,import-from={}",
            shell.iso().join("ubuntu-24.qcow2").display()
        )
    );
    assert_eq!(g["options"]["serial0"], "socket");
    assert_eq!(g["options"]["vga"], "serial0");
    assert_eq!(g["options"]["ide2"], "local-lvm:cloudinit");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_over_ssh_keeps_nothing_and_names_both_sums() {
    let shell = HostShell::start();
    let image = b"other-bytes".repeat(100);
    let (base, _) = serve(image.clone());
    let url = format!("{base}/img.qcow2");
    let wrong = "cd".repeat(32);
    let templates = Templates::new(setup(&shell, &url, &wrong));
    let (h, client) = older_host().await;
    let log = |_: String| {};
    let e = templates
        .ensure(&client, GuestKind::Qemu, "ubuntu-24", "a", T, &log)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("image 'ubuntu-24'"), "{e}");
    assert!(
        e.contains(&url) && e.contains(&wrong) && e.contains(&sha256_hex(&image)),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(shell.iso())
        .map(|r| r.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(shell.state()["guests"], json!([]));
    h.shutdown().await;
}
