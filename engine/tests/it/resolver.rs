//! ConfigResolver and host resolution on the reference site-config copy
//! (tests/fixtures/site-config): the tfvars and ansible vars have exactly the
//! keys of the seed's "Output Structure" blocks, with the values the
//! resolution order gives.

use std::collections::BTreeSet;
use std::path::PathBuf;

use engine::manifest::{self, Source};
use engine::secrets::Identities;
use engine::site_config::resolve::{Resolver, Reveal};
use engine::site_config::{ConfigError, SiteConfig, SiteSecrets};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/site-config")
}

fn site() -> (SiteConfig, SiteSecrets) {
    let site = SiteConfig::at(&fixture()).unwrap();
    let secrets = site
        .secrets(&Identities::default())
        .unwrap()
        .expect("fixture has a plain secrets.yaml");
    assert!(!secrets.encrypted);
    (site, secrets)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// The seed's "Output Structure (Tofu)" keys.
const TOFU_KEYS: [&str; 9] = [
    "node",
    "api_endpoint",
    "api_token",
    "ssh_user",
    "datastore",
    "root_password",
    "ssh_keys",
    "spec_server",
    "vms",
];
const VM_KEYS: [&str; 8] = [
    "name",
    "vmid",
    "image",
    "cores",
    "memory",
    "disk",
    "bridge",
    "auth_token",
];
/// The seed's "Output Structure (Ansible)" keys.
const ANSIBLE_KEYS: [&str; 11] = [
    "timezone",
    "pve_remove_subscription_nag",
    "packages",
    "ssh_port",
    "ssh_permit_root_login",
    "ssh_password_authentication",
    "sudo_nopasswd",
    "fail2ban_enabled",
    "env_name",
    "posture_name",
    "ssh_authorized_keys",
];

#[test]
fn tfvars_match_the_seed_structure_field_for_field() {
    let (site, secrets) = site();
    let tf = Resolver::new(&site, Some(&secrets))
        .resolve_env("test", "pve")
        .unwrap();
    let v: Value = serde_json::from_str(&tf.to_json(Reveal::Yes)).unwrap();
    assert_eq!(keys(&v), set(&TOFU_KEYS));
    assert_eq!(keys(&v["vms"][0]), set(&VM_KEYS));
    // The seed's example, with this fixture's secrets.
    assert_eq!(
        v,
        json!({
            "node": "pve",
            "api_endpoint": "https://localhost:8006",
            "api_token": "root@pam!tofu=0f3c9a52-6d1b-4e8a-b7c2-91d4e5f60a7b",
            "ssh_user": "root",
            "datastore": "local-zfs",
            "root_password": "$6$fixturesalt$fixturehashvalue0123456789",
            "ssh_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyOne me@laptop",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyTwo ci@runner"
            ],
            "spec_server": "",
            "vms": [{
                "name": "test",
                "vmid": 99900,
                "image": "debian-12",
                "cores": 1,
                "memory": 2048,
                "disk": 20,
                "bridge": "vmbr0",
                "auth_token": ""
            }]
        })
    );
    // Redacted for people: same keys, no secret.
    let r: Value = serde_json::from_str(&tf.to_json(Reveal::No)).unwrap();
    assert_eq!(keys(&r), set(&TOFU_KEYS));
    assert_eq!(r["api_token"], "[redacted]");
    assert_eq!(r["root_password"], "[redacted]");
}

#[test]
fn ansible_vars_match_the_seed_structure_field_for_field() {
    let (site, secrets) = site();
    let a = Resolver::new(&site, Some(&secrets))
        .resolve_ansible_vars("dev")
        .unwrap();
    let v: Value = serde_json::from_str(&a.to_json()).unwrap();
    assert_eq!(keys(&v), set(&ANSIBLE_KEYS));
    assert_eq!(
        v,
        json!({
            "timezone": "America/Denver",
            "pve_remove_subscription_nag": true,
            // site.yaml's packages, then the dev posture's, without duplicates.
            "packages": ["htop", "curl", "wget", "git", "vim", "tmux", "tree", "jq", "rsync",
                         "net-tools", "strace", "tcpdump"],
            "ssh_port": 22,
            "ssh_permit_root_login": "yes",
            "ssh_password_authentication": "yes",
            "sudo_nopasswd": true,
            "fail2ban_enabled": false,
            "env_name": "dev",
            "posture_name": "dev",
            "ssh_authorized_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyOne me@laptop",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyTwo ci@runner"
            ]
        })
    );
    let prod = Resolver::new(&site, Some(&secrets))
        .resolve_ansible_vars("prod")
        .unwrap();
    assert_eq!(prod.ssh_permit_root_login, "no");
    assert!(prod.fail2ban_enabled && !prod.sudo_nopasswd);
    assert_eq!(prod.posture_name, "prod");
}

