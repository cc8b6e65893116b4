//! `driver host install-pve|setup|user|bootstrap` against a real OpenSSH sshd on
//! loopback, with stand-ins for the Debian and PVE tools on its PATH
//! (tests/support/host_standin.py, pve_cli_standin.py) and the machine's files
//! under a folder (`--root`): each step's commands, its idempotence (a second
//! run changes nothing) and its errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::sshd::Sshd;
use crate::common::{flat, repo, Driver, Run};

const TOOLS_HOST: &[&str] = &[
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
    "id",
    "useradd",
    "chown",
];
const TOOLS_PVE: &[&str] = &["pveversion", "pvesh", "pveum", "pvesm", "ip"];

/// A Debian 13 machine: stand-ins, their state, its files.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(os_codename: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for t in TOOLS_HOST {
            std::os::unix::fs::symlink(repo().join("tests/support/host_standin.py"), bin.join(t))
                .unwrap();
        }
        for t in TOOLS_PVE {
            std::os::unix::fs::symlink(
                repo().join("tests/support/pve_cli_standin.py"),
                bin.join(t),
            )
            .unwrap();
        }
        let root = d.join("root");
        for (p, text) in [
            (
                "etc/os-release",
                format!(
                    "PRETTY_NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_CODENAME={os_codename}\n"
                ),
            ),
            (
                "etc/hosts",
                "127.0.0.1 localhost\n127.0.1.1 pvehost\n# keep me\n".to_string(),
            ),
            ("proc/sys/kernel/random/boot_id", "boot-1\n".to_string()),
        ] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), text).unwrap();
        }
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            d.join("host.json"),
            json!({"packages": ["linux-image-amd64"], "services": {}, "hostname": "pvehost", "users": []}).to_string(),
        )
        .unwrap();
        std::fs::write(
            d.join("pve.json"),
            json!({
                "installed": false,
                "node": "pvehost",
                "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
                "ca_fingerprint": "11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00:11:22",
                "storage": [{"storage": "local", "type": "dir", "content": "iso,vztmpl,backup", "active": 1},
                            {"storage": "local-lvm", "type": "lvmthin", "content": "images,rootdir", "active": 1}],
                "network": [{"iface": "eno1", "type": "eth", "active": 1}],
                "guests": [], "tokens": {},
                "iface": "eno1", "address": "198.51.100.61", "prefixlen": 24, "gateway": "198.51.100.1",
            })
            .to_string(),
        )
        .unwrap();
        Machine { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> String {
        self.p("root").display().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.p("bin").display()),
            ),
            (
                "HOST_STANDIN_STATE".into(),
                self.p("host.json").display().to_string(),
            ),
            ("HOST_STANDIN_ROOT".into(), self.root()),
            (
                "PVE_STANDIN_STATE".into(),
                self.p("pve.json").display().to_string(),
            ),
        ]
    }

    fn state(&self, f: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.p(f)).unwrap()).unwrap()
    }

    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.p("root").join(rel)).ok()
    }

    /// The stand-in calls so far whose argv holds all `words`.
    fn calls(&self, log: &str, words: &[&str]) -> usize {
        std::fs::read_to_string(self.p(log))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap())
            .filter(|c| words.iter().all(|w| c.iter().any(|a| a == w)))
            .count()
    }
}

/// The machine behind an sshd, named `pvehost` in a copy of the example site-config.
struct Remote {
    m: Machine,
    sshd: Sshd,
    home: tempfile::TempDir,
    d: Driver,
}

