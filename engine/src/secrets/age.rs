//! The age file format (age-encryption.org/v1), X25519 recipients only: what
//! sops uses to wrap its data key.
//!
//! Written against the published format spec with RustCrypto primitives
//! (X25519, HKDF-SHA-256, ChaCha20-Poly1305, HMAC-SHA-256); interoperability
//! with the real `age` CLI is checked by `engine/tests/age_cli.rs`. Other
//! recipient types (scrypt, ssh, plugins) are skipped when decrypting.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::bech32;
use super::secret::Secret;

const VERSION_LINE: &str = "age-encryption.org/v1";
const X25519_INFO: &[u8] = b"age-encryption.org/v1/X25519";
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const COLUMNS: usize = 64;
const SECRET_HRP: &str = "age-secret-key-";
const PUBLIC_HRP: &str = "age";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgeError {
    #[error("not an age identity: {0}")]
    BadIdentity(String),
    #[error("'{recipient}' is not an age recipient: {why}")]
    BadRecipient { recipient: String, why: String },
    #[error("malformed age file: {0}")]
    Malformed(&'static str),
    #[error(
        "none of the {identities} age identit{} can open this file (it is for {})",
        if *identities == 1 { "y" } else { "ies" },
        if *recipients == 0 { "no X25519 recipient".to_string() } else { format!("{} X25519 recipient{}", recipients, if *recipients == 1 { "" } else { "s" }) }
    )]
    NoMatchingIdentity {
        identities: usize,
        recipients: usize,
    },
    #[error("the age header's MAC does not verify: the file was changed or damaged")]
    HeaderMac,
    #[error("the age payload does not decrypt: the file was changed or damaged")]
    Payload,
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

pub(crate) fn random<const N: usize>() -> Result<[u8; N], AgeError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AgeError::Random(e.to_string()))?;
    Ok(b)
}

/// An X25519 public key, `age1...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Recipient([u8; 32]);

impl Recipient {
    pub fn parse(s: &str) -> Result<Self, AgeError> {
        let s = s.trim();
        // A private key pasted where a recipient belongs must not be echoed back.
        let shown = if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
            "(an age secret key, not shown)".to_string()
        } else {
            s.to_string()
        };
        let bad = |why: String| AgeError::BadRecipient {
            recipient: shown.clone(),
            why,
        };
        let (hrp, data) = bech32::decode(s).map_err(|e| bad(e.to_string()))?;
        if hrp != PUBLIC_HRP {
            return Err(bad("it does not start with age1".into()));
        }
        let key: [u8; 32] = data
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes".into()))?;
        Ok(Recipient(key))
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bech32::encode(PUBLIC_HRP, &self.0))
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

/// An X25519 private key, `AGE-SECRET-KEY-1...`. Prints as `[redacted]`.
#[derive(Clone)]
pub struct Identity {
    secret: Secret<[u8; 32]>,
    recipient: Recipient,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(for {}, [redacted])", self.recipient)
    }
}

impl Identity {
    pub fn from_bytes(mut key: [u8; 32]) -> Self {
        let public = x25519_dalek::x25519(key, x25519_dalek::X25519_BASEPOINT_BYTES);
        let id = Identity {
            secret: Secret::new(key),
            recipient: Recipient(public),
        };
        key.zeroize();
        id
    }

    /// Parses one `AGE-SECRET-KEY-1...` line. The error never contains the text.
    pub fn parse(s: &str) -> Result<Self, AgeError> {
        let (hrp, mut data) =
            bech32::decode(s.trim()).map_err(|e| AgeError::BadIdentity(format!("the key {e}")))?;
        if hrp != SECRET_HRP {
            data.zeroize();
            return Err(AgeError::BadIdentity(
                "it does not start with AGE-SECRET-KEY-1".into(),
            ));
        }
        let key: Result<[u8; 32], _> = data.as_slice().try_into();
        data.zeroize();
        match key {
            Ok(k) => Ok(Identity::from_bytes(k)),
            Err(_) => Err(AgeError::BadIdentity("the key is not 32 bytes".into())),
        }
    }

    /// A fresh random identity.
    pub fn generate() -> Result<Self, AgeError> {
        Ok(Identity::from_bytes(random::<32>()?))
    }

    pub fn recipient(&self) -> Recipient {
        self.recipient
    }

