//! Which guests a command means: targets (a vmid, a name or a name glob) and label-style
//! selectors (`-l name=web-*,tag=prod,status=running,manifest=n2-quick,kind=vm`, each term
//! also with `!=`), all terms of a selector must hold.

use std::collections::{BTreeMap, BTreeSet};

use super::GuestRow;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "'{0}' is not a selector term: expected KEY=VALUE or KEY!=VALUE with KEY one of \
         name, tag, status, manifest, kind, owned"
    )]
    BadTerm(String),
    #[error("unknown selector key '{0}' (keys: name, tag, status, manifest, kind, owned)")]
    UnknownKey(String),
    #[error("'{value}' is not a value of '{key}' (values: {allowed})")]
    BadValue {
        key: &'static str,
        value: String,
        allowed: &'static str,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// A glob over the guest's name.
    Name(String),
    Tag(String),
    Status(String),
    /// A member of the manifest's tree on this host (see [`Membership`]).
    Manifest(String),
    Kind(String),
    /// Made by driver (carries a driver state's tag).
    Owned(bool),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    key: Key,
    negated: bool,
}

/// A parsed `-l` selector: every term must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

/// The guests of a manifest's tree on this host, from its run state: its state id (whose
/// tag its guests carry) and the vmids it recorded.
#[derive(Clone, Debug, Default)]
pub struct Member {
    pub state_id: String,
    pub vmids: BTreeSet<u32>,
}

/// Manifest name -> its members; a manifest with no state on the host has none.
pub type Membership = BTreeMap<String, Member>;

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v, negated) = match raw.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => match raw.split_once('=') {
                    Some((k, v)) => (k, v, false),
                    None => return Err(SelectorError::BadTerm(raw.to_string())),
                },
            };
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return Err(SelectorError::BadTerm(raw.to_string()));
            }
            let key = match k {
                "name" => Key::Name(v.to_string()),
                "tag" | "tags" => Key::Tag(v.to_string()),
                "status" => Key::Status(v.to_string()),
                "manifest" => Key::Manifest(v.to_string()),
                "kind" | "type" => match v {
                    "vm" | "ct" => Key::Kind(v.to_string()),
                    _ => {
                        return Err(SelectorError::BadValue {
                            key: "kind",
                            value: v.to_string(),
                            allowed: "vm, ct",
                        })
                    }
                },
                "owned" => match v {
                    "true" | "yes" => Key::Owned(true),
                    "false" | "no" => Key::Owned(false),
                    _ => {
                        return Err(SelectorError::BadValue {
                            key: "owned",
                            value: v.to_string(),
                            allowed: "true, false",
                        })
                    }
                },
                other => return Err(SelectorError::UnknownKey(other.to_string())),
            };
            terms.push(Term { key, negated });
        }
        Ok(Selector { terms })
    }

    /// The manifests whose membership the selector asks about (their states must be read).
    pub fn manifests(&self) -> Vec<&str> {
        self.terms
            .iter()
            .filter_map(|t| match &t.key {
                Key::Manifest(m) => Some(m.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, g: &GuestRow, members: &Membership) -> bool {
        self.terms.iter().all(|t| {
            let holds = match &t.key {
                Key::Name(glob) => glob_match(glob, &g.name),
                Key::Tag(tag) => g.tags.iter().any(|t| glob_match(tag, t)),
                Key::Status(s) => g.status == *s,
                Key::Kind(k) => g.kind.name() == k,
                Key::Owned(o) => g.driver_state.is_some() == *o,
                Key::Manifest(m) => members.get(m).is_some_and(|mem| {
                    g.driver_state.as_deref() == Some(mem.state_id.as_str())
                        || (g.driver_state.is_none() && mem.vmids.contains(&g.vmid))
                }),
            };
            holds != t.negated
        })
    }
}

/// A target on the command line: a vmid, else a name glob (`web-*`, `db-?`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Vmid(u32),
    Name(String),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        match s.parse::<u32>() {
            Ok(id) => Target::Vmid(id),
            Err(_) => Target::Name(s.to_string()),
        }
    }

    pub fn matches(&self, g: &GuestRow) -> bool {
        match self {
            Target::Vmid(id) => g.vmid == *id,
            Target::Name(glob) => glob_match(glob, &g.name),
        }
    }
}

/// `*` (any run of characters) and `?` (one character); anything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    fn row(vmid: u32, name: &str, status: &str, tags: &[&str], state: Option<&str>) -> GuestRow {
        GuestRow {
            vmid,
            name: name.into(),
            kind: Kind::Vm,
            node: "pve".into(),
            status: status.into(),
            cores: None,
            memory_mb: None,
            disk_gb: None,
            uptime_s: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            template: false,
            lock: None,
            driver_state: state.map(str::to_string),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("web-*", "web-1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("w?b*x", "wab-long-x"));
        assert!(!glob_match("web-*", "db-1"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("exact", "exact"));
    }

    #[test]
    fn selectors_combine_and_negate() {
        let s = Selector::parse("name=web-*,status!=running,tag=prod").unwrap();
        assert!(s.matches(
            &row(100, "web-1", "stopped", &["prod"], None),
            &Membership::new()
        ));
        assert!(!s.matches(
            &row(100, "web-1", "running", &["prod"], None),
            &Membership::new()
        ));
        assert!(!s.matches(
            &row(100, "web-1", "stopped", &["dev"], None),
            &Membership::new()
        ));
        assert_eq!(
            Selector::parse("color=red").unwrap_err(),
            SelectorError::UnknownKey("color".into())
        );
        assert!(matches!(
            Selector::parse("web"),
            Err(SelectorError::BadTerm(_))
        ));
    }

    #[test]
    fn manifest_membership_by_tag_or_recorded_vmid() {
        let s = Selector::parse("manifest=m").unwrap();
        assert_eq!(s.manifests(), ["m"]);
        let mut members = Membership::new();
        members.insert(
            "m".into(),
            Member {
                state_id: "s1".into(),
                vmids: [7].into(),
            },
        );
        assert!(s.matches(&row(100, "a", "running", &[], Some("s1")), &members));
        assert!(!s.matches(&row(101, "b", "running", &[], Some("s2")), &members));
        // Recorded, and (made before markers) untagged.
        assert!(s.matches(&row(7, "c", "running", &[], None), &members));
        assert!(!s.matches(
            &row(100, "a", "running", &[], Some("s1")),
            &Membership::new()
        ));
    }
}