impl Remote {
    fn new(os: &str) -> Remote {
        let m = Machine::new(os);
        let sshd = Sshd::start(&[format!(
            "SetEnv {}",
            m.env()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )]);
        let home = sshd.home();
        let d = Driver::example();
        std::fs::write(
            d.site_path().join("hosts/pvehost.yaml"),
            format!(
                "host: pvehost\ndomain: example.internal\nip: 127.0.0.1\n\
                 network:\n  interfaces:\n    vmbr0:\n      address: 198.51.100.61/24\n\
                 access:\n  ssh_user: {}\n  ssh_port: {}\n",
                sshd.user, sshd.port
            ),
        )
        .unwrap();
        Remote { m, sshd, home, d }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.d.cmd();
        c.env("HOME", self.home.path()).env_remove("SSH_AUTH_SOCK");
        Run::from(c.args(args).output().unwrap())
    }

    fn step(&self, step: &str, extra: &[&str]) -> Run {
        let root = self.m.root();
        let mut args = vec![
            "host",
            step,
            "-H",
            "pvehost",
            "--root",
            &root,
            "--json-output",
        ];
        args.extend(extra);
        let r = self.run(&args);
        assert!(
            r.code == 0,
            "host {step}: exit {}\n{}\n{}\nsshd log:\n{}",
            r.code,
            r.stdout,
            r.stderr,
            std::fs::read_to_string(self.sshd.dir.path().join("sshd.log")).unwrap_or_default()
        );
        r
    }
}

