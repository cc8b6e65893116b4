//! Request paths, split into decoded segments with everything that could leave a folder
//! refused: `.` and `..`, empty segments, and segments whose decoding holds a `/`, `\`, NUL
//! or a control character (so `..%2f..%2fetc` is one bad segment, not three good ones).
//! Nothing here touches the disk; `repos` also refuses symlinks where it does.

/// Why a path was refused (logged, never shown to the client).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadPath(pub &'static str);

/// Longest path accepted (bytes, before decoding).
const MAX_PATH: usize = 2048;

pub(crate) fn segments(raw: &str) -> Result<Vec<String>, BadPath> {
    if raw.len() > MAX_PATH {
        return Err(BadPath("too long"));
    }
    let rest = raw.strip_prefix('/').ok_or(BadPath("not absolute"))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(segment).collect()
}

fn segment(raw: &str) -> Result<String, BadPath> {
    let bytes = decode(raw)?;
    let s = String::from_utf8(bytes).map_err(|_| BadPath("not UTF-8"))?;
    if s.is_empty() {
        return Err(BadPath("empty segment"));
    }
    if s == "." || s == ".." {
        return Err(BadPath("dot segment"));
    }
    if s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(BadPath("separator or control character in a segment"));
    }
    Ok(s)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode(raw: &str) -> Result<Vec<u8>, BadPath> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex);
            let lo = b.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => return Err(BadPath("bad percent escape")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused_however_spelt() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("/spec/web1").unwrap(), ["spec", "web1"]);
        assert_eq!(segments("/r.git/a%20b").unwrap(), ["r.git", "a b"]);
        for bad in [
            "/..%2f..%2fetc/passwd",
            "/..%2F..%2Fetc/passwd",
            "/r.git/../../x",
            "/r.git/./x",
            "/r.git//x",
            "/r.git/%2e%2e/x",
            "/r.git/a%5cb",
            "/r.git/a%00b",
            "/r.git/%zz",
            "/r.git/%2",
            "relative",
        ] {
            assert!(segments(bad).is_err(), "{bad} accepted");
        }
        assert!(segments(&format!("/{}", "a".repeat(3000))).is_err());
    }
}
