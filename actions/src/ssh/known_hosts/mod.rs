//! Host-key checking for our SSH client.
//!
//! libssh2 only hands us the server's key; deciding whether to trust it is
//! ours. The policy, per connection (and per hop of a jump chain):
//!
//! * A key **pinned** by the caller (the key recorded in a node's state when
//!   the guest was first reached) is the only key accepted for that target.
//! * Otherwise the OpenSSH `known_hosts` file given (plain, wildcard,
//!   negated and hashed `|1|` host patterns, `[host]:port` for non-22
//!   ports, `@revoked` honoured, `@cert-authority` ignored) decides.
//! * A host that is known (pinned or in the file) but offers a key that
//!   matches none of its known keys is **refused**, whatever the policy:
//!   the error names the host, the old and new fingerprints and how to fix
//!   it. We treat a different key *type* the same way (OpenSSH would call
//!   it new); we avoid false alarms by asking the server for the known key
//!   types first (see [`Lookup::preferred_algorithms`]).
//! * An unknown host is refused under [`HostKeyPolicy::Strict`]; under
//!   [`HostKeyPolicy::AcceptNew`] (for freshly created guests) it is
//!   accepted, appended to the known_hosts file if one is configured, and
//!   reported back so the caller can pin it in the node's state.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::SshError;

/// What to do with a host whose key we have never seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (the default, like `StrictHostKeyChecking yes`).
    #[default]
    Strict,
    /// Accept and record the key of an unknown host (like OpenSSH's
    /// `accept-new`); changed keys are still refused.
    AcceptNew,
}

/// A server's public host key, in OpenSSH text form (`type base64`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostKey {
    /// e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The key blob, base64 (as in `known_hosts` and `*.pub` files).
    pub key: String,
}

impl HostKey {
    /// From the SSH wire-format blob (whose first field names the type).
    pub fn from_blob(blob: &[u8]) -> Option<HostKey> {
        let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let key_type = std::str::from_utf8(blob.get(4..4 + len)?).ok()?;
        Some(HostKey {
            key_type: key_type.to_string(),
            key: STANDARD.encode(blob),
        })
    }

    /// Parses `type base64 [comment]` (a `.pub` file or `ssh-keyscan` line
    /// without the host field).
    pub fn parse(s: &str) -> Option<HostKey> {
        let mut it = s.split_whitespace();
        let key_type = it.next()?;
        let key = it.next()?;
        let blob = STANDARD.decode(key).ok()?;
        let k = HostKey::from_blob(&blob)?;
        (k.key_type == key_type).then_some(k)
    }

    /// The decoded blob.
    pub fn blob(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.key).ok()
    }

    /// `SHA256:...`, as `ssh-keygen -l` and OpenSSH's warnings print it.
    pub fn fingerprint(&self) -> String {
        let blob = self.blob().unwrap_or_default();
        let d = ring::digest::digest(&ring::digest::SHA256, &blob);
        format!("SHA256:{}", STANDARD_NO_PAD.encode(d.as_ref()))
    }

    /// A `known_hosts` line for this key.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        format!(
            "{} {} {}",
            known_hosts_name(host, port),
            self.key_type,
            self.key
        )
    }

    /// The host-key algorithms that can present a key of this type.
    fn algorithms(&self) -> &'static [&'static str] {
        match self.key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            "ssh-ed25519" => &["ssh-ed25519"],
            "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
            "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
            "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
            "ssh-dss" => &["ssh-dss"],
            _ => &[],
        }
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key_type, self.key)
    }
}

/// How the host keys of one connection (one hop) are checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostKeyCheck {
    pub policy: HostKeyPolicy,
    /// An OpenSSH `known_hosts` file to consult (and, under `AcceptNew`, to
    /// append new keys to). `None`: only `pinned` counts.
    pub known_hosts: Option<PathBuf>,
    /// The one key this target must present (e.g. from the node's state).
    pub pinned: Option<HostKey>,
}

impl HostKeyCheck {
    /// Strict checking against `~/.ssh/known_hosts`.
    pub fn strict_default() -> Self {
        HostKeyCheck {
            policy: HostKeyPolicy::Strict,
            known_hosts: default_known_hosts(),
            pinned: None,
        }
    }

