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

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use super::age::{self, AgeError, Recipient};
use super::identities::Identities;
use super::secret::Secret;
use super::tree::{go_float, Kind, Leaf, NonStringKey, Tree};
use crate::yaml::{self, Node, Value};

/// The sops format version our output follows (the 3.8+ layout: no empty
/// `kms`/`pgp`/... lists).
pub const SOPS_FORMAT_VERSION: &str = "3.9.4";
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

type Aes256Gcm32 = AesGcm<Aes256, U32>;

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

/// Which values are encrypted: sops' four mutually exclusive selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<String>,
    pub encrypted_regex: Option<String>,
}

struct CompiledSelector {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex_lite::Regex>,
    encrypted_regex: Option<regex_lite::Regex>,
}

impl Selector {
    fn is_empty(&self) -> bool {
        self == &Selector::default()
    }

    /// sops' default when nothing is chosen.
    fn or_default(mut self) -> Self {
        if self.is_empty() {
            self.unencrypted_suffix = Some(DEFAULT_UNENCRYPTED_SUFFIX.into());
        }
        self
    }

    fn compile(&self) -> Result<CompiledSelector, SopsError> {
        let re = |what, r: &Option<String>| -> Result<_, SopsError> {
            r.as_deref()
                .map(regex_lite::Regex::new)
                .transpose()
                .map_err(|e| SopsError::Regex {
                    what,
                    why: e.to_string(),
                })
        };
        Ok(CompiledSelector {
            unencrypted_suffix: self.unencrypted_suffix.clone().filter(|s| !s.is_empty()),
            encrypted_suffix: self.encrypted_suffix.clone().filter(|s| !s.is_empty()),
            unencrypted_regex: re("unencrypted_regex", &self.unencrypted_regex)?,
            encrypted_regex: re("encrypted_regex", &self.encrypted_regex)?,
        })
    }

