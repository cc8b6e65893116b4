//! Where disks go, through the real command path: a full clone to the node
//! file's `datastore:` or a manifest node's `storage:`, a linked clone on its
//! template's storage (and `storage:` refused with it), the plan saying so;
//! and preflight refusing a storage without the content a run needs, against
//! the simulator and against fakepve (PyPI), an independent fake of PVE's API.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::common::{repo, Driver};
use actions::pve::{tls, PveClient, PveTarget, TlsTrust};
use serde_json::{json, Value};

/// Two VMs on the simulator: `a` as the node file says, `b` with its own storage.
const TWO: &str = "schema_version: 2
name: place
settings: {verify_ssh: false}
nodes:
  - {name: a, type: vm, image: debian-12, preset: vm-small}
  - {name: b, type: vm, image: debian-12, preset: vm-small, storage: local-lvm}
";

/// The example site-config with a simulated host `simz` whose datastore is
/// the simulator's ZFS pool (not where its templates are).
fn simz(extra: &str) -> (Driver, PathBuf) {
    let d = Driver::example();
    std::fs::write(
        d.site_path().join("nodes/simz.yaml"),
        format!(
            "simulated: true\napi_endpoint: https://127.0.0.1:8006\napi_token: sim\n\
             datastore: local-zfs\nbridge: vmbr0\nip: 127.0.0.1\n{extra}"
        ),
    )
    .unwrap();
    let m = d.site_path().join("two.yaml");
    std::fs::write(&m, TWO).unwrap();
    (d, m)
}

fn volumes(state: &Path, host: &str, name: &str) -> Vec<String> {
    sim::saved_guests(&state.join(format!("pvesim-{host}")))
        .unwrap()
        .into_iter()
        .find(|g| g.name == name && !g.template)
        .unwrap_or_else(|| panic!("no guest {name}"))
        .volumes
}

