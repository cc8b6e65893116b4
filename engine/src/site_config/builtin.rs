//! The built-in example site-config (`site-config-example/` at the repository
//! root), compiled into the binary: what discovery falls back to when no
//! site-config is on disk, so a fresh clone or a bare binary works.
//! A unit test checks that this list matches the folder.

/// `(path inside the site-config, contents)`.
pub const FILES: &[(&str, &str)] = &[
    (
        ".sops.yaml",
        include_str!("../../../site-config-example/.sops.yaml"),
    ),
    (
        "age-test-key.txt",
        include_str!("../../../site-config-example/age-test-key.txt"),
    ),
    (
        "envs/dev.yaml",
        include_str!("../../../site-config-example/envs/dev.yaml"),
    ),
    (
        "envs/prod.yaml",
        include_str!("../../../site-config-example/envs/prod.yaml"),
    ),
    (
        "hosts/srv1.yaml",
        include_str!("../../../site-config-example/hosts/srv1.yaml"),
    ),
    (
        "images/debian-12.yaml",
        include_str!("../../../site-config-example/images/debian-12.yaml"),
    ),
    (
        "images/debian-13.yaml",
        include_str!("../../../site-config-example/images/debian-13.yaml"),
    ),
    (
        "images/debian-13-pve.yaml",
        include_str!("../../../site-config-example/images/debian-13-pve.yaml"),
    ),
    (
        "images/pve-9.yaml",
        include_str!("../../../site-config-example/images/pve-9.yaml"),
    ),
    (
        "nodes/sim-bare.yaml",
        include_str!("../../../site-config-example/nodes/sim-bare.yaml"),
    ),
    (
        "nodes/sim-cluster.yaml",
        include_str!("../../../site-config-example/nodes/sim-cluster.yaml"),
    ),
    (
        "nodes/sim.yaml",
        include_str!("../../../site-config-example/nodes/sim.yaml"),
    ),
    (
        "postures/dev.yaml",
        include_str!("../../../site-config-example/postures/dev.yaml"),
    ),
    (
        "postures/local.yaml",
        include_str!("../../../site-config-example/postures/local.yaml"),
    ),
    (
        "postures/prod.yaml",
        include_str!("../../../site-config-example/postures/prod.yaml"),
    ),
    (
        "postures/stage.yaml",
        include_str!("../../../site-config-example/postures/stage.yaml"),
    ),
    (
        "presets/vm-large.yaml",
        include_str!("../../../site-config-example/presets/vm-large.yaml"),
    ),
    (
        "presets/vm-medium.yaml",
        include_str!("../../../site-config-example/presets/vm-medium.yaml"),
    ),
    (
        "presets/vm-small.yaml",
        include_str!("../../../site-config-example/presets/vm-small.yaml"),
    ),
    (
        "presets/vm-xlarge.yaml",
        include_str!("../../../site-config-example/presets/vm-xlarge.yaml"),
    ),
    (
        "presets/vm-xsmall.yaml",
        include_str!("../../../site-config-example/presets/vm-xsmall.yaml"),
    ),
    (
        "secrets.yaml",
        include_str!("../../../site-config-example/secrets.yaml"),
    ),
    (
        "site.yaml",
        include_str!("../../../site-config-example/site.yaml"),
    ),
    (
        "specs/base.yaml",
        include_str!("../../../site-config-example/specs/base.yaml"),
    ),
    (
        "specs/pve.yaml",
        include_str!("../../../site-config-example/specs/pve.yaml"),
    ),
    (
        "vms/debian-12-custom.yaml",
        include_str!("../../../site-config-example/vms/debian-12-custom.yaml"),
    ),
];

/// The published test identity that opens the example's `secrets.yaml`.
pub const TEST_KEY_FILE: &str = "age-test-key.txt";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.file_name().is_some_and(|n| n != "README.md") {
                out.push(
                    p.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }

    #[test]
    fn embeds_every_file_of_the_folder() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-config-example");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "update engine/src/site_config/builtin.rs"
        );
    }
}