fn changed(r: &Run) -> Vec<String> {
    r.json()["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn install_pve_then_setup_over_ssh_and_a_second_run_changes_nothing() {
    let h = Remote::new("trixie");
    // A dry run says what it would do and does none of it.
    let r = h.step("install-pve", &["--dry-run"]);
    assert!(
        changed(&r)
            .iter()
            .any(|c| c.contains("proxmox-default-kernel")),
        "{}",
        r.stdout
    );
    assert_eq!(h.m.calls("host.json.log", &["apt-get"]), 0);
    assert_eq!(
        h.m.file("etc/hosts").unwrap(),
        "127.0.0.1 localhost\n127.0.1.1 pvehost\n# keep me\n"
    );

    let r = h.step("install-pve", &[]);
    let c = changed(&r);
    for want in [
        "wrote /etc/hosts",
        "wrote /etc/apt/sources.list.d/pve-install-repo.sources",
        "fetched /usr/share/keyrings",
        "rebooted",
        "installed proxmox-ve postfix open-iscsi chrony",
        "removed linux-image-amd64",
        "certificates",
    ] {
        assert!(c.iter().any(|x| x.contains(want)), "{want} not in {c:?}");
    }
    assert_eq!(
        h.m.file("etc/hosts").unwrap(),
        "127.0.0.1 localhost\n# keep me\n198.51.100.61 pvehost.example.internal pvehost\n"
    );
    assert!(h
        .m
        .file("etc/apt/sources.list.d/pve-install-repo.sources")
        .unwrap()
        .contains("pve-no-subscription"));
    let st = h.m.state("host.json");
    assert_eq!(st["reboots"], 1);
    assert!(!st["packages"]
        .as_array()
        .unwrap()
        .contains(&json!("linux-image-amd64")));
    assert_eq!(
        h.m.calls(
            "host.json.log",
            &["apt-get", "install", "proxmox-default-kernel"]
        ),
        1
    );
    assert_eq!(
        h.m.calls("host.json.log", &["pvecm", "updatecerts", "--force"]),
        1
    );
    // The IPv6 pitfall: certificates are made with IPv6 off.
    assert_eq!(
        h.m.calls(
            "host.json.log",
            &["sysctl", "net.ipv6.conf.all.disable_ipv6=1"]
        ),
        1
    );

    let r = h.step("install-pve", &[]);
    assert_eq!(changed(&r), Vec::<String>::new(), "{}", r.stdout);
    assert_eq!(h.m.state("host.json")["reboots"], 1);

    // The site encrypts only some of its secrets (`encrypted_regex`): the token is
    // stored under the file's own settings.
    let site = h.d.site_path();
    let rules = std::fs::read_to_string(site.join(".sops.yaml")).unwrap();
    let age_line = rules
        .lines()
        .find(|l| l.contains("age:"))
        .unwrap()
        .to_string();
    std::fs::write(
        site.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: secrets\\.yaml$\n    encrypted_regex: ^(api_tokens|passwords|auth)$\n{age_line}\n"
        ),
    )
    .unwrap();
    h.run(&[
        "secrets",
        "decrypt",
        "secrets.yaml",
        "-o",
        "plain-secrets.yaml",
    ])
    .ok();
    h.run(&[
        "secrets",
        "encrypt",
        "plain-secrets.yaml",
        "-o",
        "secrets.yaml",
    ])
    .ok();
    std::fs::remove_file(site.join("plain-secrets.yaml")).unwrap();
    let before = std::fs::read_to_string(site.join("secrets.yaml")).unwrap();
    assert!(
        before.contains("encrypted_regex: ^(api_tokens|passwords|auth)$"),
        "{before}"
    );
    assert!(
        before.contains("ssh-ed25519 "),
        "ssh_keys stay plain: {before}"
    );

    // setup: storage, bridge, nested, token; nodes/pvehost.yaml and the secret.
    // PVE's web UI library, with the subscription check the original's configure role removes.
    let lib =
        h.m.p("root/usr/share/javascript/proxmox-widget-toolkit/proxmoxlib.js");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    let js = "checked_command: function(orig_cmd) {\n\tif (res === null || res === undefined || !res || res\n\t\t\t.data.status.toLowerCase() !== 'active') {\n\t\tExt.Msg.show({ title: gettext('No valid subscription'),\n";
    std::fs::write(&lib, js).unwrap();
    let r = h.step("setup", &[]);
    let c = changed(&r);
    let patched = std::fs::read_to_string(&lib).unwrap();
    assert!(
        patched.contains("\tif (false) {\n\t\tExt.Msg.show") && !patched.contains("!== 'active'"),
        "{patched}"
    );
    assert_eq!(
        std::fs::read_to_string(lib.with_extension("js.bak")).unwrap(),
        js
    );
    assert_eq!(
        h.m.calls("host.json.log", &["systemctl", "restart", "pveproxy"]),
        2,
        "once for the certificates (install-pve), once for the dialog"
    );
    for want in [
        "removed the subscription dialog",
        "storage local: added content snippets, import",
        "bridge vmbr0 on eno1 (198.51.100.61/24)",
        "wrote /etc/modprobe.d/kvm-nested.conf",
        "made API token root@pam!driver",
        "wrote nodes/pvehost.yaml",
        "stored api_tokens.pvehost in secrets.yaml (encrypted)",
    ] {
        assert!(c.iter().any(|x| x.contains(want)), "{want} not in {c:?}");
    }
    let pve = h.m.state("pve.json");
    assert!(pve["tokens"]["root@pam!driver"].is_object());
    assert_eq!(
        pve["storage"][0]["content"],
        "iso,vztmpl,backup,snippets,import"
    );
    let node = std::fs::read_to_string(h.d.site_path().join("nodes/pvehost.yaml")).unwrap();
    assert!(
        node.contains("api_endpoint: https://198.51.100.61:8006\n")
            && node.contains("datastore: local-lvm\n")
            && node.contains("fingerprint: \"AB:CD:"),
        "{node}"
    );
    let secrets = std::fs::read_to_string(h.d.site_path().join("secrets.yaml")).unwrap();
    assert!(secrets.contains("pvehost: ENC[AES256_GCM"), "{secrets}");
    assert!(
        secrets.contains("encrypted_regex: ^(api_tokens|passwords|auth)$")
            && secrets.contains("ssh-ed25519 "),
        "the file's own selector is kept: {secrets}"
    );
    // The site opens it, with the token the host made.
    let r = h.run(&["secrets", "check", "--json-output"]).ok();
    assert!(r.stdout.contains("api_tokens.pvehost"), "{}", r.stdout);

    let r = h.step("setup", &[]);
    assert_eq!(changed(&r), Vec::<String>::new(), "{}", r.stdout);
    assert_eq!(h.m.calls("pve.json.log", &["pveum", "token", "add"]), 1);

    // The host is now a node every verb takes.
    let r = h
        .run(&["create", "-M", "n1-basic", "-H", "pvehost", "--dry-run"])
        .ok();
    assert!(r.stdout.contains("pvehost"), "{}", r.stdout);
}

