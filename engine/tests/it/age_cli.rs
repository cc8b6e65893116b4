//! Interoperability with the real `age` CLI (Debian package `age`): a data key
//! our code wraps opens with `age -d`, and what `age` encrypts opens with ours.
//! These tests fail (never skip) when `age` is missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use engine::secrets::age::{self, Identity, Recipient};

fn tool(name: &str) -> String {
    match Command::new(name).arg("--version").output() {
        Ok(o) if o.status.success() => name.to_string(),
        _ => panic!(
            "`{name}` is not installed; these tests need the real age CLI: \
             run `apt-get install age` (as root) or scripts/install-test-deps.sh"
        ),
    }
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn keygen(dir: &Path) -> (std::path::PathBuf, Recipient) {
    let key = dir.join("key.txt");
    let status = Command::new(tool("age-keygen"))
        .arg("-o")
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .expect("age-keygen");
    assert!(status.success());
    let public = run(Command::new("age-keygen").arg("-y").arg(&key), b"");
    let r = Recipient::parse(String::from_utf8(public).unwrap().trim()).unwrap();
    (key, r)
}

#[test]
fn a_data_key_we_wrap_opens_with_age() {
    let age_bin = tool("age");
    let t = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(t.path());
    let data_key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();

    let armored = age::encrypt_armored(&data_key, &[recipient]).unwrap();
    let file = t.path().join("k.age");
    std::fs::write(&file, &armored).unwrap();
    let out = run(
        Command::new(&age_bin)
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&file),
        b"",
    );
    assert_eq!(out, data_key);

    // Binary format, several recipients, from stdin.
    let other = Identity::generate().unwrap();
    let bin = age::encrypt(&data_key, &[other.recipient(), recipient]).unwrap();
    let out = run(Command::new(&age_bin).arg("-d").arg("-i").arg(&key), &bin);
    assert_eq!(out, data_key);
}

#[test]
fn what_age_encrypts_opens_with_ours() {
    let age_bin = tool("age");
    let t = tempfile::tempdir().unwrap();
    let id = Identity::generate().unwrap();
    let data_key: Vec<u8> = (0u8..32).map(|i| i ^ 0xa5).collect();
    for armor in [true, false] {
        let mut cmd = Command::new(&age_bin);
        cmd.arg("-r").arg(id.recipient().to_string());
        if armor {
            cmd.arg("-a");
        }
        let enc = run(&mut cmd, &data_key);
        assert_eq!(enc.starts_with(b"-----BEGIN AGE"), armor);
        assert_eq!(
            age::decrypt(&enc, std::slice::from_ref(&id))
                .unwrap()
                .expose(),
            &data_key
        );
    }

    // Our identity text is a valid age key file for the CLI, and both agree on its recipient.
    let key = t.path().join("ours.txt");
    std::fs::write(&key, format!("{}\n", id.to_secret_string().expose())).unwrap();
    let public = run(Command::new(tool("age-keygen")).arg("-y").arg(&key), b"");
    assert_eq!(
        String::from_utf8(public).unwrap().trim(),
        id.recipient().to_string()
    );
    let enc = age::encrypt_armored(&data_key, &[id.recipient()]).unwrap();
    let out = run(
        Command::new(&age_bin).arg("-d").arg("-i").arg(&key),
        enc.as_bytes(),
    );
    assert_eq!(out, data_key);
}

#[test]
fn an_age_keygen_identity_loads_and_decrypts() {
    tool("age");
    let t = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(t.path());
    // age-keygen's file has comment lines; SOPS_AGE_KEY_FILE reads it as sops does.
    let ids = engine::secrets::Identities::load(&engine::secrets::IdentityEnv {
        sops_age_key_file: Some(key),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ids.len(), 1);
    let enc = run(
        Command::new("age").arg("-r").arg(recipient.to_string()),
        b"payload",
    );
    assert_eq!(
        age::decrypt(&enc, &ids.identities()).unwrap().expose(),
        b"payload"
    );
}