    fn entries(&self) -> Vec<(&'static str, String)> {
        [
            ("unencrypted_suffix", &self.unencrypted_suffix),
            ("encrypted_suffix", &self.encrypted_suffix),
            ("unencrypted_regex", &self.unencrypted_regex),
            ("encrypted_regex", &self.encrypted_regex),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

impl CompiledSelector {
    /// sops' rule, in its order: each selector looks at every key on the path.
    fn encrypts(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix {
            if path.iter().any(|k| k.ends_with(s.as_str())) {
                enc = false;
            }
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex {
            if path.iter().any(|k| r.is_match(k)) {
                enc = false;
            }
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|k| r.is_match(k));
        }
        enc
    }
}

/// What a sops file says about itself (nothing secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Recipients and their armored age files, in file order.
    pub age: Vec<(String, String)>,
    pub lastmodified: String,
    pub mac: String,
    pub selector: Selector,
    pub mac_only_encrypted: bool,
    pub version: Option<String>,
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

fn meta_str(sops: &Node, key: &str) -> Option<String> {
    sops.get(key).and_then(|v| match &v.value {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    })
}

fn parse_metadata(sops: &Node) -> Result<Metadata, SopsError> {
    let missing = |k: &str| SopsError::Metadata(format!("'sops.{k}' is missing"));
    let mut age = Vec::new();
    let mut collect = |list: Option<&Node>| -> Result<(), SopsError> {
        if let Some(Value::Seq(items)) = list.map(|n| &n.value) {
            for item in items {
                let r = meta_str(item, "recipient").ok_or_else(|| missing("age[].recipient"))?;
                let e = meta_str(item, "enc").ok_or_else(|| missing("age[].enc"))?;
                age.push((r, e));
            }
        }
        Ok(())
    };
    collect(sops.get("age"))?;
    if let Some(Value::Seq(groups)) = sops.get("key_groups").map(|n| &n.value) {
        if groups.len() > 1 {
            return Err(SopsError::Metadata(
                "the file splits its key over several key_groups (Shamir), which driver does not support".into(),
            ));
        }
        for g in groups {
            collect(g.get("age"))?;
        }
    }
    let lastmodified = meta_str(sops, "lastmodified").ok_or_else(|| missing("lastmodified"))?;
    let mac = meta_str(sops, "mac").ok_or_else(|| missing("mac"))?;
    let selector = Selector {
        unencrypted_suffix: meta_str(sops, "unencrypted_suffix"),
        encrypted_suffix: meta_str(sops, "encrypted_suffix"),
        unencrypted_regex: meta_str(sops, "unencrypted_regex"),
        encrypted_regex: meta_str(sops, "encrypted_regex"),
    }
    .or_default();
    let mac_only_encrypted = matches!(
        sops.get("mac_only_encrypted").map(|n| &n.value),
        Some(Value::Bool(true))
    );
    Ok(Metadata {
        age,
        lastmodified,
        mac,
        selector,
        mac_only_encrypted,
        version: meta_str(sops, "version"),
    })
}

/// Go formats `lastmodified` with RFC 3339 (no fraction) before using it as
/// the MAC's additional data; do the same to whatever the file holds.
fn rfc3339_seconds(s: &str) -> String {
    match s.find('.') {
        Some(dot) if s[..dot].contains('T') => {
            let end = s[dot + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(s.len(), |i| dot + 1 + i);
            format!("{}{}", &s[..dot], &s[end..])
        }
        _ => s.to_string(),
    }
}

struct EncValue {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse_enc(s: &str) -> Option<EncValue> {
    let inner = s.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for part in inner.split(',') {
        let (k, v) = part.split_once(':')?;
        match k {
            "data" => data = STANDARD.decode(v).ok(),
            "iv" => iv = STANDARD.decode(v).ok(),
            "tag" => tag = STANDARD.decode(v).ok(),
            "type" => kind = Some(v.to_string()),
            _ => return None,
        }
    }
    Some(EncValue {
        data: data?,
        iv: iv?,
        tag: tag?,
        kind: kind?,
    })
}

fn decrypt_value(s: &str, key: &[u8; 32], aad: &str) -> Result<(Secret<Vec<u8>>, String), String> {
    let v = parse_enc(s).ok_or_else(|| "it is not a sops ENC[AES256_GCM,...] value".to_string())?;
    if v.iv.len() != 32 || v.tag.len() != 16 {
        return Err("its iv or tag has the wrong length".into());
    }
    let cipher = Aes256Gcm32::new(key.into());
    let mut sealed = v.data;
    sealed.extend_from_slice(&v.tag);
    let plain = cipher
        .decrypt(
            v.iv.as_slice().into(),
            Payload {
                msg: &sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            "authentication failed: the value (or its key path) was changed, or it was encrypted with another data key".to_string()
        })?;
    Ok((Secret::new(plain), v.kind))
}

fn encrypt_value(plain: &[u8], kind: &str, key: &[u8; 32], aad: &str) -> Result<String, SopsError> {
    let iv = age::random::<32>()?;
    let cipher = Aes256Gcm32::new(key.into());
    let mut sealed = cipher
        .encrypt(
            (&iv).into(),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SopsError::Metadata("AES-GCM encryption failed".into()))?;
    let tag = sealed.split_off(sealed.len() - 16);
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(&sealed),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    ))
}

fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

/// Turns decrypted bytes back into a typed leaf, as sops' `type:` says.
fn typed_leaf(plain: Secret<Vec<u8>>, kind: &str) -> Result<Leaf, String> {
    let text = String::from_utf8(plain.expose().clone())
        .map_err(|_| "the decrypted value is not UTF-8".to_string())?;
    let text = Secret::new(text);
    let t = text.expose().as_str();
    let (kind, canonical) = match kind {
        "str" | "bytes" => (Kind::Str, None),
        "int" => (
            Kind::Int,
            Some(
                t.parse::<i64>()
                    .map_err(|_| "type int, but the value is not an integer")?
                    .to_string(),
            ),
        ),
        "float" => (
            Kind::Float,
            Some(go_float(
                t.parse::<f64>()
                    .map_err(|_| "type float, but the value is not a number")?,
            )),
        ),
        "bool" => (
            Kind::Bool,
            Some(
                match t {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => "true",
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => "false",
                    _ => return Err("type bool, but the value is not a boolean".into()),
                }
                .to_string(),
            ),
        ),
        other => return Err(format!("unknown value type '{other}'")),
    };
    Ok(Leaf {
        kind,
        text: canonical.map(Secret::new).unwrap_or(text),
    })
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

fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
    fn date_formatting() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
        assert_eq!(
            rfc3339_seconds("2022-05-23T12:25:56.123456Z"),
            "2022-05-23T12:25:56Z"
        );
        assert_eq!(
            rfc3339_seconds("2022-05-23T12:25:56Z"),
            "2022-05-23T12:25:56Z"
        );
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

    #[test]
    fn selectors_follow_sops() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let s = Selector {
            encrypted_regex: Some("^(data|stringData)$".into()),
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert!(s.encrypts(&p(&["data", "x"])));
        assert!(!s.encrypts(&p(&["metadata", "name"])));
        let s = Selector::default().or_default().compile().unwrap();
        assert!(!s.encrypts(&p(&["a", "b_unencrypted", "c"])));
        assert!(s.encrypts(&p(&["a", "b"])));
    }
}
