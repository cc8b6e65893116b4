//! SOPS files (YAML, age recipients): decrypting and encrypting them the way
//! the `sops` tool does, so files pass between the two.
//!
//! The format, as sops writes it:
//! - every selected value becomes `ENC[AES256_GCM,data:..,iv:..,tag:..,type:..]`:
//!   AES-256-GCM under one random 32-byte data key, a 32-byte IV, and the
//!   value's key path as additional data (`a:b:` for `a: {b: ..}`; sequence
//!   items share their parent's path);
//! - the data key is wrapped to each age recipient (`sops.age[].enc`, armored);
//! - `sops.mac` is the upper-case hex SHA-512 over every value in document
//!   order, itself encrypted with `sops.lastmodified` as additional data, so a
//!   changed, removed or reordered value is detected.
//!
//! Comments are not carried through (sops encrypts them; we drop them).
//!
//! This module holds the document side: the errors, walking the tree to
//! decrypt or encrypt it, and the MAC over its values. The `sops:` block is
//! read and dated in `metadata`, which values are encrypted is decided in
//! `selector`, and the cryptography of one value is in `value`.

mod metadata;
mod selector;
mod value;

pub use metadata::Metadata;
pub use selector::Selector;

use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use super::age::{self, AgeError, Recipient};
use super::identities::Identities;
use super::secret::Secret;
use super::tree::{Kind, Leaf, NonStringKey, Tree};
use crate::yaml::{self, Node, Value};

use metadata::{now_rfc3339, parse_metadata, rfc3339_seconds};
use selector::CompiledSelector;
use value::{aad, constant_eq, decrypt_value, encrypt_value, hex_upper, typed_leaf};