    /// Accept only this key.
    pub fn pinned(key: HostKey) -> Self {
        HostKeyCheck {
            policy: HostKeyPolicy::Strict,
            known_hosts: None,
            pinned: Some(key),
        }
    }

    /// Accept-new, recorded in `known_hosts` if given (and always returned
    /// to the caller through the connection's hops).
    pub fn accept_new(known_hosts: Option<PathBuf>) -> Self {
        HostKeyCheck {
            policy: HostKeyPolicy::AcceptNew,
            known_hosts,
            pinned: None,
        }
    }
}

/// `~/.ssh/known_hosts`, when `$HOME` is set.
pub fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
}

/// The name OpenSSH files a host under: `host` for port 22, else `[host]:port`.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Removes `host`'s entries (plain, unhashed ones) from a known_hosts file:
/// a guest that was destroyed frees its address, and the next guest there
/// has a new key that must not be taken for an attack.
pub fn forget(file: &Path, host: &str, port: u16) -> io::Result<()> {
    // Read-modify-write: two guests destroyed at once must not undo each
    // other's removal (a kept stale key would be refused as "changed").
    static REWRITE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = REWRITE.lock().unwrap_or_else(|p| p.into_inner());
    let name = known_hosts_name(host, port);
    // Never through a link planted in the state folder (O_NOFOLLOW): its
    // target is not ours to rewrite.
    let text = match open_nofollow(file, fs::OpenOptions::new().read(true)) {
        Ok(mut f) => {
            let mut t = String::new();
            io::Read::read_to_string(&mut f, &mut t)?;
            t
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let hosts = l.split_whitespace().next().unwrap_or("");
            !hosts.split(',').any(|h| h == name)
        })
        .collect();
    if kept.len() == text.lines().count() {
        return Ok(());
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    // A new file renamed over the old one: a rename replaces a link
    // itself, never what it points to.
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = open_nofollow(&tmp, fs::OpenOptions::new().write(true).create_new(true))?;
    f.write_all(out.as_bytes())?;
    drop(f);
    fs::rename(&tmp, file)
}

/// Opens without following a symbolic link, 0600 if created.
fn open_nofollow(path: &Path, opts: &mut fs::OpenOptions) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Where a known key came from, for error messages.
#[derive(Clone, Debug)]
enum Source {
    Pinned,
    File { path: PathBuf, line: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Pinned => write!(f, "the key recorded for this node"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// What we know about one host before the handshake.
#[derive(Debug)]
pub(crate) struct Lookup {
    host: String,
    port: u16,
    known: Vec<(HostKey, Source)>,
    revoked: Vec<HostKey>,
}

/// What the check decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known,
    /// Unknown host accepted under `AcceptNew`.
    New,
}

impl Lookup {
    /// Collects the known keys for `host:port` (pinned key, then file).
    pub(crate) fn load(check: &HostKeyCheck, host: &str, port: u16) -> Result<Lookup, SshError> {
        let mut l = Lookup {
            host: host.to_string(),
            port,
            known: Vec::new(),
            revoked: Vec::new(),
        };
        if let Some(k) = &check.pinned {
            l.known.push((k.clone(), Source::Pinned));
            // A pinned key is the whole truth for this target.
            return Ok(l);
        }
        if let Some(path) = &check.known_hosts {
            let text = match fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(SshError::KnownHostsFile {
                        path: path.clone(),
                        source: e,
                    })
                }
            };
            let name = known_hosts_name(host, port).to_ascii_lowercase();
            for (i, line) in text.lines().enumerate() {
                let Some(entry) = parse_line(line) else {
                    continue;
                };
                if !entry.matches(&name) {
                    continue;
                }
                match entry.marker {
                    Marker::None => l.known.push((
                        entry.key,
                        Source::File {
                            path: path.clone(),
                            line: i + 1,
                        },
                    )),
                    Marker::Revoked => l.revoked.push(entry.key),
                    Marker::CertAuthority => {}
                }
            }
        }
        Ok(l)
    }

    /// libssh2 host-key algorithm preference: the types we know first, so
    /// the server presents a key we can compare.
    pub(crate) fn preferred_algorithms(&self, supported: &[&str]) -> Option<String> {
        if self.known.is_empty() {
            return None;
        }
        let mut out: Vec<&str> = Vec::new();
        for (k, _) in &self.known {
            for a in k.algorithms() {
                if supported.contains(a) && !out.contains(a) {
                    out.push(a);
                }
            }
        }
        for a in supported {
            if !out.contains(a) {
                out.push(a);
            }
        }
        Some(out.join(","))
    }

    /// Decides on the key the server offered.
    pub(crate) fn verify(
        &self,
        policy: HostKeyPolicy,
        offered: &HostKey,
    ) -> Result<Verdict, SshError> {
        if self.revoked.iter().any(|k| k == offered) {
            return Err(SshError::HostKeyRevoked {
                host: known_hosts_name(&self.host, self.port),
                fingerprint: offered.fingerprint(),
            });
        }
        if self.known.iter().any(|(k, _)| k == offered) {
            return Ok(Verdict::Known);
        }
        // Known host, other key: prefer reporting a key of the same type.
        let old = self
            .known
            .iter()
            .find(|(k, _)| k.key_type == offered.key_type)
            .or(self.known.first());
        if let Some((old, source)) = old {
            let name = known_hosts_name(&self.host, self.port);
            let fix = match source {
                Source::Pinned => format!(
                    "if the guest was rebuilt on purpose, forget the host key recorded in the node's state \
                     (destroy and re-create the node); otherwise treat {name} as compromised"
                ),
                Source::File { path, .. } => format!(
                    "if the host was rebuilt on purpose, remove the old key with `ssh-keygen -R '{name}' -f {}`; \
                     otherwise treat {name} as compromised",
                    path.display()
                ),
            };
            return Err(SshError::HostKeyChanged {
                host: name,
                known_fingerprint: format!("{} {}", old.key_type, old.fingerprint()),
                offered_fingerprint: format!("{} {}", offered.key_type, offered.fingerprint()),
                known_from: source.to_string(),
                fix,
            });
        }
        match policy {
            HostKeyPolicy::AcceptNew => Ok(Verdict::New),
            HostKeyPolicy::Strict => Err(SshError::HostKeyUnknown {
                host: known_hosts_name(&self.host, self.port),
                fingerprint: format!("{} {}", offered.key_type, offered.fingerprint()),
            }),
        }
    }
}

/// Appends a newly accepted key to a known_hosts file (created 0600, its
/// directory 0700, like OpenSSH does).
pub(crate) fn record(path: &Path, host: &str, port: u16, key: &HostKey) -> Result<(), SshError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |e| SshError::KnownHostsFile {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
    }
    let mut f = open_nofollow(
        path,
        fs::OpenOptions::new().create(true).append(true).read(true),
    )
    .map_err(err)?;
    // A file written by hand may lack the final newline.
    let needs_nl = {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        match f.seek(SeekFrom::End(-1)) {
            Ok(_) => f.read_exact(&mut last).is_ok() && last[0] != b'\n',
            Err(_) => false,
        }
    };
    let mut line = String::new();
    if needs_nl {
        line.push('\n');
    }
    line.push_str(&key.known_hosts_line(host, port));
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(err)
}

#[derive(Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
struct Entry {
    marker: Marker,
    hosts: String,
    key: HostKey,
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let key_type = fields.next()?;
    let key = fields.next()?;
    let key = HostKey::parse(&format!("{key_type} {key}"))?;
    Some(Entry {
        marker,
        hosts: first.to_string(),
        key,
    })
}

impl Entry {
    /// Does this entry's host field name `name` (already lowercased)?
    fn matches(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut hit = false;
        for pat in self.hosts.split(',') {
            let (neg, pat) = match pat.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, pat),
            };
            if wildcard(&pat.to_ascii_lowercase(), name) {
                if neg {
                    return false;
                }
                hit = true;
            }
        }
        hit
    }
}

/// `|1|salt|hash`: HMAC-SHA1(key = salt, message = name) == hash.
fn hashed_matches(rest: &str, name: &str) -> bool {
    let Some((salt, hash)) = rest.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// OpenSSH host patterns: `*` any run, `?` one character.
fn wildcard(pat: &str, s: &str) -> bool {
    let (p, s) = (pat.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests;
