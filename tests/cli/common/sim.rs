//! Runs of the built `driver` on the built-in simulator (host `sim`), and
//! what the simulator itself says it holds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{copy_dir, repo, Driver};

/// A `driver` command on the built-in site-config (host `sim`) with its state
/// (and the simulator's) in `state`, and no simulator settings from outside.
pub fn sim_driver(state: &Path) -> Command {
    let mut c = Command::new(super::BIN);
    c.env_remove("HOMESTAK_SITE_CONFIG")
        .env_remove("PVESIM_FAULTS")
        .env_remove("PVESIM_TIME_SCALE")
        .env("DRIVER_STATE_DIR", state)
        .current_dir(state);
    c
}

/// The built-in example site-config copied to `dir/site-config`, with
/// `defaults_extra` (indented YAML) appended to site.yaml's `defaults`.
pub fn site_copy(dir: &Path, defaults_extra: &str) -> std::path::PathBuf {
    let site = dir.join("site-config");
    copy_dir(&repo().join("site-config-example"), &site);
    if !defaults_extra.is_empty() {
        let mut site_yaml = std::fs::read_to_string(site.join("site.yaml")).unwrap();
        site_yaml.push('\n');
        site_yaml.push_str(defaults_extra);
        std::fs::write(site.join("site.yaml"), site_yaml).unwrap();
    }
    site
}

/// A `driver` command on the site-config at `site` (its secrets opened with
/// the example's test key), with its state in `state`.
pub fn site_driver(site: &Path, state: &Path) -> Command {
    let mut c = sim_driver(state);
    c.env("HOMESTAK_SITE_CONFIG", site)
        .env("SOPS_AGE_KEY_FILE", site.join("age-test-key.txt"));
    c
}

/// Runs `driver ARGS` on the built-in site-config with its state in `state`.
pub fn sim_run(state: &Path, args: &[&str]) -> super::Run {
    super::Run::from(sim_driver(state).args(args).output().unwrap())
}

pub struct SimRun {
    /// Holds the folder the manifest is in.
    _site: Driver,
    pub state: tempfile::TempDir,
    pub manifest: std::path::PathBuf,
}

impl SimRun {
    pub fn new(manifest: &str) -> SimRun {
        let d = Driver::new();
        let path = d.site_path().join("m.yaml");
        std::fs::write(&path, manifest).unwrap();
        // The built-in site-config (with host `sim`), not an empty one.
        SimRun {
            _site: d,
            state: tempfile::tempdir().unwrap(),
            manifest: path,
        }
    }

    pub fn cmd(&self, verb: &str, extra: &[&str]) -> Command {
        let mut c = sim_driver(self.state.path());
        c.args([
            verb,
            "--manifest-file",
            self.manifest.to_str().unwrap(),
            "-H",
            "sim",
        ])
        .args(extra);
        c
    }

    pub fn run(&self, verb: &str, extra: &[&str]) -> super::Run {
        super::Run::from(self.cmd(verb, extra).stdin(Stdio::null()).output().unwrap())
    }

    /// `create` in the background, with realistic durations (a full clone takes
    /// seconds: long enough to act on it mid-way). Its stderr goes to
    /// [`SimRun::slow_create_log`].
    pub fn spawn_slow_create(&self) -> std::process::Child {
        self.slow_create().spawn().unwrap()
    }

    /// [`SimRun::spawn_slow_create`] with node `held`'s guest agent never answering
    /// (a simulator fault), so the run cannot end before the test kills it: a test that
    /// waits for a moment near the end must not miss it on a loaded machine. The fault
    /// lives in the simulator this run starts: see [`wait_until_sim_stopped`].
    pub fn spawn_slow_create_holding(&self, held: &str) -> std::process::Child {
        let fault = format!(r#"[{{"kind":"agent_never_answers","name":"{held}"}}]"#);
        self.slow_create()
            .args(["--action-timeout", "wait_ip=3600"])
            .env("PVESIM_FAULTS", fault)
            .spawn()
            .unwrap()
    }

    /// The command [`SimRun::spawn_slow_create`] runs (time scale 0.5).
    pub fn slow_create(&self) -> Command {
        let mut c = self.cmd("create", &[]);
        c.env("PVESIM_TIME_SCALE", "0.5")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match std::fs::File::create(self.slow_create_log()) {
            Ok(log) => c.stderr(log),
            Err(_) => c.stderr(Stdio::null()),
        };
        c
    }

    /// Where the background create's stderr goes (next to the manifest, out of the state).
    pub fn slow_create_log(&self) -> std::path::PathBuf {
        self.manifest.with_file_name("slow-create.log")
    }

    /// Non-template guests in the simulator's saved state: (vmid, name).
    pub fn sim_guests(&self) -> Vec<(u64, String)> {
        sim_guests(&self.state.path().join("pvesim-sim"))
    }
}

pub fn sim_guests(dir: &Path) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = sim::saved_guests(dir)
        .unwrap_or_else(|e| panic!("the simulator's state in {}: {e}", dir.display()))
        .into_iter()
        .filter(|g| !g.template)
        .map(|g| (u64::from(g.vmid), g.name))
        .collect();
    out.sort();
    out
}

