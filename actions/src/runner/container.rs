//! A container (`type: ct`) is created from a container template (`vztmpl`), not cloned:
//! the template its image names is found or fetched on the host ([`crate::ct_templates`]),
//! and everything the container needs goes into the one create call (name, size, network,
//! root disk on the host's datastore, unprivileged, features, the site's SSH keys for root,
//! the ownership marker and tag), so it exists marked from its first moment.

use engine::executor::{ActionCall, ActionError};
use engine::ownership;
use engine::site_config::ct_template::CtTemplateSource;

use super::{PveRunner, Sizing};

impl PveRunner {
    /// The volid of the container template `image` names, found or fetched on the host
    /// (once per run: `ensure_image` does it first, provision finds it done).
    pub(super) async fn ct_template(
        &self,
        call: &ActionCall,
        image: &str,
    ) -> Result<String, ActionError> {
        let source = self
            .setup
            .ct_templates
            .get(image)
            .cloned()
            .unwrap_or_else(|| CtTemplateSource::Appliance {
                package: format!("{image}-standard"),
            });
        let facts = call.facts.clone();
        let log = move |line: String| facts.log(line);
        Ok(self
            .ct_templates
            .ensure(&self.client, &source, call.timeout, &log)
            .await?)
    }

    /// The parameters of `POST /nodes/{node}/lxc` for `call`'s node (all but `vmid`).
    pub(super) async fn container_params(
        &self,
        call: &ActionCall,
        image: &str,
        size: Sizing,
    ) -> Result<Vec<(&'static str, String)>, ActionError> {
        let node = &call.node;
        let volid = self.ct_template(call, image).await?;
        let disk = node.disk.unwrap_or(size.disk_gb);
        // PVE's own default when nothing is said (as the plan's placement shows).
        let storage =
            engine::placement::ct_storage(node, &self.host_disks()).unwrap_or("local-lvm");
        let mut p = vec![
            ("ostemplate", volid),
            ("hostname", node.name.clone()),
            ("cores", size.cores.to_string()),
            ("memory", size.memory_mb.to_string()),
            ("rootfs", format!("{storage}:{disk}")),
            (
                "net0",
                format!("name=eth0,bridge={},ip=dhcp", self.setup.bridge),
            ),
            // PVE's create defaults to it too; said explicitly so no version differs.
            ("unprivileged", "1".to_string()),
            ("description", call.owner.marker(&node.name).description()),
            ("tags", ownership::with_tag("", &call.owner)),
        ];
        if let Some(features) = node.features.and_then(|f| f.pve_option()) {
            p.push(("features", features));
        }
        if !self.setup.ssh_keys.is_empty() {
            // Installed for root by PVE at create; one key per line.
            p.push(("ssh-public-keys", self.setup.ssh_keys.join("\n")));
        }
        Ok(p)
    }
}
