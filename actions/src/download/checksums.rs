//! Checksums: which published file lists them, the `sha256sum` and BSD
//! formats it may use, and hashing a (large) file to check against it.

use std::collections::BTreeMap;
use std::path::Path;

use super::{io, Asset, DownloadError};

/// Checksum files we recognize, in order of preference.
pub(super) fn checksum_asset<'a>(assets: &'a [Asset], image: &str) -> Option<&'a Asset> {
    let names = [
        "SHA256SUMS".to_string(),
        "SHA256SUMS.txt".to_string(),
        "sha256sums.txt".to_string(),
        "sha256sums".to_string(),
        "checksums.txt".to_string(),
        format!("{image}.sha256"),
        format!("{image}.sha256sum"),
    ];
    names
        .iter()
        .find_map(|n| assets.iter().find(|a| &a.name == n))
}

/// `sha256sum` lines (`hex  name`, `hex *name`), BSD lines
/// (`SHA256 (name) = hex`), or a lone hash (for `{default_name}`).
pub fn parse_checksums(text: &str, default_name: &str) -> BTreeMap<String, String> {
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(rest) = line.strip_prefix("SHA256 (") {
            if let Some((name, hex)) = rest.split_once(") = ") {
                if is_hex(hex.trim()) {
                    out.insert(name.to_string(), hex.trim().to_ascii_lowercase());
                }
            }
            continue;
        }
        let mut it = line.splitn(2, char::is_whitespace);
        let (Some(hex), rest) = (it.next(), it.next()) else {
            continue;
        };
        if !is_hex(hex) {
            continue;
        }
        let name = rest
            .map(|r| r.trim_start().trim_start_matches('*').trim())
            .filter(|n| !n.is_empty())
            .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
            .unwrap_or_else(|| default_name.to_string());
        out.insert(name, hex.to_ascii_lowercase());
    }
    out
}

/// SHA-256 of a file, hex (on the blocking pool: images are large).
pub async fn sha256_file(path: &Path) -> Result<String, DownloadError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String, DownloadError> {
        use std::io::Read;
        let mut f = std::fs::File::open(&p).map_err(io(&p))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(&p))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    })
    .await
    .map_err(|e| DownloadError::Client(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checksum_formats() {
        let h1 = "a".repeat(64);
        let h2 = "B".repeat(64);
        let text = format!("# sums\n{h1}  debian.qcow2.partaa\n{h2} *dist/debian.qcow2\nSHA256 (other.img) = {h1}\nnot a line\n");
        let m = parse_checksums(&text, "x");
        assert_eq!(m.get("debian.qcow2.partaa"), Some(&h1));
        assert_eq!(m.get("debian.qcow2"), Some(&"b".repeat(64)));
        assert_eq!(m.get("other.img"), Some(&h1));
        assert_eq!(m.len(), 3);
        let lone = parse_checksums(&format!("{h1}\n"), "img.qcow2");
        assert_eq!(lone.get("img.qcow2"), Some(&h1));
    }
}
