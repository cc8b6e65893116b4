//! The real sops vector (tests/fixtures/sops, made by sops 3.7.1 with age):
//! our decryption gives exactly its plaintext, and tampering is refused.

use std::path::PathBuf;

use engine::secrets::sops::{self, SopsError};
use engine::secrets::{to_yaml, Identities, IdentityEnv, Tree};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sops")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn identities() -> Identities {
    let env = IdentityEnv {
        sops_age_key: Some(fixture("age-test-key.txt").into()),
        ..Default::default()
    };
    Identities::load(&env).expect("test key loads")
}

#[test]
fn decrypts_to_exactly_the_plaintext() {
    let d = sops::decrypt(&fixture("real-sops-3.7.1-age.enc.yaml"), &identities()).unwrap();
    let plain = fixture("real-sops-3.7.1-age.plain.yaml");
    // Same document...
    let expected = Tree::from_node(&engine::yaml::parse(&plain).unwrap()).unwrap();
    assert_eq!(d.tree, expected);
    // ...and the same text, byte for byte.
    assert_eq!(to_yaml(&d.tree, 2), plain);
    assert_eq!(
        d.opened_by,
        "age106dn94074uskzjua39h4v0ql89l528wrqp2f84xpcznpr9f6ye4q9k8hp8"
    );
    assert_eq!(d.metadata.version.as_deref(), Some("3.7.1"));
}

/// Flips one base64 character inside `data:` of the first line containing `marker`.
fn flip_in(text: &str, marker: &str) -> String {
    let line_start = text.find(marker).expect("marker present");
    let data = line_start + text[line_start..].find("data:").expect("data:") + "data:".len() + 3;
    let mut bytes = text.as_bytes().to_vec();
    bytes[data] = if bytes[data] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_flipped_byte_in_a_value_is_refused() {
    let enc = fixture("real-sops-3.7.1-age.enc.yaml");
    let bad = flip_in(&enc, "SOME SECRET:");
    let e = sops::decrypt(&bad, &identities()).unwrap_err();
    assert!(
        matches!(&e, SopsError::Value { path, .. } if path == "secrets:SOME SECRET:"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("cannot be decrypted") && msg.contains("changed"),
        "{msg}"
    );
    assert!(!msg.contains("0x629A673A"), "{msg}");
}

#[test]
fn a_flipped_byte_in_the_mac_is_refused() {
    let enc = fixture("real-sops-3.7.1-age.enc.yaml");
    let bad = flip_in(&enc, "mac: ENC[");
    let e = sops::decrypt(&bad, &identities()).unwrap_err();
    assert_eq!(e, SopsError::MacUnreadable);
    assert!(e.to_string().contains("refusing"), "{e}");

    // Changing lastmodified (the MAC's additional data) is caught too.
    let bad = enc.replace("2022-05-23T12:25:56Z", "2022-05-23T12:25:57Z");
    assert_eq!(
        sops::decrypt(&bad, &identities()).unwrap_err(),
        SopsError::MacUnreadable
    );
    // Blanking the value (an empty value is legal, unencrypted sops syntax)
    // leaves a MAC that no longer matches the contents.
    let start = enc.find("SOME SECRET: ").unwrap() + "SOME SECRET: ".len();
    let end = start + enc[start..].find('\n').unwrap();
    let blanked = format!("{}\"\"{}", &enc[..start], &enc[end..]);
    let e = sops::decrypt(&blanked, &identities()).unwrap_err();
    assert_eq!(e, SopsError::MacMismatch);
    assert!(e.to_string().contains("MAC mismatch"), "{e}");
}

#[test]
fn without_the_key_it_names_the_recipient_not_a_secret() {
    let e = sops::decrypt(
        &fixture("real-sops-3.7.1-age.enc.yaml"),
        &Identities::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("age106dn94074uskzjua39h4v0ql89l528wrqp2f84xpcznpr9f6ye4q9k8hp8"),
        "{msg}"
    );
    assert!(msg.contains("none found"), "{msg}");
}
