//! The differential test: the same request sequence ([`sequence`]) against pvesim and
//! fakepve (PyPI, an independent fake of the PVE 9 API built from its schema), each answer
//! reduced to what a client can tell ([`shape`]). Every difference must be listed in
//! `sim/tests/fidelity/known-differences.json` with the side PVE agrees with and why (read
//! in Proxmox's source); the test fails when a new difference appears or a listed one
//! changes or goes away. `sim/FIDELITY.md` carries the counts, checked here too.
//!
//! `FIDELITY_WRITE=1` rewrites the list from what was seen (keeping the verdicts of the
//! entries that stay), for a human to fill in the new verdicts.

mod peers;
mod sequence;
mod shape;
mod steps_errors;
mod steps_lxc;
mod steps_misc;
mod steps_qemu;

use std::path::PathBuf;

use serde_json::{json, Value};
use sim::SimConfig;

use crate::common::start;
use peers::{FakePve, Peer, Run, NODE};
use shape::{diff, flatten, Difference};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn known_path() -> PathBuf {
    root().join("sim/tests/fidelity/known-differences.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvesim_answers_like_fakepve_but_for_the_known_differences() {
    let mut fake = FakePve::start();
    let (h, sim) = start(SimConfig {
        node_name: NODE.into(),
        ..crate::common::config()
    })
    .await;
    let fake_client = fake.client.clone();
    let (mut a, mut b) = (
        Run::new(&sim, Peer::Sim(&h)),
        Run::new(&fake_client, Peer::Fake(&mut fake)),
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
