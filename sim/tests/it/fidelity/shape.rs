//! What is compared of an answer, and how two answers differ. An answer becomes a flat map
//! from a member's path (`data.memhost`, `data[].volid`) to a token: its JSON type
//! (`<number>`, `<string>`, ...) or, for the members whose values a client acts on
//! (statuses, exit statuses, error messages, ...), the value itself. UPIDs, times, ids,
//! sizes and names are types only: they legitimately differ between two hosts.

use std::collections::BTreeMap;

use serde_json::Value;

/// Members whose values are compared, not only their types.
const VALUE_KEYS: &[&str] = &[
    "status",
    "exitstatus",
    "type",
    "user",
    "tokenid",
    "content",
    "format",
    "qmpstatus",
    "release",
    "template",
    "agent",
    "serial",
    "managed",
];

/// One answer as compared: HTTP status, the reason phrase of an error, and the body.
pub type Flat = BTreeMap<String, String>;

/// Flattens an answer. `pick` keeps, of a `data` array, the first element whose member has
/// that value; `keep` limits `data`'s members (and a picked element's) to those named.
pub fn flatten(
    status: u16,
    reason: &str,
    body: &Value,
    pick: Option<(&str, &Value)>,
    keep: Option<&[&str]>,
) -> Flat {
    let mut out = Flat::new();
    out.insert("status".into(), status.to_string());
    if status != 200 {
        out.insert("reason".into(), reason.to_string());
    }
    let Some(obj) = body.as_object() else {
        out.insert("body".into(), token("body", body));
        return out;
    };
    for (k, v) in obj {
        if k == "data" {
            let mut data = v.clone();
            if let (Some((key, want)), Some(items)) = (pick, v.as_array()) {
                data = items
                    .iter()
                    .find(|i| &i[key] == want)
                    .cloned()
                    .unwrap_or(Value::Null);
            }
            if let (Some(keep), Some(o)) = (keep, data.as_object_mut()) {
                o.retain(|k, _| keep.contains(&k.as_str()));
            }
            walk("data", "data", &data, &mut out);
        } else if k == "message" || k == "errors" {
            // Error texts are what a user reads: compared in full.
            out.insert(k.clone(), v.to_string());
        } else {
            walk(k, k, v, &mut out);
        }
    }
    out
}

fn walk(path: &str, key: &str, v: &Value, out: &mut Flat) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                walk(&format!("{path}.{k}"), k, v, out);
            }
        }
        // The members of all elements, so that one odd element is seen too.
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                walk(&format!("{path}[]"), key, item, out);
            }
        }
        _ => {
            // Elements of an array share a path: their tokens are gathered (`a|b`).
            let t = token(key, v);
            let e = out.entry(path.to_string()).or_default();
            let mut all: Vec<&str> = e.split('|').filter(|x| !x.is_empty()).collect();
            if !all.contains(&t.as_str()) {
                all.push(&t);
                all.sort_unstable();
                *e = all.join("|");
            }
        }
    }
}

fn token(key: &str, v: &Value) -> String {
    if VALUE_KEYS.contains(&key) && !v.as_str().is_some_and(|s| s.starts_with("UPID:")) {
        return v.to_string();
    }
    match v {
        Value::Null => "<null>",
        Value::Bool(_) => "<bool>",
        Value::Number(_) => "<number>",
        Value::String(s) if s.starts_with("UPID:") => "<upid>",
        Value::String(_) => "<string>",
        Value::Array(_) => "[]",
        Value::Object(_) => "{}",
    }
    .to_string()
}

/// One member on which the two answers differ (`None`: the member is absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    pub step: String,
    pub path: String,
    pub pvesim: Option<String>,
    pub fakepve: Option<String>,
}

/// The differences of two flattened answers, and how many members agree.
pub fn diff(step: &str, sim: &Flat, fake: &Flat) -> (Vec<Difference>, usize) {
    let mut out = Vec::new();
    let mut same = 0;
    let paths: std::collections::BTreeSet<&String> = sim.keys().chain(fake.keys()).collect();
    for p in paths {
        let (a, b) = (sim.get(p), fake.get(p));
        if a == b {
            same += 1;
        } else {
            out.push(Difference {
                step: step.to_string(),
                path: p.clone(),
                pvesim: a.cloned(),
                fakepve: b.cloned(),
            });
        }
    }
    (out, same)
}
