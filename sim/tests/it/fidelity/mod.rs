//! The differential test: the same request sequence ([`sequence`]) against pvesim and
//! fakepve (PyPI, an independent fake of the PVE 9 API built from its schema), each answer
//! reduced to what a client can tell ([`shape`]). Every difference must be listed in
//! `sim/tests/fidelity/known-differences.json` with the side PVE agrees with and why (read
//! in Proxmox's source); the test fails when a new difference appears or a listed one
//! changes or goes away. `sim/FIDELITY.md` carries the counts, checked here too.
//!
//! `FIDELITY_WRITE=1` rewrites the list from what was seen (keeping the verdicts of the
//! entries that stay), for a human to fill in the new verdicts.

mod sequence;
mod shape;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sim::SimConfig;

use crate::common::{encode, form, start, Auth, Client, Resp};
use sequence::{Act, Step};
use shape::{diff, flatten, Difference};

const NODE: &str = "pve1";
const TOKEN_ID: &str = "root@pam!driver";
const SECRET: &str = "7f3c9a2e-2222-4333-8444-a55566667777";
const WAIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// fakepve through the project's launcher; killed when dropped.
struct FakePve {
    child: Child,
    client: Client,
}

impl FakePve {
    fn start() -> FakePve {
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
        let mut line = String::new();
        let stdout = child.stdout.take().expect("fakepve's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fakepve's first line");
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
            client: Client::pinned_at(addr, fp, auth),
        }
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One peer's progress through the sequence: the last UPID it answered.
struct Run<'a> {
    c: &'a Client,
    upid: Option<String>,
}

impl Run<'_> {
    async fn step(&mut self, s: &Step) -> Resp {
        match &s.act {
            Act::Call {
                method,
                path,
                params,
            } => {
                let path = path.replace("{node}", NODE);
                let r = match *method {
                    "GET" => self.c.get(&path).await,
                    "DELETE" => self.c.delete(&path).await,
                    "PUT" => self.c.put(&path, params).await,
                    _ => {
                        let body = Some(("application/x-www-form-urlencoded", form(params)));
                        self.c.request(method, &path, body).await
                    }
                };
                self.upid = r
                    .data()
                    .as_str()
                    .filter(|u| u.starts_with("UPID:"))
                    .map(str::to_string);
                r
            }
            Act::Task => {
                let Some(upid) = self.upid.take() else {
                    // No task was started: compared as such.
                    return Resp {
                        status: 0,
                        reason: "no task".into(),
                        body: Value::Null,
                    };
                };
                let st = self.c.wait_task(NODE, &upid, WAIT).await;
                let path = format!("/nodes/{NODE}/tasks/{}/status", encode(&upid));
                let mut r = self.c.get(&path).await;
                r.body = json!({ "data": st });
                r
            }
            Act::BadToken { path } => {
                let bad = Auth::Header(format!("PVEAPIToken={TOKEN_ID}=wrong"));
                self.c
                    .with_auth(bad)
                    .get(&path.replace("{node}", NODE))
                    .await
            }
        }
    }
}

fn known_path() -> PathBuf {
    root().join("sim/tests/fidelity/known-differences.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvesim_answers_like_fakepve_but_for_the_known_differences() {
    let fake = FakePve::start();
    let (h, sim) = start(SimConfig {
        node_name: NODE.into(),
        ..crate::common::config()
    })
    .await;
    let (mut a, mut b) = (
        Run {
            c: &sim,
            upid: None,
        },
        Run {
            c: &fake.client,
            upid: None,
        },
    );
    let (mut found, mut agree, mut compared, mut members) = (Vec::new(), 0, 0, 0);
    for s in sequence::steps() {
        let (ra, rb) = (a.step(&s).await, b.step(&s).await);
        if s.setup {
            assert_eq!(
                (ra.status, rb.status),
                (200, 200),
                "{}: {ra:?} {rb:?}",
                s.name
            );
            continue;
        }
        let pick = s.pick.as_ref().map(|(k, v)| (*k, v));
        let fa = flatten(ra.status, &ra.reason, &ra.body, pick, s.keep);
        let fb = flatten(rb.status, &rb.reason, &rb.body, pick, s.keep);
        let (d, same) = diff(s.name, &fa, &fb);
        compared += 1;
        members += same + d.len();
        if d.is_empty() {
            agree += 1;
        }
        found.extend(d);
    }
    h.shutdown().await;
    check_known(&found);
    let line = format!(
        "| {compared} | {agree} | {} | {members} | {} |",
        compared - agree,
        found.len()
    );
    let doc = std::fs::read_to_string(root().join("sim/FIDELITY.md")).unwrap_or_default();
    assert!(
        doc.contains(&line),
        "sim/FIDELITY.md should carry the counts row {line}"
    );
}

/// Compares what was found with the list; `FIDELITY_WRITE=1` rewrites the list instead.
fn check_known(found: &[Difference]) {
    let text = std::fs::read_to_string(known_path()).unwrap_or_else(|_| "[]".into());
    let known: Vec<Value> = serde_json::from_str(&text).expect("known-differences.json");
    let key = |v: &Value| {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        (s("step"), s("path"), s("pvesim"), s("fakepve"))
    };
    let as_key = |d: &Difference| {
        (
            Some(d.step.clone()),
            Some(d.path.clone()),
            d.pvesim.clone(),
            d.fakepve.clone(),
        )
    };
    if std::env::var_os("FIDELITY_WRITE").is_some() {
        let out: Vec<Value> = found
            .iter()
            .map(|d| {
                let old = known.iter().find(|k| key(k) == as_key(d));
                json!({
                    "step": d.step, "path": d.path, "pvesim": d.pvesim, "fakepve": d.fakepve,
                    "pve": old.map_or(json!("unknown"), |o| o["pve"].clone()),
                    "why": old.map_or(json!(""), |o| o["why"].clone()),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&out).expect("json") + "\n";
        std::fs::write(known_path(), text).expect("write known-differences.json");
        return;
    }
    let new: Vec<&Difference> = found
        .iter()
        .filter(|d| !known.iter().any(|k| key(k) == as_key(d)))
        .collect();
    let gone: Vec<&Value> = known
        .iter()
        .filter(|k| !found.iter().any(|d| key(k) == as_key(d)))
        .collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "pvesim and fakepve differ in ways not listed in {}:\n{new:#?}\nlisted but not seen (changed or gone):\n{gone:#?}",
        known_path().display()
    );
}
