//! SSH keys of a guest: its ed25519 host key, kept in the guest's own folder (as a real guest
//! keeps `/etc/ssh/ssh_host_ed25519_key`) so it survives simulator restarts and changes only
//! when the guest is recreated; and the authorized keys cloud-init installed.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::error::BootError;

/// Where the host key lives inside the guest's folder.
pub(crate) const HOST_KEY_FILE: &str = "etc/ssh/ssh_host_ed25519_key";

/// The guest's host key: read from its folder, or made (first boot) and written there.
pub(crate) fn load_or_create(dir: &Path, comment: &str) -> Result<PrivateKey, BootError> {
    let path = dir.join(HOST_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            // A key that cannot be read is an error, not a reason to make a new one: clients
            // pin host keys, and a changed key must only ever happen on purpose.
            return PrivateKey::from_openssh(text.as_bytes()).map_err(|e| BootError::HostKey {
                path,
                message: e.to_string(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(BootError::Io { path, source }),
    }
    let seed = crate::ids::random_bytes::<32>();
    let keypair = Ed25519Keypair::from_seed(&seed);
    let key =
        PrivateKey::new(KeypairData::from(keypair), comment).map_err(|e| BootError::HostKey {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| BootError::HostKey {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BootError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let io = |p: &Path| {
        let p: PathBuf = p.to_path_buf();
        move |e: crate::error::SimError| BootError::HostKey {
            path: p,
            message: e.to_string(),
        }
    };
    crate::tls::write_private(&path, &private).map_err(io(&path))?;
    let pub_path = path.with_extension("pub");
    crate::tls::write_file(&pub_path, &format!("{}\n", public_line(&key)))
        .map_err(io(&pub_path))?;
    tracing::info!(path = %path.display(), fingerprint = %fingerprint(key.public_key()), "pvesim: new guest host key");
    Ok(key)
}

/// `ssh-ed25519 AAAA... comment`, as in `known_hosts` and `.pub` files.
pub(crate) fn public_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap_or_default()
}

/// `SHA256:...`, as `ssh-keygen -l` and OpenSSH's prompts show it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The fingerprint of a public key line (`None` if it does not parse).
pub(crate) fn fingerprint_of_line(line: &str) -> Option<String> {
    PublicKey::from_openssh(line).ok().map(|k| fingerprint(&k))
}

/// One `authorized_keys` line: `[options] type base64 [comment]`. Options may hold quoted
/// spaces, so the key is found by trying each place a key type can start.
pub(crate) fn parse_authorized(line: &str) -> Option<PublicKey> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if let Ok(k) = PublicKey::from_openssh(line) {
        return Some(k);
    }
    const TYPES: [&str; 4] = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    line.char_indices()
        .filter(|(i, _)| *i == 0 || line[..*i].ends_with([' ', '\t']))
        .map(|(i, _)| &line[i..])
        .filter(|rest| TYPES.iter().any(|t| rest.starts_with(t)))
        .find_map(|rest| PublicKey::from_openssh(rest).ok())
}

/// Whether `offered` is among the authorized key lines.
pub(crate) fn is_authorized(lines: &[String], offered: &PublicKey) -> bool {
    lines
        .iter()
        .filter_map(|l| parse_authorized(l))
        .any(|k| k.key_data() == offered.key_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    #[test]
    fn host_key_is_stable_in_its_folder() {
        let dir = std::env::temp_dir().join(format!(
            "pvesim-keytest-{}-{}",
            std::process::id(),
            crate::ids::random_hex(8)
        ));
        let a = load_or_create(&dir, "root@a").unwrap();
        let b = load_or_create(&dir, "root@a").unwrap();
        assert_eq!(public_line(&a), public_line(&b));
        assert!(public_line(&a).starts_with("ssh-ed25519 "));
        assert!(fingerprint(a.public_key()).starts_with("SHA256:"));
        std::fs::write(dir.join(HOST_KEY_FILE), "garbage").unwrap();
        assert!(matches!(
            load_or_create(&dir, "root@a"),
            Err(BootError::HostKey { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn authorized_lines_with_options_and_comments() {
        let k = key(1);
        let line = public_line(&k);
        let other = public_line(&key(2));
        let with_opts = format!("from=\"127.0.0.1, ::1\",no-pty {line}");
        for lines in [vec![line.clone()], vec![other.clone(), with_opts]] {
            assert!(is_authorized(&lines, k.public_key()), "{lines:?}");
        }
        assert!(!is_authorized(
            &[other, "# comment".into(), "junk".into()],
            k.public_key()
        ));
    }
}
