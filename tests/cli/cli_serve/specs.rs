//! `/health`, `/specs` and `/spec/{identity}` with each posture's authentication.

use std::process::{Command, Stdio};

use super::{need, Daemon, Site, SITE_TOKEN, WEB1_TOKEN, WEB2_TOKEN};

#[test]
fn serve_answers_health_specs_and_authenticates_each_posture() {
    let site = Site::new();
    let d = Daemon::start(
        site.path(),
        &["--node", "web1=locked", "--node", "web2=locked"],
    );

    assert_eq!(d.get("/health", None).0, 200);
    let (code, body) = d.get("/specs", None);
    assert_eq!(code, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed["specs"],
        serde_json::json!(["locked", "open", "staged"])
    );
    assert_eq!(listed["nodes"], serde_json::json!(["web1", "web2"]));
    assert!(
        !body.contains("postgresql"),
        "/specs gives names only: {body}"
    );

    // network: no token needed; the spec comes resolved (site + posture + spec + keys).
    let (code, body) = d.get("/spec/open", None);
    assert_eq!(code, 200, "{body}");
    let spec: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        spec["platform"]["packages"],
        serde_json::json!(["htop", "curl"])
    );
    assert_eq!(spec["config"]["timezone"], "Europe/Oslo");
    assert_eq!(
        spec["access"]["users"][0]["ssh_keys"],
        serde_json::json!(["ssh-ed25519 AAAAtestkey ops@example"])
    );

    // site_token: missing 401, wrong 403, a node token 403, the site token 200.
    assert_eq!(d.get("/spec/staged", None), (401, "unauthorized\n".into()));
    assert_eq!(
        d.get("/spec/staged", Some("nope")),
        (403, "forbidden\n".into())
    );
    assert_eq!(d.get("/spec/staged", Some(WEB1_TOKEN)).0, 403);
    assert_eq!(
        d.get("/spec/staged", Some(&SITE_TOKEN[..SITE_TOKEN.len() - 1]))
            .0,
        403
    );
    let (code, body) = d.get("/spec/staged", Some(SITE_TOKEN));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("nginx"));

    // node_token: each node only with its own token.
    assert_eq!(d.get("/spec/web1", None).0, 401);
    assert_eq!(d.get("/spec/web1", Some(SITE_TOKEN)).0, 403);
    assert_eq!(d.get("/spec/web1", Some(WEB2_TOKEN)).0, 403);
    let (code, body) = d.get("/spec/web1", Some(WEB1_TOKEN));
    assert_eq!(code, 200, "{body}");
    let spec: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(spec["identity"]["name"], "web1");
    assert_eq!(spec["spec"], "locked");
    assert_eq!(d.get("/spec/web2", Some(WEB2_TOKEN)).0, 200);
    // `locked` as an identity of its own has no node token in the secrets: nothing opens it.
    assert_eq!(d.get("/spec/locked", Some(WEB1_TOKEN)).0, 500);

    assert_eq!(d.get("/spec/nosuch", None), (404, "not found\n".into()));
    assert_eq!(d.get("/spec/..", None).0, 400);
    assert_eq!(d.get("/nowhere", None).0, 404);
    assert_eq!(super::curl(&d.url, "/health", None, &["-X", "POST"]).0, 405);

    // No secret ever reaches a body or the log; the access log is there.
    for (_, body) in [
        d.get("/spec/open", None),
        d.get("/spec/web1", Some(WEB1_TOKEN)),
    ] {
        for t in [SITE_TOKEN, WEB1_TOKEN, WEB2_TOKEN] {
            assert!(!body.contains(t), "a token in a spec body: {body}");
        }
    }
    let log = d.stderr();
    assert!(
        log.contains("/spec/web1") && log.contains("status=403"),
        "{log}"
    );
    for t in [SITE_TOKEN, WEB1_TOKEN, WEB2_TOKEN, "nope"] {
        assert!(!log.contains(t), "a token in the log:\n{log}");
    }
}

#[test]
fn serve_prints_the_fingerprint_of_the_certificate_it_serves() {
    need("openssl", "apt-get install openssl");
    let site = Site::new();
    let d = Daemon::start(site.path(), &[]);
    assert_eq!(d.listening["cert"], "self-signed");
    let addr = d.url.trim_start_matches("https://");
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect", addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pem = s_client.stdout.take().unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(pem)
        .output()
        .unwrap();
    let _ = s_client.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let served = text.trim().rsplit('=').next().unwrap_or_default();
    assert_eq!(
        served,
        d.listening["fingerprint"].as_str().unwrap(),
        "{text}"
    );
}
