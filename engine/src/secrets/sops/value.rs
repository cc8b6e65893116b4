//! The cryptography of one value: AES-256-GCM under the data key, with the
//! value's key path as additional data, the `ENC[AES256_GCM,...]` text form,
//! turning decrypted bytes back into a typed leaf, and the hex and
//! constant-time comparison used for the MAC.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::SopsError;
use crate::secrets::age;
use crate::secrets::secret::Secret;
use crate::secrets::tree::{go_float, Kind, Leaf};

type Aes256Gcm32 = AesGcm<Aes256, U32>;

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

pub(super) fn decrypt_value(
    s: &str,
    key: &[u8; 32],
    aad: &str,
) -> Result<(Secret<Vec<u8>>, String), String> {
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

pub(super) fn encrypt_value(
    plain: &[u8],
    kind: &str,
    key: &[u8; 32],
    aad: &str,
) -> Result<String, SopsError> {
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

pub(super) fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

/// Turns decrypted bytes back into a typed leaf, as sops' `type:` says.
pub(super) fn typed_leaf(plain: Secret<Vec<u8>>, kind: &str) -> Result<Leaf, String> {
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

pub(super) fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub(super) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
