//! `GET /config/{identity}`: what a `pve` node in pull mode fetches for its own setup as a PVE
//! host. Authenticated as its spec is (each posture), served only to the `--pve-node`s, and
//! scoped: the site-config files its driver reads and the tokens of the nodes below it,
//! never another node's token, a host's API token or the signing key.

use serde_json::{json, Value};

use super::{Daemon, Site, API_SECRET, HV_TOKEN, SIGNING_KEY, SITE_TOKEN, WEB1_TOKEN, WEB2_TOKEN};

#[test]
fn config_is_served_to_pve_nodes_per_posture_with_only_their_subtrees_tokens() {
    let site = Site::new();
    let mut d = Daemon::start(
        site.path(),
        &[
            // hv (node_token posture) holds web1 (node token) and st (site token); lab
            // (network) holds web2.
            "--pve-node",
            "hv=locked",
            "--pve-node",
            "lab=open",
            "--node",
            "web1=locked",
            "--node",
            "web2=locked",
            "--node",
            "st=staged",
            "--below",
            "hv=web1",
            "--below",
            "hv=st",
            "--below",
            "lab=web2",
        ],
    );
    assert_eq!(d.listening["configs"], json!(["hv", "lab"]));
    let listed: Value = serde_json::from_str(&d.get("/specs", None).1).unwrap();
    assert_eq!(listed["configs"], json!(["hv", "lab"]));

    // node_token: only hv's own token opens its config.
    assert_eq!(d.get("/config/hv", None), (401, "unauthorized\n".into()));
    for wrong in [SITE_TOKEN, WEB1_TOKEN, "nope"] {
        assert_eq!(
            d.get("/config/hv", Some(wrong)),
            (403, "forbidden\n".into())
        );
    }
    let (code, body) = d.get("/config/hv", Some(HV_TOKEN));
    assert_eq!(code, 200, "{body}");
    let hv: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hv["identity"], "hv");
    assert_eq!(hv["site"]["timezone"], "Europe/Oslo");
    let files: Vec<&str> = hv["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in [
        "site.yaml",
        "postures/prod.yaml",
        "specs/locked.yaml",
        "specs/open.yaml",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    assert!(files.iter().all(|f| !f.contains("secrets")), "{files:?}");
    // Its subtree's tokens, exactly: web1's node token and the site token st's posture wants.
    assert_eq!(
        hv["secrets"],
        json!({"auth": {"site_token": SITE_TOKEN, "node_tokens": {"web1": WEB1_TOKEN}}})
    );
    for absent in [
        WEB2_TOKEN,
        HV_TOKEN,
        SIGNING_KEY,
        API_SECRET,
        "api_tokens",
        "signing_key",
    ] {
        assert!(!body.contains(absent), "{absent} in hv's config: {body}");
    }

    // network: no token needed; lab gets web2's token and nothing else.
    let (code, body) = d.get("/config/lab", None);
    assert_eq!(code, 200, "{body}");
    let lab: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        lab["secrets"],
        json!({"auth": {"node_tokens": {"web2": WEB2_TOKEN}}})
    );
    for absent in [WEB1_TOKEN, SITE_TOKEN, HV_TOKEN, SIGNING_KEY, API_SECRET] {
        assert!(!body.contains(absent), "{absent} in lab's config: {body}");
    }

    // Only pve nodes have a config, whatever the token; its spec is served as ever.
    assert_eq!(d.get("/config/web1", Some(WEB1_TOKEN)).0, 404);
    assert_eq!(d.get("/config/open", None).0, 404);
    assert_eq!(d.get("/config/nosuch", None), (404, "not found\n".into()));
    assert_eq!(d.get("/config/..", None).0, 400);
    let (code, spec) = d.get("/spec/hv", Some(HV_TOKEN));
    assert_eq!(code, 200, "{spec}");
    assert!(spec.contains("postgresql"), "{spec}");

    // A reload serves the new site-config (and its tokens) to the same grants.
    let secrets = site.path().join("secrets.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    std::fs::write(&secrets, text.replace(WEB2_TOKEN, "node-tok-web2-rotated")).unwrap();
    d.signal("HUP");
    d.wait_event("reloaded");
    let lab: Value = serde_json::from_str(&d.get("/config/lab", None).1).unwrap();
    assert_eq!(
        lab["secrets"]["auth"]["node_tokens"]["web2"],
        "node-tok-web2-rotated"
    );

    let log = d.stderr();
    assert!(
        log.contains("/config/hv") && log.contains("status=403"),
        "{log}"
    );
    for t in [SITE_TOKEN, WEB1_TOKEN, WEB2_TOKEN, HV_TOKEN, "nope"] {
        assert!(!log.contains(t), "a token in the log:\n{log}");
    }
}

#[test]
fn below_must_name_a_pve_node_and_a_node_with_a_spec() {
    let site = Site::new();
    for (args, says) in [
        (
            &["--node", "web1=locked", "--below", "hv=web1"][..],
            "'hv' is no --pve-node",
        ),
        (
            &["--pve-node", "hv=locked", "--below", "hv=web9"][..],
            "'web9' is no --node or --pve-node",
        ),
    ] {
        let out = std::process::Command::new(crate::common::BIN)
            .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(args)
            .env("HOMESTAK_SITE_CONFIG", site.path())
            .output()
            .unwrap();
        let out = crate::common::Run::from(out).code(2);
        assert!(
            crate::common::flat(&out.stderr).contains(says),
            "{}",
            out.stderr
        );
    }
}