/// The sops format version our output follows (the 3.8+ layout: no empty
/// `kms`/`pgp`/... lists).
pub const SOPS_FORMAT_VERSION: &str = "3.9.4";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SopsError {
    #[error("YAML syntax error at line {line}, column {col}: {message}")]
    Yaml {
        message: String,
        line: usize,
        col: usize,
    },
    #[error("the document is not a mapping, so it cannot be a secrets file")]
    NotAMap,
    #[error("this file is not encrypted with sops (it has no 'sops' metadata)")]
    NotEncrypted,
    #[error("this file is already encrypted with sops")]
    AlreadyEncrypted,
    #[error("the sops metadata is incomplete or invalid: {0}")]
    Metadata(String),
    #[error("the file has no age recipients (driver reads only age-encrypted sops files)")]
    NoAgeRecipients,
    #[error(
        "no age identity for this file: it is encrypted to {}; identities tried: {}",
        recipients.join(", "),
        if sources.is_empty() { "none found".to_string() } else { sources.join(", ") }
    )]
    NoIdentity {
        recipients: Vec<String>,
        sources: Vec<String>,
    },
    #[error("the age-wrapped data key for {recipient}: {source}")]
    DataKey {
        recipient: String,
        #[source]
        source: AgeError,
    },
    #[error("the value at '{path}' cannot be decrypted: {reason}")]
    Value { path: String, reason: String },
    #[error(
        "MAC mismatch: the file's contents do not match the MAC sops recorded — \
         it was changed after it was encrypted (or is damaged); refusing to use it"
    )]
    MacMismatch,
    #[error("the MAC cannot be decrypted: the MAC or 'lastmodified' was changed, or the file is damaged; refusing to use it")]
    MacUnreadable,
    #[error(transparent)]
    NonStringKey(#[from] NonStringKey),
    #[error("invalid {what} regex in the sops settings: {why}")]
    Regex { what: &'static str, why: String },
    #[error(transparent)]
    Age(#[from] AgeError),
}

/// A decrypted sops file.
#[derive(Debug)]
pub struct Decrypted {
    pub tree: Tree,
    pub metadata: Metadata,
    /// The recipient whose identity opened it.
    pub opened_by: String,
}

fn parse_yaml(text: &str) -> Result<Node, SopsError> {
    yaml::parse(text).map_err(|e| SopsError::Yaml {
        message: e.message,
        line: e.line,
        col: e.col,
    })
}

/// Is this text a sops-encrypted document (a mapping with `sops.mac`)?
pub fn is_encrypted(text: &str) -> bool {
    yaml::parse(text)
        .ok()
        .and_then(|n| n.get("sops").map(|s| s.get("mac").is_some()))
        .unwrap_or(false)
}

/// Decrypts a sops YAML document with the identities given.
pub fn decrypt(text: &str, identities: &Identities) -> Result<Decrypted, SopsError> {
    let root = parse_yaml(text)?;
    let Value::Map(entries) = &root.value else {
        return Err(SopsError::NotAMap);
    };
    let sops = root.get("sops").ok_or(SopsError::NotEncrypted)?;
    let metadata = parse_metadata(sops)?;
    if metadata.age.is_empty() {
        return Err(SopsError::NoAgeRecipients);
    }

    let ids = identities.identities();
    let mut data_key = None;
    for (recipient, enc) in &metadata.age {
        match age::decrypt(enc.as_bytes(), &ids) {
            Ok(k) => {
                let key: [u8; 32] =
                    k.expose()
                        .as_slice()
                        .try_into()
                        .map_err(|_| SopsError::DataKey {
                            recipient: recipient.clone(),
                            source: AgeError::Malformed("the data key is not 32 bytes"),
                        })?;
                data_key = Some((Secret::new(key), recipient.clone()));
                break;
            }
            Err(AgeError::NoMatchingIdentity { .. }) => continue,
            Err(e) => {
                return Err(SopsError::DataKey {
                    recipient: recipient.clone(),
                    source: e,
                })
            }
        }
    }
    let Some((key, opened_by)) = data_key else {
        return Err(SopsError::NoIdentity {
            recipients: metadata.age.iter().map(|(r, _)| r.clone()).collect(),
            sources: identities.sources(),
        });
    };

    let selector = metadata.selector.compile()?;
    let mut hash = Sha512::new();
    let mut path = Vec::new();
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = k.as_str() else {
            return Err(NonStringKey {
                path: format!("({})", k.kind()),
            }
            .into());
        };
        if name == "sops" {
            continue;
        }
        path.push(name.to_string());
        let t = decrypt_node(v, &mut path, key.expose(), &selector, &metadata, &mut hash)?;
        path.pop();
        out.push((name.to_string(), t));
    }

    let (mac_plain, _) = decrypt_value(
        &metadata.mac,
        key.expose(),
        &rfc3339_seconds(&metadata.lastmodified),
    )
    .map_err(|_| SopsError::MacUnreadable)?;
    let computed = hex_upper(&hash.finalize());
    if !constant_eq(mac_plain.expose(), computed.as_bytes()) {
        return Err(SopsError::MacMismatch);
    }
    tracing::debug!("sops MAC verified");
    Ok(Decrypted {
        tree: Tree::Map(out),
        metadata,
        opened_by,
    })
}

fn decrypt_node(
    node: &Node,
    path: &mut Vec<String>,
    key: &[u8; 32],
    selector: &CompiledSelector,
    meta: &Metadata,
    hash: &mut Sha512,
) -> Result<Tree, SopsError> {
    match &node.value {
        Value::Null => Ok(Tree::Null),
        Value::Seq(items) => Ok(Tree::Seq(
            items
                .iter()
                .map(|n| decrypt_node(n, path, key, selector, meta, hash))
                .collect::<Result<_, _>>()?,
        )),
        Value::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let Some(name) = k.as_str() else {
                    return Err(NonStringKey {
                        path: format!("{}:({})", path.join(":"), k.kind()),
                    }
                    .into());
                };
                path.push(name.to_string());
                let t = decrypt_node(v, path, key, selector, meta, hash)?;
                path.pop();
                out.push((name.to_string(), t));
            }
            Ok(Tree::Map(out))
        }
        _ => {
            let encrypted = selector.encrypts(path);
            let leaf = if encrypted {
                match &node.value {
                    // sops leaves empty strings as they are.
                    Value::Str(s) if s.is_empty() => Leaf::str(""),
                    Value::Str(s) => {
                        let at = aad(path);
                        let fail = |reason: String| SopsError::Value {
                            path: at.clone(),
                            reason,
                        };
                        let (plain, kind) = decrypt_value(s, key, &at).map_err(fail)?;
                        typed_leaf(plain, &kind).map_err(fail)?
                    }
                    _ => {
                        return Err(SopsError::Value {
                            path: aad(path),
                            reason: format!("it should be encrypted but is {}", node.kind()),
                        })
                    }
                }
            } else {
                match Tree::from_node(node)? {
                    Tree::Leaf(l) => l,
                    _ => Leaf::str(""),
                }
            };
            if encrypted || !meta.mac_only_encrypted {
                hash.update(leaf.sops_bytes());
            }
            Ok(Tree::Leaf(leaf))
        }
    }
}

