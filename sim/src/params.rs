//! Request parameters as PVE reads them: the query string, plus a form
//! (`application/x-www-form-urlencoded`) or JSON body for writes, plus the path's own
//! parameters (`node`, `vmid`, `upid`). Values are kept as text, as PVE's schema checks see
//! them; JSON numbers and booleans become `"12"` and `"1"`/`"0"`.

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    values: BTreeMap<String, String>,
}

/// `%XX` and `+` decoding; `None` for bad escapes or invalid UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let h = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

const TRUE: &[&str] = &["1", "true", "yes", "on"];
const FALSE: &[&str] = &["0", "false", "no", "off"];

/// A boolean as PVE's schema reads it.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    let l = v.to_ascii_lowercase();
    if TRUE.contains(&l.as_str()) {
        Some(true)
    } else if FALSE.contains(&l.as_str()) {
        Some(false)
    } else {
        None
    }
}

impl Params {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).map(String::as_str)
    }

    pub fn insert(&mut self, k: &str, v: impl Into<String>) {
        self.values.insert(k.to_string(), v.into());
    }

    /// Adds `a=1&b=2` pairs (later ones win, as PVE's last-value semantics for scalars).
    pub fn add_form(&mut self, text: &str) -> ApiResult<()> {
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true);
            let v = percent_decode(v, true);
            match (k, v) {
                (Some(k), Some(v)) => {
                    // `_dc` is ExtJS's cache buster; PVE drops it.
                    if k != "_dc" {
                        self.values.insert(k, v);
                    }
                }
                _ => {
                    return Err(ApiError::new(
                        400,
                        "malformed request body (bad percent-encoding or invalid UTF-8)",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Adds the members of a JSON object body.
    pub fn add_json(&mut self, body: &[u8]) -> ApiResult<()> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, format!("malformed JSON request body: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::new(400, "request body is not a JSON object"))?;
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            self.values.insert(k.clone(), text);
        }
        Ok(())
    }

    /// A boolean parameter already checked by the schema.
    pub fn flag(&self, k: &str) -> bool {
        self.get(k).and_then(parse_bool).unwrap_or(false)
    }

    /// An integer parameter already checked by the schema.
    pub fn int(&self, k: &str) -> Option<i64> {
        self.get(k)
            .and_then(|v| v.trim_start_matches('+').parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_double_encoding() {
        let mut p = Params::default();
        p.add_form("name=web+1&sshkeys=ssh-ed25519%2520AAAA%252Bx&_dc=1")
            .unwrap();
        assert_eq!(p.get("name"), Some("web 1"));
        // PVE wants sshkeys URL-encoded *inside* the form: one decoding leaves it encoded.
        assert_eq!(p.get("sshkeys"), Some("ssh-ed25519%20AAAA%2Bx"));
        assert_eq!(p.get("_dc"), None);
        assert!(p.add_form("x=%zz").is_err());
        assert!(p.add_form("x=%ff").is_err());
    }

    #[test]
    fn json_values_as_text() {
        let mut p = Params::default();
        p.add_json(br#"{"cores": 2, "onboot": true, "name": "a", "n": null}"#)
            .unwrap();
        assert_eq!(p.get("cores"), Some("2"));
        assert_eq!(p.get("onboot"), Some("1"));
        assert_eq!(p.get("n"), None);
        assert!(p.add_json(b"[1]").is_err());
    }
}