/// Waits until no simulator serves folder `dir`: after its last run was killed, the
/// simulator stops on its own (it finds no client left), and the next run starts a fresh one
/// without the killed run's faults.
pub fn wait_until_sim_stopped(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim::folder::is_served(dir)
        .unwrap_or_else(|e| panic!("the simulator's folder {}: {e}", dir.display()))
    {
        assert!(
            Instant::now() < deadline,
            "the simulator in {} is still up 120 s after its last run ended",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the journal at `path` has a line that `found` accepts (see
/// `wait_for_journal_text` for how long).
pub fn wait_for_journal(path: &Path, what: &str, found: impl Fn(&str) -> bool) {
    wait_for_journal_text(path, what, |text| text.lines().any(&found))
}

/// Waits until the whole text of the journal at `path` satisfies `found`. The deadline
/// only catches a run that never gets there: on a loaded 2-core machine a nested run
/// took over 30 s to reach its delegation, so it is 4 minutes (below nextest's kill).
pub fn wait_for_journal_text(path: &Path, what: &str, found: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if found(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never recorded: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` in guest `ip` over SSH with the OpenSSH client and driver's own key, as the
/// user driver's guests are made with.
pub fn ssh_output(state: &Path, ip: &str, cmd: &str) -> std::process::Output {
    let key = state.join("ssh/id_ed25519");
    std::process::Command::new("ssh")
        .args(["-i", key.to_str().unwrap(), "-p", "2222"])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", &format!("homestak@{ip}"), cmd])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs (apt-get install openssh-client)")
}

pub fn ssh(state: &Path, ip: &str, cmd: &str) -> String {
    let out = ssh_output(state, ip, cmd);
    assert!(
        out.status.success(),
        "ssh {ip} {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` over SSH in guest `vmid` once it answers, at the address its agent reports
/// (a restart may give it another); its output.
pub fn ssh_when_up(state: &Path, held: &HeldSim, vmid: u32, cmd: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ip = held
            .call(held.client.guest_ipv4(actions::pve::GuestKind::Qemu, vmid))
            .ok()
            .flatten();
        let out = ip.as_deref().map(|ip| ssh_output(state, ip, cmd));
        match out {
            Some(out) if out.status.success() => {
                return String::from_utf8_lossy(&out.stdout).into_owned()
            }
            _ => assert!(
                std::time::Instant::now() < deadline,
                "guest {vmid} never answered SSH: {:?}\n{}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()),
                sim_run(
                    state,
                    &[
                        "describe",
                        "vm",
                        &vmid.to_string(),
                        "-H",
                        "sim",
                        "-o",
                        "json"
                    ]
                )
                .stdout
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The simulator of host `sim` for a state folder, held by the test itself (as a run holds
/// it), so the test can act on the host behind driver's back through its API while driver
/// commands come and go. Leaves it when dropped.
pub struct HeldSim {
    lease: Option<sim::folder::Lease>,
    pub client: actions::pve::PveClient,
    pub rt: tokio::runtime::Runtime,
}

impl HeldSim {
    pub fn attach(state: &Path) -> HeldSim {
        HeldSim::attach_host(state, "sim", &["--node", "sim"])
    }

    /// The simulator of the built-in host `host`, started (when no run serves it) with
    /// `serve_args` as the host's node file would start it (`--node NAME`, ...).
    pub fn attach_host(state: &Path, host: &str, serve_args: &[&str]) -> HeldSim {
        let dir = state.join(format!("pvesim-{host}"));
        let lease = sim::folder::attach(&dir, Duration::from_secs(120), || {
            Command::new(super::BIN)
                .args(["sim", "serve", "--shared", "--bind", "127.0.0.1:0"])
                .args(serve_args)
                .arg("--state-dir")
                .arg(&dir)
                .args(["--time-scale", "0", "--guest-ssh-port", "2222"])
                .env_remove("PVESIM_TOKEN")
                .env_remove("PVESIM_FAULTS")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("attach to the simulator");
        let ep = lease.endpoint().clone();
        let client = actions::pve::PveClient::new(&actions::pve::PveTarget {
            endpoint: ep.url.clone(),
            node: ep.node.clone(),
            token_id: ep.token.full_id(),
            token_secret: ep.token.secret.clone(),
            trust: actions::pve::TlsTrust::Fingerprint(
                actions::pve::tls::parse_fingerprint(&ep.fingerprint).unwrap(),
            ),
        })
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        HeldSim {
            lease: Some(lease),
            client,
            rt,
        }
    }

    /// Adds a fault to the held simulator (`POST /sim/faults`, the JSON of `sim::faults::Fault`).
    pub fn inject(&self, fault: &str) {
        let out = self.admin(&["-X", "POST", "--data", fault, "/sim/faults"]);
        assert!(out.contains("\"id\""), "fault not taken: {out}");
    }

    /// The simulator's active faults, as its `GET /sim/faults` answers.
    pub fn faults(&self) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.admin(&["/sim/faults"])).unwrap()["data"]
            .clone()
    }

    /// A call of the simulator's own control API (curl: the certificate is the loopback
    /// simulator's own, so not checked).
    fn admin(&self, args: &[&str]) -> String {
        let ep = self.lease.as_ref().expect("held").endpoint();
        let (path, flags) = args.split_last().unwrap();
        let out = Command::new("curl")
            .args(["-sk", "-H"])
            .arg(format!(
                "Authorization: PVEAPIToken={}={}",
                ep.token.full_id(),
                ep.token.secret
            ))
            .args(flags)
            .arg(format!("{}{path}", ep.url))
            .output()
            .expect("curl (apt-get install curl)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs an API call on the held simulator.
    pub fn call<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}

impl Drop for HeldSim {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            let _ = l.release(Duration::from_secs(120));
        }
    }
}
