//! fakepve (PyPI, in `.venv`), a third-party fake of the PVE 9 API, started through
//! `tests/support/fakepve_launcher.py` for tests that run `driver` against it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use actions::pve::{tls, PveClient, PveTarget, TlsTrust};
use serde_json::Value;

pub const TOKEN_ID: &str = "root@pam!driver";
pub const SECRET: &str = "0b0e1c2a-1111-4222-8333-944455556666";
/// The node the launcher's fakepve has.
pub const NODE: &str = "pve1";

pub struct FakePve {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub url: String,
    /// SHA-256 of its certificate, hex.
    pub fingerprint: String,
}

impl FakePve {
    /// Starts one on a loopback address of its own, from this test process's pid (each
    /// test is a process of its own, so tests running side by side never share one).
    pub fn start() -> FakePve {
        let root = super::repo();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "fakepve is not installed: run scripts/install-test-deps.sh \
             (it does: python3 -m venv .venv && .venv/bin/pip install 'fakepve[crypto]')"
        );
        let pid = std::process::id();
        let host = format!("127.65.{}.{}", (pid >> 8) & 0xff, (pid & 0xff) % 254 + 1);
        let mut child = Command::new(&python)
            .arg(root.join("tests/support/fakepve_launcher.py"))
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
            stdin,
            stdout,
            url: ready["url"].as_str().unwrap().to_string(),
            fingerprint: ready["fingerprint"].as_str().unwrap().to_string(),
        }
    }

    /// One launcher command (see the launcher's doc), its answer.
    pub fn cmd(&mut self, v: Value) -> Value {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert!(r.get("error").is_none(), "fakepve: {r}");
        r
    }

    /// A node file for it (`nodes/pve1.yaml`), its token under `api_tokens.fake`.
    pub fn node_file(&self) -> String {
        format!(
            "api_endpoint: {}\nfingerprint: \"{}\"\napi_token: fake\ndatastore: local-lvm\nbridge: vmbr0\n",
            self.url, self.fingerprint
        )
    }
}

impl FakePve {
    /// An API client of it, as driver's own.
    pub fn client(&self) -> PveClient {
        PveClient::new(&PveTarget {
            endpoint: self.url.clone(),
            node: NODE.into(),
            token_id: TOKEN_ID.into(),
            token_secret: SECRET.into(),
            trust: TlsTrust::Fingerprint(tls::parse_fingerprint(&self.fingerprint).unwrap()),
        })
        .unwrap()
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
