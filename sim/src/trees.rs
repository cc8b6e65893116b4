//! A guest's directory tree as snapshots and backups keep it: copied whole into a snapshot's
//! folder (and back on rollback), or packed with the guest's config into one archive file
//! (pvesim's own format behind PVE's archive names: a JSON document with the config and every
//! file, directory and symlink, file bytes in hex) and unpacked on restore. Real PVE keeps
//! disk images; here the guest's SSH-visible files are its disks.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Copies the tree at `from` to `to` (made afresh: whatever was at `to` goes first).
/// A missing `from` makes an empty `to`.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    remove_tree(to)?;
    std::fs::create_dir_all(to)?;
    if !from.exists() {
        return Ok(());
    }
    copy_into(from, to)
}

fn copy_into(from: &Path, to: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let ty = e.file_type()?;
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ty.is_dir() {
            std::fs::create_dir(&dst)?;
            std::fs::set_permissions(&dst, std::fs::metadata(&src)?.permissions())?;
            copy_into(&src, &dst)?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst)?;
        }
        // Sockets and FIFOs a guest's processes left are not part of its disk.
    }
    Ok(())
}

/// Removes the tree at `path`, if there is one.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One entry of an archive, by its path relative to the guest's root.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        hex: String,
    },
    Link {
        path: String,
        target: String,
    },
}

/// What an archive holds: the guest's kind (`qemu`/`lxc`), vmid and config, and its tree.
#[derive(Serialize, Deserialize)]
pub(crate) struct Archive {
    #[serde(rename = "pvesim-archive")]
    pub version: u32,
    pub kind: String,
    pub vmid: u32,
    pub config: BTreeMap<String, Value>,
    entries: Vec<Entry>,
}

impl Archive {
    /// Packs the config and the tree at `root` (missing: no files).
    pub fn pack(
        kind: &str,
        vmid: u32,
        config: BTreeMap<String, Value>,
        root: &Path,
    ) -> io::Result<Self> {
        let mut entries = Vec::new();
        if root.exists() {
            pack_into(root, Path::new(""), &mut entries)?;
        }
        Ok(Archive {
            version: 1,
            kind: kind.to_string(),
            vmid,
            config,
            entries,
        })
    }

    /// Writes the archive to `path` (aside first, then renamed: a listing never shows half).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        let tmp = hidden_tmp(path);
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    pub fn read(path: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a pvesim backup archive: {e}"),
            )
        })
    }

    /// Makes `root` hold exactly the archive's tree.
    pub fn unpack(&self, root: &Path) -> io::Result<()> {
        remove_tree(root)?;
        std::fs::create_dir_all(root)?;
        for e in &self.entries {
            match e {
                Entry::Dir { path, mode } => {
                    let p = safe_join(root, path)?;
                    std::fs::create_dir_all(&p)?;
                    set_mode(&p, *mode)?;
                }
                Entry::File { path, mode, hex } => {
                    let p = safe_join(root, path)?;
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&p, from_hex(hex)?)?;
                    set_mode(&p, *mode)?;
                }
                Entry::Link { path, target } => {
                    let p = safe_join(root, path)?;
                    std::os::unix::fs::symlink(target, &p)?;
                }
            }
        }
        Ok(())
    }
}

fn hidden_tmp(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// `root/rel`, refusing a relative path that climbs out (an archive is file content).
fn safe_join(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let p = Path::new(rel);
    let ok = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !ok || rel.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("archive entry '{rel}' leaves the guest's root"),
        ));
    }
    Ok(root.join(p))
}

fn pack_into(dir: &Path, rel: &Path, out: &mut Vec<Entry>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let src = e.path();
        let r = rel.join(e.file_name());
        let path = r.to_string_lossy().into_owned();
        let ty = e.file_type()?;
        if ty.is_symlink() {
            let target = std::fs::read_link(&src)?.to_string_lossy().into_owned();
            out.push(Entry::Link { path, target });
        } else if ty.is_dir() {
            let mode = std::fs::metadata(&src)?.permissions().mode();
            out.push(Entry::Dir { path, mode });
            pack_into(&src, &r, out)?;
        } else if ty.is_file() {
            let mode = std::fs::metadata(&src)?.permissions().mode();
            let hex = to_hex(&std::fs::read(&src)?);
            out.push(Entry::File { path, mode, hex });
        }
    }
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> io::Result<Vec<u8>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad hex in archive");
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("etc/ssh")).unwrap();
        std::fs::write(src.join("etc/ssh/key"), b"\x00\x01secret").unwrap();
        std::fs::write(src.join("hello.txt"), b"hi").unwrap();
        std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
        let a = Archive::pack("qemu", 100, BTreeMap::new(), &src).unwrap();
        let file = dir.path().join("a.vma");
        a.write(&file).unwrap();
        let back = Archive::read(&file).unwrap();
        let dst = dir.path().join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(dst.join("stale"), b"x").unwrap();
        back.unpack(&dst).unwrap();
        assert_eq!(
            std::fs::read(dst.join("etc/ssh/key")).unwrap(),
            b"\x00\x01secret"
        );
        assert_eq!(std::fs::read(dst.join("hello.txt")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("hello.txt")
        );
        assert!(!dst.join("stale").exists());
        let copy = dir.path().join("copy");
        copy_tree(&src, &copy).unwrap();
        assert_eq!(std::fs::read(copy.join("hello.txt")).unwrap(), b"hi");
    }

    #[test]
    fn an_entry_climbing_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(safe_join(dir.path(), "../x").is_err());
        assert!(safe_join(dir.path(), "/etc/passwd").is_err());
    }
}
