//! A YAML document whose leaves are secret: what a secrets file holds once
//! decrypted (or before it is encrypted).
//!
//! Maps keep their order (sops' MAC depends on it); every scalar keeps its
//! text in a `Secret`, so printing a tree with `{:?}` shows its shape only.

use crate::yaml::{Node, Value};

use super::secret::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

impl Kind {
    /// The `type:` word of a sops `ENC[...]` value.
    pub fn sops_type(self) -> &'static str {
        match self {
            Kind::Str => "str",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Bool => "bool",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "boolean",
        }
    }
}

/// One scalar. `text` is canonical: decimal for integers, Go's shortest form for
/// floats (what sops hashes), `true`/`false` for booleans.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    pub kind: Kind,
    pub text: Secret<String>,
}

impl Leaf {
    pub fn str(s: impl Into<String>) -> Self {
        Leaf {
            kind: Kind::Str,
            text: Secret::new(s.into()),
        }
    }

    /// The bytes sops feeds its MAC and its cipher: booleans are `True`/`False`
    /// (a leftover of sops' Python origins).
    pub fn sops_bytes(&self) -> &[u8] {
        match (self.kind, self.text.expose().as_str()) {
            (Kind::Bool, "true") => b"True",
            (Kind::Bool, _) => b"False",
            (_, t) => t.as_bytes(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    Null,
    Leaf(Leaf),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` does.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's Display is the shortest round-tripping form without an exponent, as Go's.
        format!("{f}")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the key at '{path}' is not a string (only string keys can be encrypted; quote it)")]
pub struct NonStringKey {
    pub path: String,
}

impl Tree {
    /// Builds a tree from parsed YAML. Keys must be strings, as sops requires.
    pub fn from_node(node: &Node) -> Result<Tree, NonStringKey> {
        Self::from_node_at(node, &mut Vec::new())
    }

    fn from_node_at(node: &Node, path: &mut Vec<String>) -> Result<Tree, NonStringKey> {
        let leaf = |kind, text: String| {
            Tree::Leaf(Leaf {
                kind,
                text: Secret::new(text),
            })
        };
        Ok(match &node.value {
            Value::Null => Tree::Null,
            Value::Bool(b) => leaf(Kind::Bool, b.to_string()),
            Value::Int(i) => leaf(Kind::Int, i.to_string()),
            Value::Float(f) => leaf(Kind::Float, go_float(*f)),
            Value::Str(s) => leaf(Kind::Str, s.clone()),
            Value::Seq(items) => Tree::Seq(
                items
                    .iter()
                    .map(|n| Self::from_node_at(n, path))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let Some(key) = k.as_str() else {
                        path.push(format!("({})", k.kind()));
                        return Err(NonStringKey {
                            path: path.join("."),
                        });
                    };
                    path.push(key.to_string());
                    let v = Self::from_node_at(v, path)?;
                    path.pop();
                    out.push((key.to_string(), v));
                }
                Tree::Map(out)
            }
        })
    }

    pub fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Map(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of map keys.
    pub fn at(&self, path: &[&str]) -> Option<&Tree> {
        path.iter().try_fold(self, |t, k| t.get(k))
    }

    /// A scalar's text (of any kind), still wrapped.
    pub fn secret(&self) -> Option<Secret<String>> {
        match self {
            Tree::Leaf(l) => Some(l.text.clone()),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Tree)] {
        match self {
            Tree::Map(m) => m,
            _ => &[],
        }
    }

    /// Every leaf with its dotted path (`api_tokens.sim`, `ssh_keys[0]`),
    /// for listing what a secrets file holds without its values.
    pub fn leaves(&self) -> Vec<(String, Option<&Leaf>)> {
        let mut out = Vec::new();
        self.walk_paths(String::new(), &mut out);
        out
    }

    fn walk_paths<'a>(&'a self, prefix: String, out: &mut Vec<(String, Option<&'a Leaf>)>) {
        match self {
            Tree::Null => out.push((prefix, None)),
            Tree::Leaf(l) => out.push((prefix, Some(l))),
            Tree::Seq(items) => {
                for (i, t) in items.iter().enumerate() {
                    t.walk_paths(format!("{prefix}[{i}]"), out);
                }
            }
            Tree::Map(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    v.walk_paths(p, out);
                }
            }
        }
    }
}
