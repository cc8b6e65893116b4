//! Preflight beyond the API basics, for `preflight`, `create` and `test`
//! alike: the content types of the storages the run uses (each node's disk
//! storage, and the download storage for images without a template yet),
//! and, for tiered manifests, nested virtualization on the host, read over
//! SSH (or here, when driver runs on the host itself).

use std::path::{Path, PathBuf};

use actions::preflight::content::{self, StorageNeeds};
use actions::preflight::nested::{is_this_machine, nested_check, nested_check_here};
use actions::preflight::Check;
use actions::pve::{Guest, GuestKind};
use actions::ssh::{HostKeyCheck, SshAuth, SshTarget};
use engine::manifest::NodeKind;
use engine::placement::Placement;
use engine::Manifest;

use super::target::Target;

/// Where images are downloaded to when the host has no template for them
/// yet: PVE's `local` (it holds `iso`, `vztmpl` and, since PVE 8.2, `import`).
pub const DOWNLOAD_STORAGE: &str = "local";

/// What each storage the run uses must hold. `templates`: the host's
/// guests, to tell which images have no template and would be downloaded
/// (`None`: not known, no download is assumed).
pub fn storage_needs(
    placement: &[Placement],
    manifest: &Manifest,
    templates: Option<&[Guest]>,
) -> StorageNeeds {
    let mut needs = StorageNeeds::default();
    for p in placement.iter().filter(|p| p.on.is_none()) {
        if let Some(s) = &p.storage {
            let (c, what) = match p.content {
                "rootdir" => (content::ROOTDIR, "container volume"),
                _ => (content::IMAGES, "disks"),
            };
            needs.add(s, c, format!("{what} of {}", p.node));
        }
    }
    // Pull-mode guests' cloud-init user-data is a snippet there (PVE reads it at start).
    for n in super::pull::pull_nodes(manifest) {
        needs.add(
            super::pull::SNIPPET_STORAGE,
            content::SNIPPETS,
            format!("cloud-init snippet of {}", n.name),
        );
    }
    let Some(templates) = templates else {
        return needs;
    };
    for n in manifest.nodes.iter().filter(|n| n.parent.is_none()) {
        let Some(image) = &n.image else { continue };
        let kind = match n.kind {
            NodeKind::Ct => GuestKind::Lxc,
            NodeKind::Vm | NodeKind::Pve => GuestKind::Qemu,
        };
        if templates
            .iter()
            .any(|g| g.template && g.kind == kind && &g.name == image)
        {
            continue;
        }
        let c = match kind {
            GuestKind::Lxc => content::VZTMPL,
            GuestKind::Qemu => content::DOWNLOADED_IMAGE,
        };
        needs.add(DOWNLOAD_STORAGE, c, format!("downloading {image}"));
    }
    needs
}

/// Nested virtualization on the host `t` is connected to. A simulator's
/// nested PVE nodes are nested simulators: nothing to check there.
pub async fn nested(t: &Target, simulated: bool, ssh_key: Option<&Path>) -> Check {
    let ok = |detail: &str| Check {
        name: "nested",
        ok: true,
        detail: detail.into(),
        fix: None,
    };
    if simulated {
        return ok("simulated host: nested PVE nodes run nested simulators");
    }
    let h = &t.host;
    let Some(ip) = h.ssh_host.as_deref() else {
        return Check {
            name: "nested",
            ok: false,
            detail: format!("{} gives no address to reach the host over SSH", h.file),
            fix: Some(format!("set `ip:` in {}", h.file)),
        };
    };
    if is_this_machine(ip) {
        return nested_check_here(Path::new("/")).await;
    }
    let target = SshTarget::new(ip, &h.ssh_user, host_auth(ssh_key))
        .port(h.ssh_port)
        .host_keys(HostKeyCheck::strict_default());
    nested_check(&target, &h.file, Path::new("/")).await
}

/// The key driver reaches the host with: site.yaml `defaults.ssh_key`, else
/// the ssh-agent, else `~/.ssh/id_ed25519`.
pub(crate) fn host_auth(ssh_key: Option<&Path>) -> SshAuth {
    if let Some(k) = ssh_key {
        return SshAuth::key_file(k);
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        return SshAuth::Agent { socket: None };
    }
    let home = std::env::var_os("HOME").map_or_else(PathBuf::new, PathBuf::from);
    SshAuth::key_file(home.join(".ssh/id_ed25519"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::placement::{place, HostDisks};

    #[test]
    fn disks_and_downloads_are_needed_where_they_go() {
        let m = engine::manifest::load(engine::manifest::Source::new(
            "m.yaml",
            "schema_version: 2\nname: m\nnodes:\n\
             - {name: a, type: vm, image: debian-12}\n\
             - {name: b, type: ct, image: debian-13-ct, storage: tank}\n",
        ))
        .unwrap()
        .manifest;
        let host = HostDisks {
            datastore: Some("local-zfs"),
            full_clone: true,
            file: "nodes/h.yaml",
        };
        let p = place(&m, &host, &[]).unwrap();
        let debian12 = Guest {
            vmid: 9000,
            name: "debian-12".into(),
            kind: GuestKind::Qemu,
            status: "stopped".into(),
            template: true,
            tags: String::new(),
        };
        let needs = storage_needs(&p, &m, Some(std::slice::from_ref(&debian12)));
        let storages: Vec<&str> = needs.storages().collect();
        // a's disks, b's volume, and b's image downloaded as a container template.
        assert_eq!(storages, ["local", "local-zfs", "tank"]);
        let unknown = storage_needs(&p, &m, None);
        assert_eq!(
            unknown.storages().collect::<Vec<_>>(),
            ["local-zfs", "tank"]
        );
    }
}