#[test]
fn host_steps_refuse_what_they_cannot_do() {
    let h = Remote::new("bookworm");
    let root = h.m.root();
    let r = h
        .run(&["host", "install-pve", "-H", "pvehost", "--root", &root])
        .code(1);
    assert!(
        flat(&r.stderr).contains("not Debian 13 (trixie)"),
        "{}",
        r.stderr
    );
    assert_eq!(h.m.calls("host.json.log", &["apt-get"]), 0);
    let r = h
        .run(&["host", "setup", "-H", "pvehost", "--root", &root])
        .code(1);
    assert!(
        flat(&r.stderr).contains("run `driver host install-pve`"),
        "{}",
        r.stderr
    );
    let r = h
        .run(&[
            "host",
            "install-pve",
            "-H",
            "pvehost",
            "--root",
            &root,
            "--address",
            "127.0.0.1",
        ])
        .code(2);
    assert!(flat(&r.stderr).contains("loopback"), "{}", r.stderr);
    // A host-only machine is refused by the verbs with the command that makes it a node.
    let r = h
        .run(&["create", "-M", "n1-basic", "-H", "pvehost", "--dry-run"])
        .code(2);
    assert!(
        flat(&r.stderr).contains("driver host install-pve -H pvehost"),
        "{}",
        r.stderr
    );
}

/// `--local`: the same steps on this machine (the stand-ins on the driver's own PATH).
fn local(m: &Machine, d: &Driver, args: &[&str]) -> Run {
    let mut c = d.cmd();
    for (k, v) in m.env() {
        c.env(k, v);
    }
    let root = m.root();
    let mut all = args.to_vec();
    all.extend(["--local", "--root", &root, "--json-output"]);
    Run::from(c.args(&all).output().unwrap())
}

