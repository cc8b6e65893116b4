//! Helpers for tests that run the built `driver` binary.
#![allow(dead_code)]

pub mod fakepve;
pub mod sim;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_driver");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/ansible-playbook`, for `$DRIVER_ANSIBLE_PLAYBOOK`.
pub fn ansible_playbook() -> PathBuf {
    let path = repo().join(".venv/bin/ansible-playbook");
    assert!(
        path.exists(),
        "ansible-playbook missing: run scripts/install-test-deps.sh (python3 -m venv .venv && .venv/bin/pip install ansible-core)"
    );
    path
}

/// A `driver` command that cannot pick up the machine's own site-config or
/// state: it points $HOMESTAK_SITE_CONFIG at `site` (an empty folder by
/// default) and $DRIVER_STATE_DIR at `state`.
pub struct Driver {
    pub site: tempfile::TempDir,
    pub state: tempfile::TempDir,
    /// The age key the site's secrets open with, when they are encrypted.
    age_key: Option<PathBuf>,
}

/// A real (not simulated) PVE host for `Driver::example`: a documentation
/// address nobody answers on, so only dry runs and refusals use it.
pub const FATHER: &str = "api_endpoint: https://198.51.100.61:8006
api_token: sim
datastore: local
insecure: true
";

impl Driver {
    pub fn new() -> Self {
        Driver {
            site: tempfile::tempdir().expect("temp dir"),
            state: tempfile::tempdir().expect("temp dir"),
            age_key: None,
        }
    }

    /// The example site-config (`site-config-example/`) copied to a temporary
    /// folder, opened with its test key, plus a real host `father`
    /// ([`FATHER`]) beside the simulated `sim`.
    pub fn example() -> Self {
        let mut d = Driver::new();
        copy_dir(&repo().join("site-config-example"), d.site.path());
        std::fs::write(d.site.path().join("nodes/father.yaml"), FATHER).expect("write");
        d.age_key = Some(d.site.path().join("age-test-key.txt"));
        d
    }

    pub fn site_path(&self) -> &Path {
        self.site.path()
    }

    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// The files in the state folder, sorted (what a run left there).
    pub fn state_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state.path())
            .expect("state dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("HOMESTAK_SITE_CONFIG", self.site.path())
            .env("DRIVER_STATE_DIR", self.state.path())
            .env_remove("RUST_LOG")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("PVESIM_FAULTS")
            .env_remove("PVESIM_TIME_SCALE")
            .current_dir(self.site.path());
        match &self.age_key {
            Some(k) => c.env("SOPS_AGE_KEY_FILE", k),
            None => c.env_remove("SOPS_AGE_KEY_FILE"),
        };
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("driver runs"))
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A diagnostic as one line: miette's wrapping and frame undone, for
/// phrases that may wrap.
pub fn flat(s: &str) -> String {
    s.replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