/// How to encrypt: to whom, and which values.
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    pub recipients: Vec<Recipient>,
    pub selector: Selector,
}

/// Encrypts a plaintext tree into sops YAML (4-space indent, as sops writes).
pub fn encrypt(tree: &Tree, opts: &EncryptOptions) -> Result<String, SopsError> {
    let Tree::Map(entries) = tree else {
        return Err(SopsError::NotAMap);
    };
    if entries.iter().any(|(k, _)| k == "sops") {
        return Err(SopsError::AlreadyEncrypted);
    }
    if opts.recipients.is_empty() {
        return Err(SopsError::NoAgeRecipients);
    }
    let selector = opts.selector.clone().or_default();
    let compiled = selector.compile()?;
    let mut key = age::random::<32>()?;
    let key_s = Secret::new(key);
    key.zeroize();
    let key = key_s.expose();

    let mut hash = Sha512::new();
    let mut path = Vec::new();
    let data = encrypt_tree(tree, &mut path, key, &compiled, &mut hash)?;

    let lastmodified = now_rfc3339();
    let mac = encrypt_value(
        hex_upper(&hash.finalize()).as_bytes(),
        "str",
        key,
        &lastmodified,
    )?;
    let mut age_entries = Vec::new();
    for r in &opts.recipients {
        let enc = age::encrypt_armored(key, &[*r])?;
        age_entries.push(Tree::Map(vec![
            ("recipient".into(), Tree::Leaf(Leaf::str(r.to_string()))),
            ("enc".into(), Tree::Leaf(Leaf::str(enc))),
        ]));
    }
    let mut meta = vec![
        ("age".to_string(), Tree::Seq(age_entries)),
        ("lastmodified".into(), Tree::Leaf(Leaf::str(lastmodified))),
        ("mac".into(), Tree::Leaf(Leaf::str(mac))),
    ];
    for (k, v) in selector.entries() {
        meta.push((k.to_string(), Tree::Leaf(Leaf::str(v))));
    }
    meta.push(("version".into(), Tree::Leaf(Leaf::str(SOPS_FORMAT_VERSION))));
    let Tree::Map(mut doc) = data else {
        return Err(SopsError::NotAMap);
    };
    doc.push(("sops".into(), Tree::Map(meta)));
    Ok(super::emit::to_yaml(&Tree::Map(doc), 4))
}

