//! File-based storage content: the files a directory storage (`local`) holds, kept as real
//! files under the simulator's storage folder in PVE's layout (`template/iso`,
//! `template/cache`, `import`), listed as volumes (`local:import/debian-12.qcow2`), and the
//! checks PVE makes before a file is stored (file-based storage, content type configured,
//! the file name's extension, pve-storage's `normalize_content_filename`). Downloads
//! (`download`) and uploads (`upload`) store through here; `import-from` reads through here.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// The content types of `local`: a fresh PVE 9 install's, or an older install's (no
/// `import`, which PVE 8.4 brought) for the seeded simulator. Sorted, as PVE lists them.
pub(crate) fn local_content(bare: bool) -> &'static str {
    if bare {
        "backup,import,iso,vztmpl"
    } else {
        "backup,iso,snippets,vztmpl"
    }
}

/// A content type a file can be stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileContent {
    Iso,
    Vztmpl,
    Import,
}

impl FileContent {
    /// The `content` parameter's enum of `download-url` and `upload`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "iso" => Some(FileContent::Iso),
            "vztmpl" => Some(FileContent::Vztmpl),
            "import" => Some(FileContent::Import),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FileContent::Iso => "iso",
            FileContent::Vztmpl => "vztmpl",
            FileContent::Import => "import",
        }
    }

    /// The folder of a directory storage holding it (pve-storage's `get_subdir`).
    fn subdir(self) -> &'static str {
        match self {
            FileContent::Iso => "template/iso",
            FileContent::Vztmpl => "template/cache",
            FileContent::Import => "import",
        }
    }

    /// The volume's format from its name, or `None` when the extension is not one PVE
    /// takes for this content type (its `*_EXT_RE` patterns).
    fn format_of(self, name: &str) -> Option<&'static str> {
        let lower = name.to_ascii_lowercase();
        match self {
            FileContent::Iso => [".iso", ".img"]
                .iter()
                .any(|e| lower.ends_with(e))
                .then_some("iso"),
            FileContent::Vztmpl => [
                (".tar", "tar"),
                (".tar.gz", "tgz"),
                (".tar.xz", "txz"),
                (".tar.zst", "tzst"),
                (".tar.bz2", "tbz2"),
            ]
            .iter()
            .find(|(e, _)| lower.ends_with(e))
            .map(|(_, f)| *f),
            FileContent::Import => {
                let safe = name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.+=_".contains(&b));
                if !safe {
                    return None;
                }
                [
                    (".qcow2", "qcow2"),
                    (".raw", "raw"),
                    (".vmdk", "vmdk"),
                    (".ova", "ova"),
                ]
                .iter()
                .find(|(e, _)| name.ends_with(e))
                .map(|(_, f)| *f)
            }
        }
    }
}

/// pve-storage's `normalize_content_filename`: the last path component, unsafe
/// characters replaced by `_`.
pub(crate) fn normalize_filename(name: &str) -> String {
    let name = name.trim_end_matches(['\n', '\r']);
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a file is to be stored, checked as PVE checks it before it starts its worker.
pub(crate) struct Target {
    pub content: FileContent,
    pub filename: String,
    pub dir: PathBuf,
    pub path: PathBuf,
}

/// Checks a store of `filename` as `content` on `storage` (download-url and upload).
pub(crate) fn target(
    shared: &Shared,
    storage: &str,
    content: Option<&str>,
    filename: Option<&str>,
    verb: &str,
) -> ApiResult<Target> {
    let content_raw = content
        .ok_or_else(|| ApiError::param("content", "property is missing and it is not optional"))?;
    let content = FileContent::parse(content_raw).ok_or_else(|| {
        ApiError::param(
            "content",
            format!("value '{content_raw}' does not have a value in the enumeration 'iso, vztmpl, import'"),
        )
    })?;
    let filename = filename
        .ok_or_else(|| ApiError::param("filename", "property is missing and it is not optional"))?;
    if filename.len() > 255 {
        return Err(ApiError::param(
            "filename",
            "value may only be 255 characters long",
        ));
    }
    match storage {
        "local" => {}
        other
            if super::storage::STORAGES.contains(&other)
                || other == crate::cluster::SHARED_STORAGE =>
        {
            return Err(ApiError::internal(format!(
                "can't {verb} to storage type '{}', not a file based storage!",
                super::storage::plugin(other)
            )))
        }
        other => {
            return Err(ApiError::internal(format!(
                "storage '{other}' does not exist"
            )))
        }
    }
    if !local_content(shared.bare)
        .split(',')
        .any(|c| c == content.name())
    {
        return Err(ApiError::internal(format!(
            "storage '{storage}' is not configured for content-type '{}'",
            content.name()
        )));
    }
    let filename = normalize_filename(filename);
    if content.format_of(&filename).is_none() {
        return Err(ApiError::param(
            "filename",
            match content {
                FileContent::Import => "invalid filename or wrong extension",
                _ => "wrong file extension",
            },
        ));
    }
    let dir = storage_dir(shared, storage).join(content.subdir());
    Ok(Target {
        content,
        path: dir.join(&filename),
        filename,
        dir,
    })
}

fn storage_dir(shared: &Shared, storage: &str) -> PathBuf {
    shared.storage_root.join(storage)
}

/// Leaves a file of `size` bytes (sparse: it costs no disk) at `local`'s place for
/// `content`: what a finished download of a container template leaves behind, for the
/// appliance downloads and the seeded host's templates, whose bytes nobody reads.
pub(crate) fn store_placeholder(
    storage_root: &Path,
    content: FileContent,
    filename: &str,
    size: u64,
) -> std::io::Result<()> {
    let dir = storage_root.join("local").join(content.subdir());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(filename);
    if path.is_file() {
        return Ok(());
    }
    // Written aside and renamed, so a listing never shows it half made.
    let tmp = dir.join(format!(".{filename}.tmp"));
    std::fs::File::create(&tmp)?.set_len(size)?;
    std::fs::rename(&tmp, &path)
}

/// One file volume in `GET .../storage/{storage}/content`.
#[derive(Serialize)]
pub(crate) struct FileVolume {
    pub volid: String,
    content: &'static str,
    format: &'static str,
    size: u64,
    ctime: u64,
}

/// The files `storage` holds, of content `want` (all when `None`).
pub(crate) fn volumes(shared: &Shared, storage: &str, want: Option<&str>) -> Vec<FileVolume> {
    volumes_in(&shared.storage_root, storage, want)
}

/// The files `storage` holds under a simulator's storage folder (see [`volumes`]).
pub(crate) fn volumes_in(
    storage_root: &Path,
    storage: &str,
    want: Option<&str>,
) -> Vec<FileVolume> {
    let mut out = Vec::new();
    for content in [FileContent::Import, FileContent::Iso, FileContent::Vztmpl] {
        if want.is_some_and(|w| w != content.name()) {
            continue;
        }
        let dir = storage_root.join(storage).join(content.subdir());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<FileVolume> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                // Transfers in flight are hidden files, as PVE's temporary ones are elsewhere.
                if name.starts_with('.') {
                    return None;
                }
                let format = content.format_of(&name)?;
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                let ctime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                Some(FileVolume {
                    volid: format!("{storage}:{}/{name}", content.name()),
                    content: content.name(),
                    format,
                    size: meta.len(),
                    ctime,
                })
            })
            .collect();
        found.sort_by(|a, b| a.volid.cmp(&b.volid));
        out.extend(found);
    }
    out
}

