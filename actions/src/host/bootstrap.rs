//! `driver host bootstrap` (the original's bootstrap-install): this driver and
//! the site-config onto the host, where `driver` on it finds them (the
//! binary in `/usr/local/bin`, the site-config in `/usr/local/etc/homestak`,
//! the FHS place site-config discovery looks).

use std::path::PathBuf;

use super::{Host, HostError, Report, Shell, SHORT};
use crate::ssh::shell_quote;

pub const BINARY: &str = "/usr/local/bin/driver";
pub const SITE: &str = "/usr/local/etc/homestak";

pub struct BootstrapOptions {
    pub binary: PathBuf,
    /// `driver --version` of the binary: an installed copy saying the same (and
    /// of the same size) is kept.
    pub version: String,
    /// Site-config files (path inside it, text), secrets as stored (encrypted or not).
    pub site_files: Vec<(String, String)>,
    pub dry_run: bool,
}

pub async fn bootstrap(h: &Host, o: &BootstrapOptions) -> Result<Report, HostError> {
    let mut r = Report::default();
    let size = std::fs::metadata(&o.binary)
        .map_err(|e| HostError::Local {
            command: format!("read {}", o.binary.display()),
            source: e,
        })?
        .len();
    let bin = shell_quote(&h.path(BINARY));
    let have = h
        .run(
            &format!("{bin} --version 2>/dev/null; wc -c < {bin} 2>/dev/null"),
            SHORT,
        )
        .await?;
    let same = have.stdout.split_whitespace().eq(o
        .version
        .split_whitespace()
        .chain([size.to_string().as_str()]));
    if same {
        r.unchanged(format!("{BINARY} ({})", o.version.trim()));
    } else {
        if !o.dry_run {
            h.ok(&format!("mkdir -p \"$(dirname {bin})\""), SHORT)
                .await?;
            match &h.shell {
                Shell::Ssh(c) => {
                    c.upload_file(
                        &o.binary,
                        &h.path(BINARY),
                        0o755,
                        std::time::Duration::from_secs(600),
                    )
                    .await?
                }
                Shell::Local => {
                    let dest = h.path(BINARY);
                    // Copied aside and renamed: a running driver there is not disturbed.
                    let tmp = format!("{dest}.new");
                    std::fs::copy(&o.binary, &tmp)
                        .and_then(|_| std::fs::rename(&tmp, &dest))
                        .map_err(|e| HostError::Local {
                            command: format!("copy to {dest}"),
                            source: e,
                        })?;
                }
            }
        }
        r.changed
            .push(format!("installed {BINARY} ({})", o.version.trim()));
    }
    let mut wrote = 0;
    for (rel, text) in &o.site_files {
        let path = format!("{SITE}/{rel}");
        let mode = if rel == "secrets.yaml" { 0o600 } else { 0o644 };
        let mut sub = Report::default();
        if h.ensure_file(&path, text, mode, o.dry_run, &mut sub)
            .await?
        {
            wrote += 1;
            r.changed.extend(sub.changed);
        }
    }
    if wrote == 0 {
        r.unchanged(format!("{SITE}: {} file(s)", o.site_files.len()));
    }
    Ok(r)
}
