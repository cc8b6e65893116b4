//! Bech32 (BIP 173), the text form of age keys: `age1...` recipients and
//! `AGE-SECRET-KEY-1...` identities. age does not apply BIP 173's 90-character
//! limit, so neither do we.

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GEN: [u32; 5] = [
    0x3b6a_57b2,
    0x2650_8e6d,
    0x1ea1_19fa,
    0x3d42_33dd,
    0x2a14_62b3,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Bech32Error {
    #[error("mixes upper and lower case")]
    MixedCase,
    #[error("has no '1' separator")]
    NoSeparator,
    #[error("contains a character that is not bech32")]
    BadChar,
    #[error("has a bad checksum (a typo, or a truncated key)")]
    Checksum,
    #[error("has bad padding")]
    Padding,
}

fn polymod(values: impl Iterator<Item = u8>) -> u32 {
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &[u8]) -> impl Iterator<Item = u8> + '_ {
    hrp.iter()
        .map(|b| b >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.iter().map(|b| b & 31))
}

/// Regroups bits (8 → 5 when encoding, 5 → 8 when decoding).
fn convert(data: &[u8], from: u32, to: u32, pad: bool) -> Result<Vec<u8>, Bech32Error> {
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let max = (1u32 << to) - 1;
    let mut out = Vec::with_capacity(data.len() * from as usize / to as usize + 1);
    for &v in data {
        acc = (acc << from) | u32::from(v);
        bits += from;
        while bits >= to {
            bits -= to;
            out.push(((acc >> bits) & max) as u8);
        }
    }
    if pad {
        if bits > 0 {
            out.push(((acc << (to - bits)) & max) as u8);
        }
    } else if bits >= from || ((acc << (to - bits)) & max) != 0 {
        return Err(Bech32Error::Padding);
    }
    Ok(out)
}

/// Encodes `data` under the lower-case `hrp`.
pub fn encode(hrp: &str, data: &[u8]) -> String {
    // 8→5 with padding cannot fail.
    let values = convert(data, 8, 5, true).unwrap_or_default();
    let hrp_b = hrp.as_bytes();
    let pm = polymod(
        hrp_expand(hrp_b)
            .chain(values.iter().copied())
            .chain([0u8; 6]),
    ) ^ 1;
    let mut s = String::with_capacity(hrp.len() + 1 + values.len() + 6);
    s.push_str(hrp);
    s.push('1');
    for v in values {
        s.push(CHARSET[v as usize] as char);
    }
    for i in 0..6 {
        s.push(CHARSET[((pm >> (5 * (5 - i))) & 31) as usize] as char);
    }
    s
}

/// Decodes to the lower-case hrp and the data bytes.
pub fn decode(s: &str) -> Result<(String, Vec<u8>), Bech32Error> {
    let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Bech32Error::MixedCase);
    }
    let s = s.to_ascii_lowercase();
    let pos = s.rfind('1').ok_or(Bech32Error::NoSeparator)?;
    if pos == 0 || pos + 7 > s.len() {
        return Err(Bech32Error::NoSeparator);
    }
    let (hrp, rest) = (&s[..pos], &s[pos + 1..]);
    if !hrp.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(Bech32Error::BadChar);
    }
    let values = rest
        .bytes()
        .map(|b| {
            CHARSET
                .iter()
                .position(|&c| c == b)
                .map(|p| p as u8)
                .ok_or(Bech32Error::BadChar)
        })
        .collect::<Result<Vec<u8>, _>>()?;
    if polymod(hrp_expand(hrp.as_bytes()).chain(values.iter().copied())) != 1 {
        return Err(Bech32Error::Checksum);
    }
    let data = convert(&values[..values.len() - 6], 5, 8, false)?;
    Ok((hrp.to_string(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let data: Vec<u8> = (0u8..32).collect();
        let s = encode("age", &data);
        assert!(s.starts_with("age1"));
        assert_eq!(decode(&s).unwrap(), ("age".to_string(), data.clone()));
        assert_eq!(
            decode(&s.to_ascii_uppercase()).unwrap(),
            ("age".to_string(), data)
        );
        // One changed character is caught by the checksum.
        let mut bad = s.into_bytes();
        let i = bad.len() - 10;
        bad[i] = if bad[i] == b'q' { b'p' } else { b'q' };
        assert_eq!(
            decode(std::str::from_utf8(&bad).unwrap()),
            Err(Bech32Error::Checksum)
        );
    }

    #[test]
    fn bip173_vector() {
        // A valid test vector from BIP 173.
        let (hrp, data) = decode("A12UEL5L").unwrap();
        assert_eq!(hrp, "a");
        assert!(data.is_empty());
    }
}
