//! Site-config loading against the built-in example.

use super::*;
use crate::catalog;
use crate::manifest::{self, Source};

#[test]
fn builtin_example_loads_and_lists() {
    let site = SiteConfig::builtin();
    assert!(site.is_builtin());
    assert_eq!(
        site.names(Entity::Preset),
        [
            "vm-large",
            "vm-medium",
            "vm-small",
            "vm-xlarge",
            "vm-xsmall"
        ]
    );
    assert_eq!(
        site.names(Entity::Posture),
        ["dev", "local", "prod", "stage"]
    );
    assert_eq!(site.names(Entity::Spec), ["base", "pve"]);
    assert_eq!(
        site.host_names(),
        ["sim", "sim-bare", "sim-cluster", "srv1"]
    );
    assert_eq!(site.default_str("bridge"), Some("vmbr0"));
}

#[test]
fn builtin_secrets_open_with_the_test_key_only() {
    let site = SiteConfig::builtin();
    let none = IdentityEnv::default();
    let ids = site.identities(&none).unwrap();
    let secrets = site.secrets(&ids).unwrap().expect("example has secrets");
    assert!(
        secrets.encrypted,
        "the example's secrets.yaml is sops-encrypted"
    );
    assert!(secrets.get(&["api_tokens", "sim"]).is_some());
    let host = site.host("sim", Some(&secrets)).unwrap();
    assert!(host.simulated && !host.is_host_only);
    assert_eq!(host.api_endpoint.as_deref(), Some("https://127.0.0.1:8006"));
    assert_eq!(host.datastore.as_deref(), Some("local-lvm"));
    assert!(host.api_token.is_some());
    // On disk the example is not special: no test key is added.
    let disk = SiteConfig::at(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-config-example"),
    )
    .unwrap();
    let e = disk.secrets(&disk.identities(&none).unwrap()).unwrap_err();
    assert!(e.to_string().contains("no age identity"), "{e}");
}

