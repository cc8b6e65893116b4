//! Storage content types: each storage the run uses holds what it is used
//! for (`images` for VM disks, `rootdir` for containers, `vztmpl` for
//! container templates, `import` or `iso` for downloaded images, `snippets`
//! for cloud-init snippets). A missing one fails with the `pvesm set`
//! command that adds it to what the storage already holds.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{connect_fix, Check};
use crate::pve::PveClient;

/// Content types, one of which a use needs (`&["import", "iso"]`: either).
pub type Content = &'static [&'static str];

pub const IMAGES: Content = &["images"];
pub const ROOTDIR: Content = &["rootdir"];
pub const VZTMPL: Content = &["vztmpl"];
pub const DOWNLOADED_IMAGE: Content = &["import", "iso"];
pub const SNIPPETS: Content = &["snippets"];

/// Storages the run uses, each with what it must hold and what for.
#[derive(Clone, Debug, Default)]
pub struct StorageNeeds {
    by_storage: BTreeMap<String, Vec<(Content, String)>>,
}

impl StorageNeeds {
    /// Storage `storage` must hold one of `content`, for `why` (e.g. "disks
    /// of a, b"); the same need for several reasons is listed once.
    pub fn add(&mut self, storage: &str, content: Content, why: impl Into<String>) {
        let why = why.into();
        let list = self.by_storage.entry(storage.to_string()).or_default();
        match list.iter_mut().find(|(c, _)| *c == content) {
            Some((_, w)) if !w.split(", ").any(|x| x == why) => {
                w.push_str(", ");
                w.push_str(&why);
            }
            Some(_) => {}
            None => list.push((content, why)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_storage.is_empty()
    }

    pub fn storages(&self) -> impl Iterator<Item = &str> {
        self.by_storage.keys().map(String::as_str)
    }
}

/// One check per storage in `needs`; `host` is the site-config host name
/// (for fix messages).
pub async fn content_checks(client: &PveClient, host: &str, needs: &StorageNeeds) -> Vec<Check> {
    if needs.is_empty() {
        return Vec::new();
    }
    let path = format!("/nodes/{}/storage", client.node());
    let list = match client.get(&path).await {
        Ok(l) => l,
        Err(e) => return vec![Check::fail("content", e.to_string(), connect_fix(&e, host))],
    };
    let found: BTreeMap<&str, &str> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("storage")?.as_str()?,
                        s.get("content").and_then(Value::as_str).unwrap_or(""),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    needs
        .by_storage
        .iter()
        .map(|(storage, wants)| check_one(client.node(), host, storage, wants, &found))
        .collect()
}

fn check_one(
    node: &str,
    host: &str,
    storage: &str,
    wants: &[(Content, String)],
    found: &BTreeMap<&str, &str>,
) -> Check {
    let uses: Vec<String> = wants
        .iter()
        .map(|(c, why)| format!("{} for {why}", c.join(" or ")))
        .collect();
    let Some(has) = found.get(storage) else {
        let names: Vec<&str> = found.keys().copied().collect();
        return Check::fail(
            "content",
            format!(
                "no storage '{storage}' on node {node} (wanted: {}; node has: {})",
                uses.join("; "),
                names.join(", ")
            ),
            format!(
                "name an existing storage (`pvesm status` on the host) in the manifest's \
                 `storage:` or `datastore:` in nodes/{host}.yaml, or add '{storage}' with `pvesm add`"
            ),
        );
    };
    let existing: Vec<&str> = has.split(',').filter(|c| !c.is_empty()).collect();
    let missing: Vec<&(Content, String)> = wants
        .iter()
        .filter(|(c, _)| !c.iter().any(|t| existing.contains(t)))
        .collect();
    if missing.is_empty() {
        return Check::pass(
            "content",
            format!("storage '{storage}' holds {}", uses.join("; ")),
        );
    }
    // Adds the first of each missing choice to what is there: `pvesm set
    // --content` replaces the list, so the existing types must stay in it.
    let mut all = existing.clone();
    for (c, _) in &missing {
        all.push(c[0]);
    }
    let lacks: Vec<String> = missing
        .iter()
        .map(|(c, why)| format!("{} (for {why})", c.join(" or ")))
        .collect();
    Check::fail(
        "content",
        format!(
            "storage '{storage}' does not hold {}; it holds {}",
            lacks.join(", "),
            if existing.is_empty() {
                "nothing".to_string()
            } else {
                existing.join(",")
            }
        ),
        format!(
            "on the host: `pvesm set {storage} --content {}`",
            all.join(",")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_keeps_what_the_storage_holds() {
        let found = BTreeMap::from([
            ("local", "backup,iso,vztmpl"),
            ("local-lvm", "images,rootdir"),
        ]);
        let mut needs = StorageNeeds::default();
        needs.add("local", IMAGES, "disks of a");
        needs.add("local", IMAGES, "disks of b");
        needs.add("local", IMAGES, "disks of a");
        needs.add("local", DOWNLOADED_IMAGE, "image debian-12");
        let wants = &needs.by_storage["local"];
        let c = check_one("pve", "h", "local", wants, &found);
        assert!(!c.ok);
        assert_eq!(
            c.fix.as_deref(),
            Some("on the host: `pvesm set local --content backup,iso,vztmpl,images`")
        );
        assert!(
            c.detail.contains("images (for disks of a, disks of b)"),
            "{c:?}"
        );
        let c = check_one("pve", "h", "local-lvm", &[(ROOTDIR, "ct".into())], &found);
        assert!(c.ok, "{c:?}");
        let c = check_one("pve", "h", "tank", &[(ROOTDIR, "ct".into())], &found);
        assert!(!c.ok && c.detail.contains("no storage 'tank'"), "{c:?}");
    }
}
