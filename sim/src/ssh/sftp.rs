//! SFTP (version 3) rooted at a guest's folder: `/` is the guest's folder, paths resolve
//! inside it, and neither `..` nor symlinks lead out. Commands run over `exec` see the real
//! host path of the folder (`$HOME`, `pwd`); such a path given to SFTP maps to the same file,
//! so what a client learned from `echo ~` (as ansible does) works for uploads too.
//!
//! Files are read and written with positional I/O on local disk, one request at a time per
//! session; requests are small (at most [`MAX_READ`]), so this runs on the async worker.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use russh_sftp::protocol::{
    Attrs, Data, File as Entry, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
    Version,
};
use russh_sftp::server::StatusReply;

/// Largest read answered at once (clients ask again for the rest).
const MAX_READ: u32 = 256 * 1024;
/// Open handles per session.
const MAX_HANDLES: usize = 512;
/// Directory entries per `readdir` answer.
const DIR_BATCH: usize = 128;

type Reply<T> = Result<T, StatusReply>;

fn io_error(e: &std::io::Error) -> StatusReply {
    use std::io::ErrorKind as K;
    let code = match e.kind() {
        K::NotFound => StatusCode::NoSuchFile,
        K::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

fn denied() -> StatusReply {
    StatusCode::PermissionDenied.with_message("path leads outside the guest")
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".to_string(),
        language_tag: "en-US".to_string(),
    }
}

fn attrs_of(m: &Metadata) -> FileAttributes {
    FileAttributes::from(m)
}

/// The SFTP server of one session.
pub(crate) struct Sftp {
    root: PathBuf,
    /// The root with symlinks resolved, to check where paths really lead.
    root_real: PathBuf,
    files: HashMap<String, File>,
    dirs: HashMap<String, Vec<Entry>>,
    next_handle: u64,
}

impl Sftp {
    pub fn new(root: &Path) -> Self {
        Sftp {
            root: root.to_path_buf(),
            root_real: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
            files: HashMap::new(),
            dirs: HashMap::new(),
            next_handle: 0,
        }
    }

    /// The components of `path` below the root: absolute and relative paths both start at the
    /// root (the session's working directory), `..` stops there, and a host path of the
    /// guest's folder is taken as the same place.
    fn components(&self, path: &str) -> Vec<String> {
        let mut rest = path;
        for root in [&self.root, &self.root_real] {
            if let Some(r) = root.to_str() {
                if let Some(tail) = path.strip_prefix(r) {
                    if tail.is_empty() || tail.starts_with('/') {
                        rest = tail;
                        break;
                    }
                }
            }
        }
        let mut parts: Vec<String> = Vec::new();
        for c in Path::new(rest).components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        parts
    }

    /// The host path for `path`, checked to stay inside the guest. `follow`: the last
    /// component may be a symlink that is followed (open, stat), else it is the entry itself
    /// (lstat, remove, rename).
    fn resolve(&self, path: &str, follow: bool) -> Reply<PathBuf> {
        let parts = self.components(path);
        let mut real = self.root.clone();
        real.extend(&parts);
        if parts.is_empty() {
            return Ok(real);
        }
        if let Some(parent) = real.parent() {
            match parent.canonicalize() {
                Ok(p) if p.starts_with(&self.root_real) => {}
                Ok(_) => return Err(denied()),
                Err(e) => return Err(io_error(&e)),
            }
        }
        if follow {
            match real.canonicalize() {
                Ok(p) if p.starts_with(&self.root_real) => {}
                Ok(_) => return Err(denied()),
                // A dangling symlink would be followed when created: only if it stays inside.
                Err(_) if real.symlink_metadata().is_ok_and(|m| m.is_symlink()) => {
                    return Err(denied())
                }
                Err(_) => {}
            }
        }
        Ok(real)
    }

    fn virtual_path(&self, path: &str) -> String {
        format!("/{}", self.components(path).join("/"))
    }

    fn new_handle(&mut self) -> Reply<String> {
        if self.files.len() + self.dirs.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next_handle += 1;
        Ok(format!("h{}", self.next_handle))
    }

    fn file(&self, handle: &str) -> Reply<&File> {
        self.files
            .get(handle)
            .ok_or_else(|| StatusCode::Failure.with_message("invalid handle"))
    }
}

/// Applies permissions, size and times (owners are left alone: the simulator is one user).
fn set_attrs(file: Option<&File>, path: &Path, attrs: &FileAttributes) -> Reply<()> {
    if let Some(mode) = attrs.permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| io_error(&e))?;
    }
    let times = attrs.atime.is_some() || attrs.mtime.is_some();
    if attrs.size.is_none() && !times {
        return Ok(());
    }
    let opened;
    let f = match file {
        Some(f) => f,
        None => {
            let mut o = std::fs::OpenOptions::new();
            o.write(attrs.size.is_some());
            o.read(attrs.size.is_none());
            opened = o.open(path).map_err(|e| io_error(&e))?;
            &opened
        }
    };
    if let Some(size) = attrs.size {
        f.set_len(size).map_err(|e| io_error(&e))?;
    }
    if times {
        let at = |t: u32| UNIX_EPOCH + Duration::from_secs(u64::from(t));
        let mut ft = std::fs::FileTimes::new();
        if let Some(a) = attrs.atime {
            ft = ft.set_accessed(at(a));
        }
        if let Some(m) = attrs.mtime {
            ft = ft.set_modified(at(m));
        }
        f.set_times(ft).map_err(|e| io_error(&e))?;
    }
    Ok(())
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Reply<Version> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Reply<Handle> {
        let path = self.resolve(&filename, true)?;
        let mut opts = std::fs::OpenOptions::from(pflags);
        if !pflags.intersects(OpenFlags::READ | OpenFlags::WRITE | OpenFlags::APPEND) {
            opts.read(true);
        }
        opts.mode(attrs.permissions.map_or(0o644, |m| m & 0o7777));
        let file = opts.open(&path).map_err(|e| io_error(&e))?;
        let handle = self.new_handle()?;
        self.files.insert(handle.clone(), file);
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Reply<Status> {
        let known = self.files.remove(&handle).is_some() || self.dirs.remove(&handle).is_some();
        if known {
            Ok(ok(id))
        } else {
            Err(StatusCode::Failure.with_message("invalid handle"))
        }
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Reply<Data> {
        let file = self.file(&handle)?;
        let mut buf = vec![0u8; len.min(MAX_READ) as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&e)),
            }
        }
        if filled == 0 && len > 0 {
            return Err(StatusCode::Eof.into());
        }
        buf.truncate(filled);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Reply<Status> {
        let file = self.file(&handle)?;
        file.write_all_at(&data, offset).map_err(|e| io_error(&e))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        let p = self.resolve(&path, false)?;
        let m = p.symlink_metadata().map_err(|e| io_error(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&m),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        let p = self.resolve(&path, true)?;
        let m = p.metadata().map_err(|e| io_error(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&m),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Reply<Attrs> {
        let m = self.file(&handle)?.metadata().map_err(|e| io_error(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&m),
        })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Reply<Status> {
        let p = self.resolve(&path, true)?;
        set_attrs(None, &p, &attrs)?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Reply<Status> {
        let file = self.file(&handle)?;
        if let Some(mode) = attrs.permissions {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| io_error(&e))?;
        }
        let rest = FileAttributes {
            permissions: None,
            ..attrs
        };
        // The path is only used to open the file, which is already open here.
        set_attrs(Some(file), Path::new(""), &rest)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Reply<Handle> {
        let p = self.resolve(&path, true)?;
        let mut entries = Vec::new();
        for name in [".", ".."] {
            if let Ok(m) = p.metadata() {
                entries.push(Entry::new(name, attrs_of(&m)));
            }
        }
        for e in std::fs::read_dir(&p).map_err(|e| io_error(&e))? {
            let e = e.map_err(|e| io_error(&e))?;
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            entries.push(Entry::new(
                e.file_name().to_string_lossy().into_owned(),
                attrs_of(&m),
            ));
        }
        entries.reverse(); // handed out from the end
        let handle = self.new_handle()?;
        self.dirs.insert(handle.clone(), entries);
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Reply<Name> {
        let entries = self
            .dirs
            .get_mut(&handle)
            .ok_or_else(|| StatusCode::Failure.with_message("invalid handle"))?;
        if entries.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        let n = entries.len().min(DIR_BATCH);
        let files: Vec<Entry> = entries.drain(entries.len() - n..).rev().collect();
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Reply<Status> {
        let p = self.resolve(&filename, false)?;
        std::fs::remove_file(&p).map_err(|e| io_error(&e))?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Reply<Status> {
        let p = self.resolve(&path, false)?;
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(
            &mut b,
            attrs.permissions.map_or(0o755, |m| m & 0o7777),
        );
        b.create(&p).map_err(|e| io_error(&e))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Reply<Status> {
        let p = self.resolve(&path, false)?;
        if p == self.root {
            return Err(denied());
        }
        std::fs::remove_dir(&p).map_err(|e| io_error(&e))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Reply<Name> {
        Ok(Name {
            id,
            files: vec![Entry::dummy(self.virtual_path(&path))],
        })
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Reply<Status> {
        let from = self.resolve(&oldpath, false)?;
        let to = self.resolve(&newpath, false)?;
        if from == self.root || to == self.root {
            return Err(denied());
        }
        std::fs::rename(&from, &to).map_err(|e| io_error(&e))?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Reply<Name> {
        let p = self.resolve(&path, false)?;
        let target = std::fs::read_link(&p).map_err(|e| io_error(&e))?;
        let shown = target
            .strip_prefix(&self.root)
            .or_else(|_| target.strip_prefix(&self.root_real))
            .map(|t| format!("/{}", t.display()))
            .unwrap_or_else(|_| target.display().to_string());
        Ok(Name {
            id,
            files: vec![Entry::dummy(shown)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let root = std::env::temp_dir().join(format!(
            "pvesim-sftptest-{}-{}",
            std::process::id(),
            crate::ids::random_hex(8)
        ));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("in")).unwrap();
        let s = Sftp::new(&root);
        assert_eq!(s.virtual_path("."), "/");
        assert_eq!(s.virtual_path("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(s.resolve("../../x", true).unwrap(), root.join("x"));
        let host = format!("{}/sub/f", root.display());
        assert_eq!(s.resolve(&host, true).unwrap(), root.join("sub/f"));
        assert!(s.resolve("out/passwd", true).is_err());
        assert!(s.resolve("out", true).is_err());
        assert_eq!(s.resolve("out", false).unwrap(), root.join("out"));
        assert_eq!(s.resolve("in/f", true).unwrap(), root.join("in/f"));
        std::os::unix::fs::symlink("/nonexistent-pvesim", root.join("dangling")).unwrap();
        assert!(s.resolve("dangling", true).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