#[test]
fn user_and_bootstrap_locally_then_nothing_to_change() {
    let m = Machine::new("trixie");
    let d = Driver::example();
    let r = local(&m, &d, &["host", "user", "--user", "homestak"]).ok();
    let c = changed(&r);
    assert!(
        c.iter().any(|x| x == "made user homestak (group sudo)"),
        "{c:?}"
    );
    assert_eq!(
        m.file("etc/sudoers.d/homestak").unwrap(),
        "homestak ALL=(ALL) NOPASSWD:ALL\n"
    );
    let keys = m.file("home/homestak/.ssh/authorized_keys").unwrap();
    assert!(keys.starts_with("ssh-ed25519 "), "{keys}");
    let r = local(&m, &d, &["host", "user", "--user", "homestak"]).ok();
    assert_eq!(changed(&r), Vec::<String>::new());
    let r = local(&m, &d, &["host", "user", "--user", "Bad;name"]).code(2);
    assert!(r.stderr.contains("not a user name"), "{}", r.stderr);

    let r = local(&m, &d, &["host", "bootstrap"]).ok();
    let c = changed(&r);
    assert!(
        c.iter()
            .any(|x| x.starts_with("installed /usr/local/bin/driver")),
        "{c:?}"
    );
    assert!(
        c.iter()
            .any(|x| x == "wrote /usr/local/etc/homestak/nodes/sim.yaml"),
        "{c:?}"
    );
    let out = Command::new(m.p("root/usr/local/bin/driver"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("driver "));
    let r = local(&m, &d, &["host", "bootstrap"]).ok();
    assert_eq!(changed(&r), Vec::<String>::new(), "{}", r.stdout);
}

#[test]
fn seed_host_scenarios_run_their_host_steps() {
    let m = Machine::new("trixie");
    let d = Driver::example();
    let root = m.root();
    let scen = |args: &[&str]| {
        let mut c = Command::new(repo().join("run.sh"));
        for (k, v) in m.env() {
            c.env(k, v);
        }
        c.env("DRIVER", crate::common::BIN)
            .env("HOMESTAK_SITE_CONFIG", d.site_path())
            .env("SOPS_AGE_KEY_FILE", d.site_path().join("age-test-key.txt"))
            .current_dir(d.site_path());
        let mut all = args.to_vec();
        all.extend(["--root", &root, "--json-output"]);
        Run::from(c.args(&all).output().unwrap())
    };
    let r = scen(&[
        "--scenario",
        "user-setup",
        "--local",
        "--homestak-user",
        "ops",
    ])
    .ok();
    crate::cli_schemas::validate("scenario-output", &r.stdout, false);
    assert_eq!(r.json()["phases"][0]["name"], "create_user");
    assert_eq!(r.json()["context"]["user"], "ops");
    let r = scen(&[
        "--scenario",
        "bootstrap-install",
        "--local",
        "--homestak-user",
        "homestak",
        "--dry-run",
    ])
    .ok();
    let doc = r.json();
    let names: Vec<&str> = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bootstrap", "create_user"]);
    assert!(!Path::new(&format!("{root}/usr/local/bin/driver")).exists());
    // A dry run of pve-setup on a machine without PVE: the install says what it would do,
    // and the setup of the PVE it would install is skipped, saying why.
    let r = scen(&["--scenario", "pve-setup", "--local", "--dry-run"]).ok();
    crate::cli_schemas::validate("scenario-output", &r.stdout, false);
    let doc = r.json();
    assert_eq!(doc["phases"][0]["name"], "ensure_pve", "{doc}");
    assert!(
        !doc["phases"][0]["changed"].as_array().unwrap().is_empty(),
        "{doc}"
    );
    assert_eq!(doc["phases"][1]["name"], "setup_pve", "{doc}");
    assert_eq!(doc["phases"][1]["status"], "skipped", "{doc}");
    assert!(m
        .file("etc/hosts")
        .is_none_or(|h| !h.contains("198.51.100.61 pvehost")));
    // install-pve --local (what pve-setup --local starts with) takes the address the
    // default route uses (it then reboots into the Proxmox kernel, a stand-in here).
    let r = local(&m, &d, &["host", "install-pve"]).ok();
    assert!(
        changed(&r).iter().any(|c| c == "wrote /etc/hosts"),
        "{}",
        r.stdout
    );
    let hosts = m.file("etc/hosts").unwrap();
    assert!(hosts.contains("198.51.100.61 pvehost"), "{hosts}");
    // ... and asks for it only when that is ambiguous.
    let mut pve = m.state("pve.json");
    pve["default_routes"] = json!([]);
    pve["links"] = json!([
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "eno1", "addr_info": [{"family": "inet", "local": "198.51.100.61", "prefixlen": 24}]},
        {"ifname": "eno2", "addr_info": [{"family": "inet", "local": "203.0.113.7", "prefixlen": 24}]},
    ]);
    std::fs::write(m.p("pve.json"), pve.to_string()).unwrap();
    let r = scen(&["--scenario", "pve-setup", "--local", "--dry-run"]);
    assert_eq!(r.code, 2, "ambiguous: {}", r.stderr);
    let r2 = local(&m, &d, &["host", "install-pve", "--dry-run"]).code(2);
    assert!(
        flat(&r2.stderr).contains("several addresses"),
        "{}",
        r2.stderr
    );
    let e = flat(&r.stderr);
    assert!(
        e.contains("--address ADDR") && e.contains("198.51.100.61 on eno1, 203.0.113.7 on eno2"),
        "{e}"
    );
}
