//! The two peers of the differential test: fakepve started through the project's launcher
//! (whose stdin takes commands that set its state), and one peer's run through the
//! sequence ([`Run`]), which sends each step its own way.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sim::{Fault, SimHandle};

use super::root;
use super::sequence::{Act, Side, Step};
use crate::common::{encode, form, Auth, Client, Resp};

pub const NODE: &str = "pve1";
const TOKEN_ID: &str = "root@pam!driver";
const SECRET: &str = "7f3c9a2e-2222-4333-8444-a55566667777";
const WAIT: Duration = Duration::from_secs(30);

/// fakepve through the project's launcher; killed when dropped.
pub struct FakePve {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub client: Client,
}

impl FakePve {
    pub fn start() -> FakePve {
        let python = root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "fakepve is not installed: run scripts/install-test-deps.sh"
        );
        let host = format!("127.66.{}.11", std::process::id() % 200 + 1);
        let mut child = Command::new(&python)
            .arg(root().join("tests/support/fakepve_launcher.py"))
            .args([&host, TOKEN_ID, SECRET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fakepve");
        let mut stdout = BufReader::new(child.stdout.take().expect("fakepve's stdout"));
        let stdin = child.stdin.take().expect("fakepve's stdin");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("fakepve's first line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fakepve did not start ({e}): {line:?}"));
        let url = ready["url"].as_str().expect("url");
        let addr = url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("fakepve's url {url}: {e}"));
        let auth = Auth::Header(format!("PVEAPIToken={TOKEN_ID}={SECRET}"));
        let fp = ready["fingerprint"].as_str().expect("fingerprint");
        FakePve {
            child,
            stdin,
            stdout,
            client: Client::pinned_at(addr, fp, auth),
        }
    }

    /// One launcher command; panics unless it answers without an error.
    fn command(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to fakepve's launcher");
        self.stdin.flush().expect("flush fakepve's launcher");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("fakepve's launcher answers");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert!(v.get("error").is_none() && !v.is_null(), "{cmd}: {line}");
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a peer is, for the steps that reach it by its own means.
pub enum Peer<'a> {
    Sim(&'a SimHandle),
    Fake(&'a mut FakePve),
}

/// One peer's progress through the sequence: the last UPID it answered.
pub struct Run<'a> {
    c: &'a Client,
    peer: Peer<'a>,
    upid: Option<String>,
}

impl<'a> Run<'a> {
    pub fn new(c: &'a Client, peer: Peer<'a>) -> Run<'a> {
        Run {
            c,
            peer,
            upid: None,
        }
    }

    async fn call(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Resp {
        let path = path.replace("{node}", NODE);
        match method {
            "GET" => self.c.get(&path).await,
            "PUT" => self.c.put(&path, params).await,
            // PVE reads a DELETE's parameters from the query string.
            "DELETE" if params.is_empty() => self.c.delete(&path).await,
            "DELETE" => self.c.delete(&format!("{path}?{}", form(params))).await,
            "UPLOAD" => {
                let (ctype, body) = multipart(params);
                self.c.request("POST", &path, Some((&ctype, body))).await
            }
            _ => {
                let body = Some(("application/x-www-form-urlencoded", form(params)));
                self.c.request(method, &path, body).await
            }
        }
    }

    fn no_task() -> Resp {
        Resp {
            status: 0,
            reason: "no task".into(),
            body: Value::Null,
        }
    }

    pub async fn step(&mut self, s: &Step) -> Resp {
        match &s.act {
            Act::Call {
                method,
                path,
                params,
            } => {
                let r = self.call(method, path, params).await;
                if std::env::var_os("FID_DEBUG").is_some() {
                    eprintln!("FID {} {path}: {:?}", s.name, r);
                }
                self.upid = r
                    .data()
                    .as_str()
                    .filter(|u| u.starts_with("UPID:"))
                    .map(str::to_string);
                r
            }
            Act::Task => {
                // No task was started: compared as such.
                let Some(upid) = self.upid.clone() else {
                    return Self::no_task();
                };
                let st = self.c.wait_task(NODE, &upid, WAIT).await;
                let path = format!("/nodes/{NODE}/tasks/{}/status", encode(&upid));
                let mut r = self.c.get(&path).await;
                r.body = json!({ "data": st });
                r
            }
            Act::TaskLog => {
                let Some(upid) = self.upid.clone() else {
                    return Self::no_task();
                };
                let path = format!("/nodes/{NODE}/tasks/{}/log", encode(&upid));
                self.c.get(&path).await
            }
            Act::BadToken { path } => {
                let bad = Auth::Header(format!("PVEAPIToken={TOKEN_ID}=wrong"));
                self.c
                    .with_auth(bad)
                    .get(&path.replace("{node}", NODE))
                    .await
            }
            Act::Prepare { sim, fake } => {
                let side = match self.peer {
                    Peer::Sim(_) => sim,
                    Peer::Fake(_) => fake,
                };
                match (side, &mut self.peer) {
                    (None, _) => {}
                    (Some(Side::Fault(f)), Peer::Sim(h)) => {
                        let fault: Fault = serde_json::from_str(f).expect("a fault's JSON");
                        h.inject(fault);
                    }
                    (Some(Side::Launcher(cmd)), Peer::Fake(f)) => f.command(cmd),
                    (
                        Some(Side::Call {
                            method,
                            path,
                            params,
                        }),
                        _,
                    ) => return self.call(method, path, params).await,
                    _ => panic!("{}: a side step for the other peer", s.name),
                }
                Resp {
                    status: 200,
                    reason: "OK".into(),
                    body: Value::Null,
                }
            }
        }
    }
}

/// A `multipart/form-data` body as PVE's upload takes it: the other fields, then the file
/// (`filename`) with a few bytes.
fn multipart(params: &[(&str, &str)]) -> (String, String) {
    const B: &str = "fidelityboundary7d2c";
    let mut body = String::new();
    let mut file = "upload.bin";
    for (k, v) in params {
        if *k == "filename" {
            file = v;
            continue;
        }
        body.push_str(&format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{file}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nfidelity test file\r\n--{B}--\r\n"
    ));
    (format!("multipart/form-data; boundary={B}"), body)
}