#[test]
fn vmid_allocation_and_merge_order() {
    let (site, secrets) = site();
    let r = Resolver::new(&site, Some(&secrets));
    let dev = r.resolve_env("dev", "father").unwrap();
    let vm = |n: &str| dev.vms.iter().find(|v| v.name == n).unwrap();
    // vmid_base + index, unless the VM sets its own.
    assert_eq!(vm("test").vmid, Some(99900));
    assert_eq!(vm("second").vmid, Some(99901));
    assert_eq!(vm("inner").vmid, Some(99913));
    // preset -> template -> instance.
    assert_eq!(
        (vm("inner").cores, vm("inner").memory, vm("inner").disk),
        (4, 2048, 20)
    );
    assert_eq!((vm("second").cores, vm("second").memory), (2, 4096));
    // site.yaml -> nodes/father.yaml: the node's bridge and ssh user win.
    assert_eq!(vm("test").bridge, "vmbr1");
    assert_eq!(dev.ssh_user, "admin");
    // A static ip keeps its address; no gateway is invented (site gateway is empty).
    assert_eq!(vm("inner").ip.as_deref(), Some("198.51.100.124/24"));
    assert_eq!(vm("inner").gateway, None);
    let v: Value = serde_json::from_str(&dev.to_json(Reveal::No)).unwrap();
    assert_eq!(keys(&v["vms"][0]), set(&VM_KEYS));

    // No vmid_base: PVE chooses (null in the tfvars).
    let stage = r.resolve_env("stage", "pve").unwrap();
    assert_eq!(stage.vms[0].vmid, None);
    let v: Value = serde_json::from_str(&stage.to_json(Reveal::Yes)).unwrap();
    assert_eq!(v["vms"][0]["vmid"], Value::Null);
}

#[test]
fn api_token_is_a_key_into_secrets() {
    let (site, secrets) = site();
    let h = site.host("father", Some(&secrets)).unwrap();
    assert_eq!(h.api_token_key.as_deref(), Some("father-tofu"));
    assert_eq!(
        h.api_token.as_ref().map(|t| t.expose().as_str()),
        Some("root@pam!tofu=7a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b")
    );
    // Debug output never shows it.
    assert!(!format!("{h:?}").contains("7a1e2b3c"));
    let e = site.host("broken-token", Some(&secrets)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ConfigError::MissingSecret { .. })
            && msg.contains("api_tokens.no-such-token")
            && msg.contains("broken-token.yaml")
            && msg.contains("secrets.yaml"),
        "{msg}"
    );
}

#[test]
fn host_only_hosts_have_no_api_and_nodes_win() {
    let (site, secrets) = site();
    let d = site.host("daughter", Some(&secrets)).unwrap();
    assert!(d.is_host_only);
    assert_eq!(d.api_endpoint, None);
    assert!(d.api_token.is_none() && d.api_token_key.is_none());
    assert_eq!(d.ssh_host.as_deref(), Some("198.51.100.62"));
    assert_eq!((d.ssh_user.as_str(), d.ssh_port), ("operator", 2222));
    assert!(d.file.ends_with("hosts/daughter.yaml"));
    // nodes/father.yaml shadows hosts/father.yaml.
    let f = site.host("father", None).unwrap();
    assert!(!f.is_host_only && f.file.ends_with("nodes/father.yaml"));
    // Nothing to provision on a host-only machine.
    let e = Resolver::new(&site, Some(&secrets))
        .resolve_env("test", "daughter")
        .unwrap_err();
    assert!(matches!(e, ConfigError::HostOnly { .. }), "{e}");
    // An unknown host names both files it looked for.
    let e = site.host("nobody", None).unwrap_err().to_string();
    assert!(
        e.contains("nodes/nobody.yaml") && e.contains("hosts/nobody.yaml"),
        "{e}"
    );
}