#[test]
fn full_clones_go_to_the_datastore_unless_the_node_names_a_storage() {
    let (d, m) = simz("");
    let m = m.to_str().unwrap();

    let plan = d
        .run(&["create", "--manifest-file", m, "-H", "simz", "--dry-run"])
        .ok();
    assert!(
        plan.stdout
            .contains("a  full clone to local-zfs (the node file's datastore:)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("b  full clone to local-lvm (the manifest's storage:)"),
        "{}",
        plan.stdout
    );
    let json = d
        .run(&[
            "create",
            "--manifest-file",
            m,
            "-H",
            "simz",
            "--dry-run",
            "--json-output",
        ])
        .ok();
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["placement"],
        json!([
            {"node": "a", "method": "full-clone", "storage": "local-zfs", "from": "node-file", "content": "images"},
            {"node": "b", "method": "full-clone", "storage": "local-lvm", "from": "manifest", "content": "images"}
        ])
    );

    d.run(&["create", "--manifest-file", m, "-H", "simz"]).ok();
    let a = volumes(d.state_path(), "simz", "a");
    assert!(a.iter().all(|v| v.starts_with("local-zfs:vm-")), "{a:?}");
    assert!(!a.is_empty());
    let b = volumes(d.state_path(), "simz", "b");
    assert!(b.iter().all(|v| v.starts_with("local-lvm:vm-")), "{b:?}");
    assert!(!b.is_empty());
    d.run(&["destroy", "--manifest-file", m, "-H", "simz", "--yes"])
        .ok();
}

#[test]
fn linked_clones_stay_on_the_template_and_refuse_a_storage() {
    let (d, m) = simz("full_clone: false\n");
    let m = m.to_str().unwrap();
    let r = d
        .run(&["create", "--manifest-file", m, "-H", "simz", "--dry-run"])
        .code(2);
    let err = crate::common::flat(&r.stderr);
    assert!(
        err.contains("node 'b' sets `storage: local-lvm`")
            && err.contains("set `full_clone: true` in"),
        "{}",
        r.stderr
    );

    // Without it, the plan says where the disk stays, and the clone does so.
    let one = d.site_path().join("one.yaml");
    std::fs::write(
        &one,
        TWO.lines().take(5).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let one = one.to_str().unwrap();
    let plan = d
        .run(&["create", "--manifest-file", one, "-H", "simz", "--dry-run"])
        .ok();
    assert!(
        plan.stdout
            .contains("a  linked clone: stays on the template's storage"),
        "{}",
        plan.stdout
    );
    d.run(&["create", "--manifest-file", one, "-H", "simz"])
        .ok();
    let a = volumes(d.state_path(), "simz", "a");
    assert!(
        a.iter()
            .any(|v| v.starts_with("local-lvm:base-9000-disk-0/vm-")),
        "{a:?}"
    );
    d.run(&["destroy", "--manifest-file", one, "-H", "simz", "--yes"])
        .ok();
}

#[test]
fn the_graph_shows_a_node_storage() {
    let (d, m) = simz("");
    let r = d
        .run(&["graph", "--manifest-file", m.to_str().unwrap()])
        .ok();
    assert!(
        r.stdout
            .contains("b [vm] vm-small debian-12 disk on local-lvm"),
        "{}",
        r.stdout
    );
}

#[test]
fn preflight_on_the_simulator_refuses_a_datastore_without_images() {
    let d = Driver::example();
    std::fs::write(
        d.site_path().join("nodes/simlocal.yaml"),
        "simulated: true\napi_endpoint: https://127.0.0.1:8006\napi_token: sim\n\
         datastore: local\nbridge: vmbr0\nip: 127.0.0.1\n",
    )
    .unwrap();
    let r = d
        .run(&["preflight", "-H", "simlocal", "-M", "n1-basic"])
        .code(1);
    assert!(
        r.stdout.contains(
            "fix: on the host: `pvesm set local --content backup,iso,snippets,vztmpl,images`"
        ),
        "{}",
        r.stdout
    );
}

// ---- against fakepve ----

const TOKEN_ID: &str = "root@pam!driver";
const SECRET: &str = "0b0e1c2a-1111-4222-8333-944455556666";

struct FakePve {
    child: Child,
    io: (ChildStdin, BufReader<ChildStdout>),
    url: String,
    fingerprint: String,
}

impl FakePve {
    fn start() -> FakePve {
        let python = repo().join(".venv/bin/python");
        assert!(
            python.exists(),
            "fakepve is not installed: run scripts/install-test-deps.sh \
             (it does: python3 -m venv .venv && .venv/bin/pip install 'fakepve[crypto]')"
        );
        let host = format!("127.67.{}.{}", std::process::id() % 200 + 1, 10);
        let mut child = Command::new(&python)
            .arg(repo().join("tests/support/fakepve_launcher.py"))
            .args([&host, TOKEN_ID, SECRET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fakepve");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fakepve did not start ({e}): {line:?}"));
        FakePve {
            child,
            io: (stdin, stdout),
            url: ready["url"].as_str().unwrap().to_string(),
            fingerprint: ready["fingerprint"].as_str().unwrap().to_string(),
        }
    }

    fn cmd(&mut self, v: Value) {
        writeln!(self.io.0, "{v}").unwrap();
        self.io.0.flush().unwrap();
        let mut line = String::new();
        self.io.1.read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert!(r.get("error").is_none(), "fakepve: {r}");
    }

    fn client(&self) -> PveClient {
        PveClient::new(&PveTarget {
            endpoint: self.url.clone(),
            node: "pve1".into(),
            token_id: TOKEN_ID.into(),
            token_secret: SECRET.into(),
            trust: TlsTrust::Fingerprint(tls::parse_fingerprint(&self.fingerprint).unwrap()),
        })
        .unwrap()
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Adds a storage through PVE's own API (`pvesm add`).
    fn add_storage(&self, id: &str, content: &str) {
        let c = self.client();
        Self::block(c.post(
            "/storage",
            &[
                ("storage", id.to_string()),
                ("type", "zfspool".to_string()),
                ("pool", format!("{id}/data")),
                ("content", content.to_string()),
            ],
        ))
        .unwrap();
    }

    /// The boot disk's volume of VM `vmid`.
    fn disk(&self, vmid: u32) -> String {
        let c = self.client();
        let cfg = Self::block(c.get(&format!("/nodes/pve1/qemu/{vmid}/config"))).unwrap();
        let v = cfg["scsi0"].as_str().unwrap_or_else(|| panic!("{cfg}"));
        v.split(',').next().unwrap().to_string()
    }

    /// A site-config whose host `fake` is this fakepve.
    fn site(&self, node_file_extra: &str) -> Driver {
        let d = Driver::example();
        let fp: Vec<String> = self
            .fingerprint
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect();
        std::fs::write(
            d.site_path().join("nodes/fake.yaml"),
            format!(
                "node: pve1\napi_endpoint: {}\nfingerprint: \"{}\"\nbridge: vmbr0\n{node_file_extra}",
                self.url,
                fp.join(":")
            ),
        )
        .unwrap();
        std::fs::write(
            d.site_path().join("secrets.yaml"),
            format!("api_tokens:\n  fake: \"{TOKEN_ID}={SECRET}\"\n"),
        )
        .unwrap();
        d
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One VM with a fixed vmid whose start fails: the run stops right after
/// the clone, and what the clone made stays to be looked at.
fn one_vm(d: &Driver, name: &str, vmid: u32) -> String {
    let m = d.site_path().join(format!("{name}.yaml"));
    std::fs::write(
        &m,
        format!(
            "schema_version: 2\nname: {name}\nsettings: {{cleanup_on_failure: false, on_error: stop}}\n\
             nodes:\n  - {{name: vm1, type: vm, image: debian-12, preset: vm-small, vmid: {vmid}}}\n"
        ),
    )
    .unwrap();
    m.to_str().unwrap().to_string()
}

fn fail_start(pve: &mut FakePve, vmid: u32) {
    pve.cmd(json!({"op": "fail", "method": "POST",
                   "suffix": format!("/nodes/pve1/qemu/{vmid}/status/start"),
                   "error": "qemu_exited_code"}));
}

#[test]
fn against_fakepve_a_full_clone_carries_the_datastore_and_a_linked_one_none() {
    let mut pve = FakePve::start();
    pve.add_storage("tank", "images,rootdir");

    let d = pve.site("datastore: tank\n");
    let m = one_vm(&d, "full", 150);
    fail_start(&mut pve, 150);
    let r = d
        .run(&["create", "--manifest-file", &m, "-H", "fake"])
        .code(1);
    assert!(r.stderr.contains("QEMU exited"), "{}", r.stderr);
    // fakepve allocated the disk where the request said: `storage=tank`.
    assert!(pve.disk(150).starts_with("tank:"), "{}", pve.disk(150));

    // Linked: fakepve refuses `storage` there, so a clone that succeeds sent none.
    let d = pve.site("datastore: tank\nfull_clone: false\n");
    let m = one_vm(&d, "linked", 151);
    fail_start(&mut pve, 151);
    let r = d
        .run(&["create", "--manifest-file", &m, "-H", "fake"])
        .code(1);
    assert!(r.stderr.contains("QEMU exited"), "{}", r.stderr);
    // On the template's storage, not the datastore.
    assert!(pve.disk(151).starts_with("local-lvm:"), "{}", pve.disk(151));
}

#[test]
fn against_fakepve_preflight_refuses_a_datastore_without_images() {
    let pve = FakePve::start();
    let d = pve.site("datastore: local\n");
    let r = d
        .run(&["preflight", "-H", "fake", "-M", "n1-basic"])
        .code(1);
    assert!(
        r.stdout
            .contains("FAIL content      storage 'local' does not hold images (for disks of"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("fix: on the host: `pvesm set local --content iso,vztmpl,backup,images`"),
        "{}",
        r.stdout
    );
    // create runs the same check first, and stops there.
    let m = one_vm(&d, "nope", 160);
    let r = d
        .run(&["create", "--manifest-file", &m, "-H", "fake"])
        .code(1);
    assert!(
        r.stderr
            .contains("pvesm set local --content iso,vztmpl,backup,images"),
        "{}",
        r.stderr
    );
}

#[test]
fn against_fakepve_a_tiered_preflight_says_when_ssh_to_the_host_fails() {
    let pve = FakePve::start();
    // Bound and let go: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let d = pve.site(&format!(
        "datastore: local-lvm\nip: 127.0.0.1\nssh_port: {port}\n"
    ));
    let r = d
        .run(&["preflight", "-H", "fake", "-M", "n2-quick"])
        .code(1);
    let out = crate::common::flat(&r.stdout);
    assert!(
        out.contains(&format!(
            "FAIL nested cannot check over SSH (root@127.0.0.1:{port})"
        )),
        "{}",
        r.stdout
    );
    assert!(
        out.contains("check `ip:` (and `ssh_port:`) in") && out.contains("sshd runs on the host"),
        "{}",
        r.stdout
    );
}