    /// The `AGE-SECRET-KEY-1...` text, e.g. to write a keys file.
    pub fn to_secret_string(&self) -> Secret<String> {
        Secret::new(bech32::encode(SECRET_HRP, self.secret.expose()).to_ascii_uppercase())
    }

    /// Unwraps the file key from an X25519 stanza, if it is for us.
    fn unwrap(&self, share: &[u8; 32], body: &[u8]) -> Option<Secret<[u8; 16]>> {
        let shared = x25519_dalek::x25519(*self.secret.expose(), *share);
        if shared.iter().all(|&b| b == 0) {
            return None;
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(share);
        salt[32..].copy_from_slice(&self.recipient.0);
        let key = hkdf32(&shared, Some(&salt), X25519_INFO);
        let cipher = ChaCha20Poly1305::new(key.expose().into());
        let mut plain = cipher.decrypt(&[0u8; 12].into(), body).ok()?;
        let file_key: Result<[u8; 16], _> = plain.as_slice().try_into();
        plain.zeroize();
        file_key.ok().map(Secret::new)
    }
}

fn hkdf32(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> Secret<[u8; 32]> {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA-256's limit of 8160, so this cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut out);
    let s = Secret::new(out);
    out.zeroize();
    s
}

fn header_mac(file_key: &[u8; 16], header: &[u8]) -> [u8; 32] {
    let key = hkdf32(file_key, None, b"header");
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(header);
    mac.finalize().into_bytes().into()
}

fn payload_cipher(file_key: &[u8; 16], nonce: &[u8]) -> ChaCha20Poly1305 {
    let key = hkdf32(file_key, Some(nonce), b"payload");
    ChaCha20Poly1305::new(key.expose().into())
}

fn stream_nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn wrap_b64(out: &mut String, data: &[u8]) {
    let b = STANDARD_NO_PAD.encode(data);
    let mut rest = b.as_str();
    loop {
        let (line, tail) = rest.split_at(rest.len().min(COLUMNS));
        out.push_str(line);
        out.push('\n');
        // A full last line is followed by an empty one, so readers know it ended.
        if line.len() < COLUMNS {
            break;
        }
        rest = tail;
    }
}

/// Encrypts `plaintext` to every recipient (binary age format).
pub fn encrypt(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, AgeError> {
    if recipients.is_empty() {
        return Err(AgeError::Malformed("no recipients to encrypt to"));
    }
    let file_key = Secret::new(random::<16>()?);
    let mut header = String::from(VERSION_LINE);
    header.push('\n');
    for r in recipients {
        let mut eph = random::<32>()?;
        let share = x25519_dalek::x25519(eph, x25519_dalek::X25519_BASEPOINT_BYTES);
        let shared = x25519_dalek::x25519(eph, r.0);
        eph.zeroize();
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&share);
        salt[32..].copy_from_slice(&r.0);
        let key = hkdf32(&shared, Some(&salt), X25519_INFO);
        let body = ChaCha20Poly1305::new(key.expose().into())
            .encrypt(&[0u8; 12].into(), file_key.expose().as_slice())
            .map_err(|_| AgeError::Malformed("wrapping the file key failed"))?;
        header.push_str("-> X25519 ");
        header.push_str(&STANDARD_NO_PAD.encode(share));
        header.push('\n');
        wrap_b64(&mut header, &body);
    }
    header.push_str("---");
    let mac = header_mac(file_key.expose(), header.as_bytes());
    header.push(' ');
    header.push_str(&STANDARD_NO_PAD.encode(mac));
    header.push('\n');

    let nonce = random::<16>()?;
    let cipher = payload_cipher(file_key.expose(), &nonce);
    let mut out = header.into_bytes();
    out.extend_from_slice(&nonce);
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(CHUNK).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let sealed = cipher
            .encrypt(&stream_nonce(i as u64, i == last).into(), chunk)
            .map_err(|_| AgeError::Malformed("payload encryption failed"))?;
        out.extend_from_slice(&sealed);
    }
    Ok(out)
}

/// Encrypts and wraps in the ASCII armor sops stores (`-----BEGIN AGE ENCRYPTED FILE-----`).
pub fn encrypt_armored(plaintext: &[u8], recipients: &[Recipient]) -> Result<String, AgeError> {
    Ok(armor(&encrypt(plaintext, recipients)?))
}

pub fn armor(binary: &[u8]) -> String {
    let b = STANDARD.encode(binary);
    let mut s = String::with_capacity(b.len() + b.len() / COLUMNS + 80);
    s.push_str(ARMOR_BEGIN);
    s.push('\n');
    for line in b.as_bytes().chunks(COLUMNS) {
        // Base64 output is ASCII, so any byte split is a char boundary.
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(ARMOR_END);
    s.push('\n');
    s
}

fn dearmor(text: &str) -> Result<Vec<u8>, AgeError> {
    let body = text
        .trim()
        .strip_prefix(ARMOR_BEGIN)
        .and_then(|r| r.strip_suffix(ARMOR_END))
        .ok_or(AgeError::Malformed(
            "the armor's BEGIN/END lines are missing",
        ))?;
    let joined: String = body.split_whitespace().collect();
    STANDARD
        .decode(joined)
        .map_err(|_| AgeError::Malformed("the armor is not valid base64"))
}

struct Stanza<'a> {
    args: Vec<&'a str>,
    body: Vec<u8>,
}

struct Header<'a> {
    stanzas: Vec<Stanza<'a>>,
    /// The bytes the MAC covers: up to and including `---`.
    macced: &'a [u8],
    mac: Vec<u8>,
    payload: &'a [u8],
}