#[test]
fn posture_auth_tokens() {
    let (site, secrets) = site();
    let r = Resolver::new(&site, Some(&secrets));
    // dev: network -> empty.
    assert!(r
        .resolve_env("dev", "pve")
        .unwrap()
        .vms
        .iter()
        .all(|v| v.auth_token.is_empty()));
    // stage: site_token -> secrets.auth.site_token.
    let stage = r.resolve_env("stage", "pve").unwrap();
    assert_eq!(stage.vms[0].auth_token.expose(), "fixture-site-token-7d1e");
    // prod: node_token -> secrets.auth.node_tokens.{vm}; web2 has none.
    let e = r.resolve_env("prod", "pve").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("auth.node_tokens.web2") && msg.contains("postures/prod.yaml"),
        "{msg}"
    );
    assert!(!msg.contains("fixture-node-token"), "{msg}");
    // An env naming a posture that does not exist says where it looked.
    let e = r.resolve_env("bad-posture", "pve").unwrap_err().to_string();
    assert!(e.contains("postures/hardened.yaml"), "{e}");
}

#[test]
fn prod_tokens_resolve_per_vm() {
    let (site, _) = site();
    // A secrets tree with both node tokens.
    let text = "auth:\n  node_tokens:\n    web1: t-one\n    web2: t-two\napi_tokens:\n  pve: x\n";
    let secrets =
        engine::site_config::load_secrets_text("inline", text, &Identities::default()).unwrap();
    let prod = Resolver::new(&site, Some(&secrets))
        .resolve_env("prod", "pve")
        .unwrap();
    let tokens: Vec<&str> = prod
        .vms
        .iter()
        .map(|v| v.auth_token.expose().as_str())
        .collect();
    assert_eq!(tokens, ["t-one", "t-two"]);
    assert_eq!(prod.vms[1].vmid, Some(50001));
}

#[test]
fn manifest_nodes_resolve_like_env_vms() {
    let (site, secrets) = site();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reference-manifests/n2-push.yaml"),
    )
    .unwrap();
    let loaded = manifest::load(Source::new("n2-push.yaml", text)).unwrap();
    assert!(engine::site_config::refs::check_references(&loaded, &site).is_empty());
    let nodes: Vec<&_> = loaded.manifest.nodes.iter().collect();
    let tf = Resolver::new(&site, Some(&secrets))
        .resolve_manifest_nodes("pve", &nodes)
        .unwrap();
    let v: Value = serde_json::from_str(&tf.to_json(Reveal::No)).unwrap();
    assert_eq!(keys(&v), set(&TOFU_KEYS));
    assert_eq!(keys(&v["vms"][0]), set(&VM_KEYS));
    // root-pve: vm-large with its disk override; edge: vm-small.
    assert_eq!(
        (
            tf.vms[0].vmid,
            tf.vms[0].cores,
            tf.vms[0].memory,
            tf.vms[0].disk
        ),
        (Some(99011), 4, 8192, 64)
    );
    assert_eq!((tf.vms[1].cores, tf.vms[1].disk), (2, 10));
    assert_eq!(tf.vms[1].image.as_deref(), Some("debian-12"));
}

#[test]
fn unknown_manifest_references_name_the_file() {
    let (site, _) = site();
    let src = "schema_version: 2\nname: t\nnodes:\n  - name: a\n    type: vm\n    preset: vm-huge\n    spec: base\n    image: anything\n";
    let loaded = manifest::load(Source::new("t.yaml", src)).unwrap();
    let problems = engine::site_config::refs::check_references(&loaded, &site);
    // The reference site-config has no images/ folder, so images are not checked.
    assert_eq!(problems.len(), 1);
    let p = &problems.shown()[0];
    assert!(
        p.message.contains("unknown preset 'vm-huge'"),
        "{}",
        p.message
    );
    assert!(
        p.message.contains(&format!(
            "{}",
            fixture().join("presets/vm-huge.yaml").display()
        )),
        "{}",
        p.message
    );
    assert_eq!(p.line, Some(6));
}