#[test]
fn builtin_manifests_reference_only_what_the_example_has() {
    let site = SiteConfig::builtin();
    for (name, text) in catalog::BUILTIN {
        let loaded = manifest::load(Source::new(format!("builtin:{name}"), *text)).unwrap();
        let problems = refs::check_references(&loaded, &site);
        assert!(
            problems.is_empty(),
            "{name}: {:?}",
            problems
                .shown()
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn unknown_references_point_at_the_field_and_name_the_file() {
    let site = SiteConfig::builtin();
    let src = "schema_version: 2\nname: t\nnodes:\n  - name: a\n    type: vm\n    preset: vm-smal\n    spec: nope\n    image: debian-12\n";
    let loaded = manifest::load(Source::new("t.yaml", src)).unwrap();
    let problems = refs::check_references(&loaded, &site);
    assert_eq!(problems.len(), 2);
    let problems = problems.shown();
    let p = &problems[0];
    assert!(
        p.message.contains("unknown preset 'vm-smal'"),
        "{}",
        p.message
    );
    assert!(p.message.contains("presets/vm-smal.yaml"), "{}", p.message);
    assert_eq!((p.line, p.column), (Some(6), Some(13)));
    assert!(p
        .help
        .as_deref()
        .unwrap_or("")
        .contains("did you mean 'vm-small'"));
    assert!(problems[1].message.contains("specs/nope.yaml"));
}

#[test]
fn names_cannot_escape_the_folder() {
    let site = SiteConfig::builtin();
    assert!(matches!(
        site.find(Entity::Preset, "../secrets"),
        Err(ConfigError::BadName { .. })
    ));
}

#[test]
fn check_files_finds_broken_files_with_their_place() {
    assert!(
        SiteConfig::builtin().check_files().is_empty(),
        "the built-in example has no broken file"
    );
    let t = tempfile::tempdir().unwrap();
    for (rel, text) in [
        ("presets/ok.yaml", "cores: 1\n"),
        ("presets/bad.yaml", "cores: 1\nmemory: [1\n"),
        ("postures/odd.yaml", "auth:\n  method: magic\n"),
        ("images/odd.yaml", "file: a.qcow2\nchecksum: abc\n"),
    ] {
        let path = t.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let site = SiteConfig::at(t.path()).unwrap();
    let problems: Vec<String> = site.check_files().iter().map(|e| e.to_string()).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown key 'checksum'")),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("presets/bad.yaml:3:1: YAML syntax error"),
        "{problems:?}"
    );
    assert!(problems[1].contains("auth.method 'magic'"), "{problems:?}");
}

#[test]
fn host_names_that_are_paths_are_refused_with_the_known_hosts() {
    let site = SiteConfig::builtin();
    for bad in ["", "/etc/passwd", "../nodes/sim"] {
        let e = site.host(bad, None).unwrap_err();
        assert!(matches!(e, ConfigError::BadName { .. }), "{bad:?}: {e}");
        assert_eq!(
            e.help().as_deref(),
            Some("available: sim, sim-bare, sim-cluster, srv1"),
            "{bad:?}"
        );
    }
}

#[test]
fn action_timeouts_are_typed_and_unknown_actions_refused() {
    let site_with = |defaults: &str| {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("site.yaml"), format!("defaults:\n{defaults}")).unwrap();
        let site = SiteConfig::at(t.path()).unwrap();
        (t, site)
    };
    let (_t, site) = site_with("  timeouts: {wait_ip: 600, provision: 0}\n");
    let got = site.action_timeouts().unwrap();
    assert_eq!(got[&crate::plan::Action::WaitIp].as_secs(), 600);
    assert_eq!(
        got[&crate::plan::Action::Provision].as_secs(),
        1,
        "at least a second"
    );
    let (_t, site) = site_with("  timeouts: {wait_ipp: 600}\n");
    let e = site.action_timeouts().unwrap_err().to_string();
    assert!(
        e.contains("unknown action 'wait_ipp'") && e.contains("wait_ip,"),
        "{e}"
    );
    let (_t, site) = site_with("  timeouts: {wait_ip: soon}\n");
    assert!(site
        .action_timeouts()
        .unwrap_err()
        .to_string()
        .contains("number of seconds"));
    let (_t, site) = site_with("  timeouts: 600\n");
    assert!(
        site.action_timeouts().is_err(),
        "a number where a map belongs is refused"
    );
}

#[test]
fn simulated_bare_and_bad_simulated_values() {
    let site = SiteConfig::builtin();
    let bare = site.host("sim-bare", None).unwrap();
    assert!(bare.simulated && bare.simulated_bare);
    assert_eq!(bare.images_mirror, Some(super::ImagesMirror::Sim));
    let seeded = site.host("sim", None).unwrap();
    assert!(seeded.simulated && !seeded.simulated_bare);
    assert_eq!(seeded.images_mirror, None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nodes")).unwrap();
    std::fs::write(dir.path().join("nodes/x.yaml"), "simulated: maybe\n").unwrap();
    let site = SiteConfig::at(dir.path()).unwrap();
    let e = site.host("x", None).unwrap_err().to_string();
    assert!(e.contains("simulated: must be true"), "{e}");
    for (file, says) in [
        (
            "simulated: true\nimages_mirror: sim\n",
            "needs `simulated: bare`",
        ),
        (
            "api_endpoint: https://10.0.0.5:8006\nimages_mirror: sim\n",
            "this host is not simulated: remove it",
        ),
        (
            "simulated: bare\nimages_mirror: github\n",
            "the only value is `sim`",
        ),
    ] {
        std::fs::write(dir.path().join("nodes/x.yaml"), file).unwrap();
        let site = SiteConfig::at(dir.path()).unwrap();
        let e = site.host("x", None).unwrap_err().to_string();
        assert!(e.contains(says), "{file}: {e}");
    }
}

#[test]
fn simulated_clusters_and_bad_simulated_maps() {
    let site = SiteConfig::builtin();
    let cluster = site.host("sim-cluster", None).unwrap();
    assert!(cluster.simulated && !cluster.simulated_bare);
    assert_eq!(cluster.simulated_cluster_nodes, 3);
    assert_eq!(cluster.node_name, "pve");
    assert_eq!(site.host("sim", None).unwrap().simulated_cluster_nodes, 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nodes")).unwrap();
    let host = |text: &str| {
        std::fs::write(dir.path().join("nodes/x.yaml"), text).unwrap();
        SiteConfig::at(dir.path()).unwrap().host("x", None)
    };
    let bare = host("simulated: {cluster_nodes: 2, bare: true}\nimages_mirror: sim\n").unwrap();
    assert!(bare.simulated && bare.simulated_bare);
    assert_eq!(bare.simulated_cluster_nodes, 2);
    assert_eq!(bare.images_mirror, Some(super::ImagesMirror::Sim));
    let plain = host("simulated: {}\n").unwrap();
    assert!(plain.simulated && !plain.simulated_bare);
    assert_eq!(plain.simulated_cluster_nodes, 1);
    for (file, says) in [
        ("simulated: {cluster_nodes: 0}\n", "from 1 to 16"),
        ("simulated: {cluster_nodes: 17}\n", "from 1 to 16"),
        ("simulated: {cluster_nodes: three}\n", "from 1 to 16"),
        ("simulated: {bare: yes please}\n", "bare: must be true"),
        (
            "simulated: {cluster_node: 3}\n",
            "unknown key 'cluster_node' (did you mean 'cluster_nodes'?",
        ),
        ("simulated: [3]\n", "a map such as {cluster_nodes: 3"),
        (
            "simulated: {cluster_nodes: 3}\nimages_mirror: sim\n",
            "needs `simulated: bare` (or `bare: true`",
        ),
    ] {
        let e = host(file).unwrap_err().to_string();
        assert!(e.contains(says), "{file}: {e}");
    }
}