fn next_line<'a>(input: &'a [u8], pos: &mut usize) -> Result<&'a str, AgeError> {
    let rest = &input[*pos..];
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(AgeError::Malformed("the header ends early"))?;
    *pos += end + 1;
    std::str::from_utf8(&rest[..end]).map_err(|_| AgeError::Malformed("the header is not text"))
}

fn parse_header(input: &[u8]) -> Result<Header<'_>, AgeError> {
    let mut pos = 0;
    if next_line(input, &mut pos)? != VERSION_LINE {
        return Err(AgeError::Malformed(
            "it does not start with age-encryption.org/v1",
        ));
    }
    let mut stanzas = Vec::new();
    loop {
        let line_start = pos;
        let line = next_line(input, &mut pos)?;
        if let Some(mac) = line.strip_prefix("--- ") {
            let mac = STANDARD_NO_PAD
                .decode(mac)
                .map_err(|_| AgeError::Malformed("the header MAC is not base64"))?;
            return Ok(Header {
                stanzas,
                macced: &input[..line_start + 3],
                mac,
                payload: &input[pos..],
            });
        }
        let Some(args) = line.strip_prefix("-> ") else {
            return Err(AgeError::Malformed(
                "a header line is neither a stanza nor the MAC",
            ));
        };
        let args: Vec<&str> = args.split(' ').collect();
        if args.iter().any(|a| a.is_empty()) {
            return Err(AgeError::Malformed("a stanza has an empty argument"));
        }
        let mut body = String::new();
        loop {
            let l = next_line(input, &mut pos)?;
            if l.len() > COLUMNS {
                return Err(AgeError::Malformed("a stanza body line is too long"));
            }
            body.push_str(l);
            if l.len() < COLUMNS {
                break;
            }
        }
        let body = STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| AgeError::Malformed("a stanza body is not base64"))?;
        stanzas.push(Stanza { args, body });
    }
}

