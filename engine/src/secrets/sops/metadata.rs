//! The `sops:` block of a file: its age recipients, `lastmodified`, MAC and
//! selector as read back, and the timestamps sops writes and authenticates
//! (RFC 3339, whole seconds).

use super::{Selector, SopsError};
use crate::yaml::{Node, Value};

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

fn meta_str(sops: &Node, key: &str) -> Option<String> {
    sops.get(key).and_then(|v| match &v.value {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    })
}

pub(super) fn parse_metadata(sops: &Node) -> Result<Metadata, SopsError> {
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
pub(super) fn rfc3339_seconds(s: &str) -> String {
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

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn now_rfc3339() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
