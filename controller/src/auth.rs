//! Token checks. Tokens are kept only as SHA-256 digests and compared digest to digest in
//! constant time, so neither a token's length nor its first wrong byte shows in the timing.

use hyper::header::{HeaderMap, AUTHORIZATION};

pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The bearer token of a request, if it has exactly one well-formed `Authorization: Bearer`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Does `presented` hash to `expected`? Every byte is compared whatever the result.
pub(crate) fn matches(presented: &[u8], expected: &Digest) -> bool {
    let got = digest(presented);
    let diff = got
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// The outcome of checking a request against an expected token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// No usable credentials: 401.
    Missing,
    /// Credentials that do not match: 403.
    Wrong,
}

pub(crate) fn check(headers: &HeaderMap, expected: &Digest) -> Verdict {
    match bearer(headers) {
        None => Verdict::Missing,
        Some(t) if matches(t, expected) => Verdict::Allowed,
        Some(_) => Verdict::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append(AUTHORIZATION, x.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_checked_exactly() {
        let d = digest(b"s3cret");
        assert_eq!(check(&headers(&["Bearer s3cret"]), &d), Verdict::Allowed);
        assert_eq!(check(&headers(&["bearer  s3cret "]), &d), Verdict::Allowed);
        assert_eq!(check(&headers(&["Bearer s3cre"]), &d), Verdict::Wrong);
        assert_eq!(check(&headers(&["Bearer s3cretX"]), &d), Verdict::Wrong);
        assert_eq!(check(&headers(&["Basic s3cret"]), &d), Verdict::Missing);
        assert_eq!(check(&headers(&["Bearer "]), &d), Verdict::Missing);
        assert_eq!(check(&headers(&[]), &d), Verdict::Missing);
        assert_eq!(
            check(&headers(&["Bearer s3cret", "Bearer s3cret"]), &d),
            Verdict::Missing
        );
    }
}