/// Decrypts an age file (binary or armored) with the first identity that fits.
pub fn decrypt(input: &[u8], identities: &[Identity]) -> Result<Secret<Vec<u8>>, AgeError> {
    let binary;
    let input = if input.trim_ascii_start().starts_with(ARMOR_BEGIN.as_bytes()) {
        let text =
            std::str::from_utf8(input).map_err(|_| AgeError::Malformed("the armor is not text"))?;
        binary = dearmor(text)?;
        &binary[..]
    } else {
        input
    };
    let header = parse_header(input)?;
    let mut x25519 = 0;
    let mut file_key = None;
    'outer: for st in &header.stanzas {
        if st.args.first() != Some(&"X25519") {
            continue;
        }
        x25519 += 1;
        if st.args.len() != 2 || st.body.len() != 32 {
            return Err(AgeError::Malformed("an X25519 stanza has the wrong shape"));
        }
        let share: [u8; 32] = STANDARD_NO_PAD
            .decode(st.args[1])
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(AgeError::Malformed(
                "an X25519 share is not 32 bytes of base64",
            ))?;
        for id in identities {
            if let Some(k) = id.unwrap(&share, &st.body) {
                file_key = Some(k);
                break 'outer;
            }
        }
    }
    let file_key = file_key.ok_or(AgeError::NoMatchingIdentity {
        identities: identities.len(),
        recipients: x25519,
    })?;
    let expect = header_mac(file_key.expose(), header.macced);
    // Comparing MACs: both are public once the file key is known, but keep it constant-time anyway.
    if header.mac.len() != 32 || !constant_eq(&header.mac, &expect) {
        return Err(AgeError::HeaderMac);
    }
    if header.payload.len() < 16 {
        return Err(AgeError::Malformed("the payload has no nonce"));
    }
    let (nonce, body) = header.payload.split_at(16);
    let cipher = payload_cipher(file_key.expose(), nonce);
    let mut out = Vec::with_capacity(body.len());
    let sealed: Vec<&[u8]> = body.chunks(CHUNK + TAG).collect();
    if sealed.is_empty() {
        return Err(AgeError::Payload);
    }
    let last = sealed.len() - 1;
    for (i, chunk) in sealed.into_iter().enumerate() {
        let mut plain = cipher
            .decrypt(&stream_nonce(i as u64, i == last).into(), chunk)
            .map_err(|_| AgeError::Payload)?;
        // Only an empty file may end in an empty chunk.
        if plain.is_empty() && i > 0 {
            return Err(AgeError::Payload);
        }
        out.extend_from_slice(&plain);
        plain.zeroize();
    }
    Ok(Secret::new(out))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test identity of the sops vector (tests/fixtures/sops).
    const TEST_KEY: &str =
        "AGE-SECRET-KEY-1YQMYYAHGUU5VK67GKY6RM8YEKTW687RT9KPUG5X8FD0F988PCXKQXM8RMY";
    const TEST_RECIPIENT: &str = "age106dn94074uskzjua39h4v0ql89l528wrqp2f84xpcznpr9f6ye4q9k8hp8";

    #[test]
    fn identity_gives_its_recipient_and_text() {
        let id = Identity::parse(TEST_KEY).unwrap();
        assert_eq!(id.recipient().to_string(), TEST_RECIPIENT);
        assert_eq!(id.to_secret_string().expose(), TEST_KEY);
        assert!(!format!("{id:?}").contains("AGE-SECRET"));
        assert_eq!(Recipient::parse(TEST_RECIPIENT).unwrap(), id.recipient());
    }

    #[test]
    fn round_trip_sizes() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        for size in [0usize, 1, 32, CHUNK, CHUNK + 1, 2 * CHUNK] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let enc = encrypt_armored(&data, &[a.recipient(), b.recipient()]).unwrap();
            assert_eq!(
                decrypt(enc.as_bytes(), std::slice::from_ref(&b))
                    .unwrap()
                    .expose(),
                &data
            );
            let bin = encrypt(&data, &[a.recipient()]).unwrap();
            assert_eq!(
                decrypt(&bin, &[b.clone(), a.clone()]).unwrap().expose(),
                &data
            );
        }
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let a = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        let bin = encrypt(b"0123456789abcdef0123456789abcdef", &[a.recipient()]).unwrap();
        assert_eq!(
            decrypt(&bin, &[other]).unwrap_err(),
            AgeError::NoMatchingIdentity {
                identities: 1,
                recipients: 1
            }
        );
        let mut bad = bin.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decrypt(&bad, std::slice::from_ref(&a)).unwrap_err(),
            AgeError::Payload
        );
        // The MAC line: change one character of it.
        let text_end = bin.windows(4).position(|w| w == b"--- ").unwrap() + 5;
        let mut bad = bin.clone();
        bad[text_end] = if bad[text_end] == b'A' { b'B' } else { b'A' };
        assert_eq!(decrypt(&bad, &[a]).unwrap_err(), AgeError::HeaderMac);
    }

    #[test]
    fn a_secret_key_given_as_recipient_is_not_echoed() {
        let e = Recipient::parse(TEST_KEY).unwrap_err().to_string();
        assert!(!e.contains("YQMYYAHG"), "{e}");
        assert!(e.contains("secret key"), "{e}");
    }

    #[test]
    fn bad_identity_text_is_not_echoed() {
        let e = Identity::parse("AGE-SECRET-KEY-1QQQQSECRETISH").unwrap_err();
        assert!(!e.to_string().contains("SECRETISH"), "{e}");
    }
}
