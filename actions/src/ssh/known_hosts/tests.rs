//! Tests for host-key checking: key parsing and fingerprints, known_hosts host
//! patterns, the trust policies, pinning, and recording new keys.

use super::*;

// Two ed25519 public keys made by ssh-keygen.
const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFBxZD1IuBXuN0EIAztR9FPtfSxt1tZ332N8E1WwZFoC";
/// `ssh-keygen -lf` of K1.
const K1_FP: &str = "SHA256:PxXDiRollYrolMgbt95A03Vl36lI1eIFr+aql7OaooY";
const K2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAkokM+DKC/DGL1D+8c+agQf1ku5u8+4ce60amX1rqtC";

fn k(s: &str) -> HostKey {
    HostKey::parse(s).expect("test key parses")
}

#[test]
fn parses_keys_and_fingerprints() {
    let key = k(K1);
    assert_eq!(key.key_type, "ssh-ed25519");
    assert_eq!(key.fingerprint(), K1_FP);
    assert_ne!(key.fingerprint(), k(K2).fingerprint());
    // Type field must agree with the blob.
    assert!(HostKey::parse(&K1.replace("ssh-ed25519", "ssh-rsa")).is_none());
}

#[test]
fn wildcards() {
    assert!(wildcard("*", "anything"));
    assert!(wildcard("10.0.0.?", "10.0.0.5"));
    assert!(!wildcard("10.0.0.?", "10.0.0.55"));
    assert!(wildcard("*.example.com", "a.b.example.com"));
    assert!(!wildcard("*.example.com", "example.com"));
    assert!(wildcard("[127.0.0.1]:*", "[127.0.0.1]:2222"));
}

fn lookup_in(text: &str, host: &str, port: u16) -> Lookup {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    fs::write(&path, text).expect("write");
    Lookup::load(
        &HostKeyCheck {
            policy: HostKeyPolicy::Strict,
            known_hosts: Some(path),
            pinned: None,
        },
        host,
        port,
    )
    .expect("load")
}

#[test]
fn matches_plain_port_negated_and_hashed_entries() {
    let text = format!(
        "# comment\n\
             host-a,10.0.0.1 {K1}\n\
             [10.0.0.2]:2222 {K1}\n\
             10.0.0.* ,!10.0.0.9 {K2}\n\
             @cert-authority *.ca {K2}\n"
    );
    let l = lookup_in(&text, "host-a", 22);
    assert!(matches!(
        l.verify(HostKeyPolicy::Strict, &k(K1)),
        Ok(Verdict::Known)
    ));
    // Port 2222 entry does not answer for port 22 and vice versa.
    let l = lookup_in(&text, "10.0.0.2", 22);
    assert!(l.known.iter().all(|(key, _)| key == &k(K2)));
    let l = lookup_in(&text, "10.0.0.2", 2222);
    assert!(matches!(
        l.verify(HostKeyPolicy::Strict, &k(K1)),
        Ok(Verdict::Known)
    ));
    // A negated pattern excludes the host; the CA line is ignored.
    let l = lookup_in(&text, "10.0.0.9", 22);
    assert!(l.known.is_empty());
    let l = lookup_in(&text, "x.ca", 22);
    assert!(l.known.is_empty());

    // Hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, "hashed-host"))
    let salt = b"0123456789abcdefghij";
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    let tag = ring::hmac::sign(&key, b"hashed-host");
    let line = format!(
        "|1|{}|{} {K2}\n",
        STANDARD.encode(salt),
        STANDARD.encode(tag.as_ref())
    );
    let l = lookup_in(&line, "hashed-host", 22);
    assert!(matches!(
        l.verify(HostKeyPolicy::Strict, &k(K2)),
        Ok(Verdict::Known)
    ));
    let l = lookup_in(&line, "other-host", 22);
    assert!(l.known.is_empty());
}

#[test]
fn changed_key_is_refused_whatever_the_policy() {
    let text = format!("[127.0.0.1]:2200 {K1}\n");
    let l = lookup_in(&text, "127.0.0.1", 2200);
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let e = l.verify(policy, &k(K2)).expect_err("changed key refused");
        let msg = e.to_string();
        assert!(msg.contains("CHANGED"), "{msg}");
        assert!(msg.contains("[127.0.0.1]:2200"), "{msg}");
        assert!(msg.contains(&k(K1).fingerprint()), "{msg}");
        assert!(msg.contains(&k(K2).fingerprint()), "{msg}");
        assert!(msg.contains("ssh-keygen -R '[127.0.0.1]:2200'"), "{msg}");
    }
}

#[test]
fn unknown_host_policies_and_revocation() {
    let l = lookup_in("", "h", 22);
    assert!(matches!(
        l.verify(HostKeyPolicy::Strict, &k(K1)),
        Err(SshError::HostKeyUnknown { .. })
    ));
    assert!(matches!(
        l.verify(HostKeyPolicy::AcceptNew, &k(K1)),
        Ok(Verdict::New)
    ));
    let l = lookup_in(&format!("@revoked * {K1}\n"), "h", 22);
    assert!(matches!(
        l.verify(HostKeyPolicy::AcceptNew, &k(K1)),
        Err(SshError::HostKeyRevoked { .. })
    ));
}

#[test]
fn pinned_key_is_the_whole_truth() {
    let l = Lookup::load(&HostKeyCheck::pinned(k(K1)), "h", 22).expect("load");
    assert!(matches!(
        l.verify(HostKeyPolicy::Strict, &k(K1)),
        Ok(Verdict::Known)
    ));
    let e = l
        .verify(HostKeyPolicy::AcceptNew, &k(K2))
        .expect_err("refused");
    assert!(e.to_string().contains("recorded for this node"), "{e}");
}

#[test]
fn a_link_planted_as_the_file_is_never_written_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").expect("write");
    let path = dir.path().join("known_hosts");
    std::os::unix::fs::symlink(&victim, &path).expect("symlink");
    assert!(record(&path, "127.0.0.1", 2222, &k(K1)).is_err());
    assert!(forget(&path, "127.0.0.1", 2222).is_err());
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
}

#[test]
fn records_new_keys_appending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/known_hosts");
    record(&path, "127.0.0.1", 2222, &k(K1)).expect("record");
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"# no newline"))
        .expect("append");
    record(&path, "h", 22, &k(K2)).expect("record");
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        format!("[127.0.0.1]:2222 {K1}\n# no newline\nh {K2}\n")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