/// The file behind a file volume (`local:import/x.qcow2`) and its content type, if the
/// volume exists.
pub(crate) fn volume_file(shared: &Shared, volid: &str) -> Option<(PathBuf, FileContent)> {
    let (storage, rest) = volid.split_once(':')?;
    let (ct, name) = rest.split_once('/')?;
    let content = FileContent::parse(ct)?;
    if storage != "local" || name.contains('/') || name.starts_with('.') || name.is_empty() {
        return None;
    }
    let path = storage_dir(shared, storage)
        .join(content.subdir())
        .join(name);
    path.is_file().then_some((path, content))
}

/// A disk image's size as a guest sees it: a qcow2's virtual size from its header, else
/// the file's length.
pub(crate) fn image_size(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 32];
    if f.read_exact(&mut head).is_ok() && head[..4] == *b"QFI\xfb" {
        let mut size = [0u8; 8];
        size.copy_from_slice(&head[24..32]);
        return Ok(u64::from_be_bytes(size));
    }
    Ok(len)
}

/// PVE's `encode_text`, for a worker id that must not hold `:` or the like.
pub(crate) fn encode_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c.to_string()
            } else {
                format!("\\x{:02x}", c as u32 & 0xff)
            }
        })
        .collect()
}

/// `1.5 MiB`-style sizes for task logs.
pub(crate) fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// The checksum algorithms PVE names; the ones this simulator can compute.
pub(crate) fn digest_algorithm(name: &str) -> ApiResult<&'static ring::digest::Algorithm> {
    match name {
        "sha1" => Ok(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        "sha256" => Ok(&ring::digest::SHA256),
        "sha384" => Ok(&ring::digest::SHA384),
        "sha512" => Ok(&ring::digest::SHA512),
        "md5" | "sha224" => Err(ApiError::param(
            "checksum-algorithm",
            format!("pvesim cannot compute {name} (use sha256 or sha512)"),
        )),
        other => Err(ApiError::param(
            "checksum-algorithm",
            format!(
                "value '{other}' does not have a value in the enumeration 'md5, sha1, sha224, \
                 sha256, sha384, sha512'"
            ),
        )),
    }
}

/// `checksum` and `checksum-algorithm`, each of which requires the other.
pub(crate) fn checksum_params(
    checksum: Option<&str>,
    algorithm: Option<&str>,
) -> ApiResult<Option<(&'static ring::digest::Algorithm, String)>> {
    match (checksum, algorithm) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ApiError::param(
            "checksum-algorithm",
            "parameter is missing (required by 'checksum')",
        )),
        (None, Some(_)) => Err(ApiError::param(
            "checksum",
            "parameter is missing (required by 'checksum-algorithm')",
        )),
        (Some(sum), Some(alg)) => Ok(Some((
            digest_algorithm(alg)?,
            sum.trim().to_ascii_lowercase(),
        ))),
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(d: &ring::digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