fn encrypt_tree(
    t: &Tree,
    path: &mut Vec<String>,
    key: &[u8; 32],
    selector: &CompiledSelector,
    hash: &mut Sha512,
) -> Result<Tree, SopsError> {
    Ok(match t {
        Tree::Null => Tree::Null,
        Tree::Seq(items) => Tree::Seq(
            items
                .iter()
                .map(|i| encrypt_tree(i, path, key, selector, hash))
                .collect::<Result<_, _>>()?,
        ),
        Tree::Map(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                path.push(k.clone());
                let e = encrypt_tree(v, path, key, selector, hash)?;
                path.pop();
                out.push((k.clone(), e));
            }
            Tree::Map(out)
        }
        Tree::Leaf(l) => {
            hash.update(l.sops_bytes());
            if !selector.encrypts(path) {
                Tree::Leaf(l.clone())
            } else if l.kind == Kind::Str && l.text.is_empty() {
                Tree::Leaf(Leaf::str(""))
            } else {
                Tree::Leaf(Leaf::str(encrypt_value(
                    l.sops_bytes(),
                    l.kind.sops_type(),
                    key,
                    &aad(path),
                )?))
            }
        }
    })
}

/// Parses plaintext YAML into a tree for `encrypt`.
pub fn parse_plain(text: &str) -> Result<Tree, SopsError> {
    let node = parse_yaml(text)?;
    if node.get("sops").is_some_and(|s| s.get("mac").is_some()) {
        return Err(SopsError::AlreadyEncrypted);
    }
    let tree = Tree::from_node(&node)?;
    if !matches!(tree, Tree::Map(_)) {
        return Err(SopsError::NotAMap);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::age::Identity;
    use crate::secrets::identities::IdentitySource;

    fn ids(id: &Identity) -> Identities {
        let mut i = Identities::default();
        i.push(id.clone(), IdentitySource::EnvKey);
        i
    }

    #[test]
    fn round_trip_keeps_types_and_order() {
        let id = Identity::generate().unwrap();
        let src = "b: hello\na: \"\"\nc: 12\nd: 1.5\ne: true\nf: [x, 2, false]\ng:\n  h_unencrypted: plain\n  i: ~\n";
        let tree = parse_plain(src).unwrap();
        let enc = encrypt(
            &tree,
            &EncryptOptions {
                recipients: vec![id.recipient()],
                selector: Selector::default(),
            },
        )
        .unwrap();
        assert!(!enc.contains("hello"), "{enc}");
        assert!(enc.contains("h_unencrypted: plain"), "{enc}");
        assert!(enc.contains("type:bool]"), "{enc}");
        let d = decrypt(&enc, &ids(&id)).unwrap();
        assert_eq!(d.tree, tree);
        assert_eq!(super::super::emit::to_yaml(&d.tree, 2), "b: hello\na: \"\"\nc: 12\nd: 1.5\ne: true\nf:\n  - x\n  - 2\n  - false\ng:\n  h_unencrypted: plain\n  i: null\n");
    }

    #[test]
    fn tampering_is_refused() {
        let id = Identity::generate().unwrap();
        let tree = parse_plain("a: one\nb: two\nplain_unencrypted: x\n").unwrap();
        let enc = encrypt(
            &tree,
            &EncryptOptions {
                recipients: vec![id.recipient()],
                selector: Selector::default(),
            },
        )
        .unwrap();
        // Swapping two encrypted values breaks their additional data.
        let lines: Vec<&str> = enc.lines().collect();
        let (a, b) = (
            lines[0].replacen("a: ", "b: ", 1),
            lines[1].replacen("b: ", "a: ", 1),
        );
        let swapped = format!("{b}\n{a}\n{}\n", lines[2..].join("\n"));
        assert!(matches!(
            decrypt(&swapped, &ids(&id)),
            Err(SopsError::Value { .. })
        ));
        // A changed unencrypted value is caught by the MAC.
        let changed = enc.replace("plain_unencrypted: x", "plain_unencrypted: y");
        assert_eq!(
            decrypt(&changed, &ids(&id)).unwrap_err(),
            SopsError::MacMismatch
        );
        // Removing a value too.
        let removed: String = enc.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            decrypt(&removed, &ids(&id)).unwrap_err(),
            SopsError::MacMismatch
        );
        // And a wrong key says which recipients the file is for.
        let other = Identity::generate().unwrap();
        let e = decrypt(&enc, &ids(&other)).unwrap_err();
        assert!(e.to_string().contains(&id.recipient().to_string()), "{e}");
    }
}
