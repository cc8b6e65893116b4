//! A file a storage holds outside any guest: a container template (`vztmpl`) as `pveam
//! download` or the appliance download leaves it. Keyed by its volid in the state.

use serde::{Deserialize, Serialize};

/// One file in a storage's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFile {
    /// `vztmpl` (the only kind kept so far).
    pub content: String,
    /// As PVE lists it: `tzst`, `tgz`, `txz`.
    pub format: String,
    pub size: u64,
    /// Unix time it arrived.
    pub ctime: u64,
}

impl StoredFile {
    /// A container template file named `file` (its format from the extension).
    pub fn vztmpl(file: &str, size: u64, ctime: u64) -> StoredFile {
        let format = if file.ends_with(".tar.zst") {
            "tzst"
        } else if file.ends_with(".tar.xz") {
            "txz"
        } else {
            "tgz"
        };
        StoredFile {
            content: "vztmpl".into(),
            format: format.into(),
            size,
            ctime,
        }
    }
}

/// `STORAGE:vztmpl/FILE` → `(STORAGE, FILE)`.
pub(crate) fn split_vztmpl(volid: &str) -> Option<(&str, &str)> {
    let (storage, rest) = volid.split_once(':')?;
    let file = rest.strip_prefix("vztmpl/")?;
    (!storage.is_empty() && !file.is_empty() && !file.contains('/')).then_some((storage, file))
}
