//! Reading the text files driver is pointed at (manifests, site-config
//! files, secrets), defensively: a path can name a FIFO (which would block
//! forever), a device (`/dev/zero` never ends) or a huge file, so only
//! regular files up to `MAX_TEXT_BYTES` are read.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// The largest YAML file driver reads. The biggest input we plan for, a
/// 100k-node manifest, is 10-11 MiB written out in block style (about 110
/// bytes a node); the cap leaves room for three times that and keeps a
/// mistaken or hostile path from costing more than a bounded amount of
/// memory (parsing needs several times the file's size).
pub const MAX_TEXT_BYTES: u64 = 32 * 1024 * 1024;

/// Why a file was not read. Says nothing about the file's content.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file ({0}); only regular files are read")]
    NotRegular(&'static str),
    #[error("{size} bytes, larger than the {} MiB limit for YAML input", MAX_TEXT_BYTES / (1024 * 1024))]
    TooLarge { size: u64 },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What kind of non-regular file this is, for the message.
fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

fn check(m: &Metadata) -> Result<(), ReadError> {
    if !m.is_file() {
        return Err(ReadError::NotRegular(kind(m)));
    }
    if m.len() > MAX_TEXT_BYTES {
        return Err(ReadError::TooLarge { size: m.len() });
    }
    Ok(())
}

/// Reads a regular file of at most `MAX_TEXT_BYTES` as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    // Checked before opening: opening a FIFO for reading blocks until a
    // writer appears.
    check(&std::fs::metadata(path)?)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        // The path may have been swapped for a FIFO since: never block in
        // open; the opened file is checked again below.
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file: File = opts.open(path)?;
    let meta = file.metadata()?;
    check(&meta)?;
    // The size can change after the check (or be 0, as in /proc): read at
    // most one byte past the limit to tell.
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_TEXT_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_TEXT_BYTES {
        return Err(ReadError::TooLarge {
            size: buf.len() as u64,
        });
    }
    String::from_utf8(buf).map_err(|_| ReadError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, "a: 1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a: 1\n");
    }

    #[test]
    fn missing_file_is_not_found() {
        let e = read_text(Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn refuses_directories_devices_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string().split(';').next().unwrap(),
            "not a regular file (a directory)"
        );
        let e = read_text(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("(a character device)"), "{e}");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Returns at once instead of waiting for a writer.
        let e = read_text(&fifo).unwrap_err();
        assert!(e.to_string().contains("(a FIFO)"), "{e}");
    }

    #[test]
    fn refuses_files_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        let f = File::create(&p).unwrap();
        f.set_len(MAX_TEXT_BYTES + 1).unwrap();
        let e = read_text(&p).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("32 MiB"), "{e}");
        f.set_len(MAX_TEXT_BYTES).unwrap();
        assert_eq!(read_text(&p).unwrap().len() as u64, MAX_TEXT_BYTES);
    }

    #[test]
    fn refuses_binary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(&p, [0xff, 0xfe, 0]).unwrap();
        assert!(matches!(read_text(&p), Err(ReadError::NotUtf8)));
    }
}
