//! The `ostemplate` of `POST /nodes/{node}/lxc`: the container template archive a new
//! container is unpacked from, looked up in the storage's content as PVE does.

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

use super::super::storage;

/// Checks `volid` as PVE does before forking its worker (the storage must exist and hold
/// templates: an error now). A file that is not there fails the task later, as unpacking
/// does on PVE: its message is returned for the task to end with.
pub(super) fn check(shared: &Shared, vmid: u32, volid: &str) -> ApiResult<Option<String>> {
    if let Some((store, name)) = volid.split_once(':') {
        storage::get(shared, store)?;
        let kind = name.split('/').next().unwrap_or_default();
        if kind != "vztmpl" {
            return Err(ApiError::internal(format!(
                "unable to use volume {volid} - content type needs to be 'vztmpl'"
            )));
        }
    }
    // The storage plugin's activate_volume, when the worker unpacks it.
    let found = crate::api::content::volume_file(shared, volid)
        .is_some_and(|(_, c)| c == crate::api::content::FileContent::Vztmpl);
    Ok((!found).then(|| format!("unable to create CT {vmid} - volume '{volid}' does not exist")))
}

/// PVE detects the OS from the unpacked tree; the archive's name says the same here.
pub(super) fn ostype(volid: &str) -> &'static str {
    let file = volid.split_once(":vztmpl/").map_or(volid, |(_, f)| f);
    for os in [
        "debian",
        "ubuntu",
        "alpine",
        "centos",
        "fedora",
        "archlinux",
    ] {
        if file.starts_with(os) {
            return os;
        }
    }
    "unmanaged"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ostype_from_the_archive_name() {
        assert_eq!(
            ostype("local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"),
            "debian"
        );
        assert_eq!(
            ostype("local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"),
            "ubuntu"
        );
        assert_eq!(ostype("local:vztmpl/mine.tar.gz"), "unmanaged");
    }
}
