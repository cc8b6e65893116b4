//! A node's path through nested drivers: `root-pve/leaf-pve/edge`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Node names joined by `/`, from the outermost driver's node down. Node
/// names are hostnames (no `/`), so the path reads back unambiguously.
/// Serialized as that string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodePathError {
    #[error("a node path may not be empty")]
    Empty,
    #[error("node path '{0}' has an empty name in it")]
    EmptyName(String),
}

impl NodePath {
    /// The path of a node of this driver's own manifest (names are
    /// validated hostnames, so one name is one segment).
    pub fn node(name: &str) -> NodePath {
        NodePath(name.to_string())
    }

    /// `self/name`.
    pub fn child(&self, name: &str) -> NodePath {
        NodePath(format!("{}/{name}", self.0))
    }

    /// `parent/self`: a child driver's path as its parent sees it.
    pub fn prefixed(&self, parent: &NodePath) -> NodePath {
        NodePath(format!("{}/{}", parent.0, self.0))
    }

    /// The node's own name (the last segment).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodePath {
    type Err = NodePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NodePathError::Empty);
        }
        if s.split('/').any(str::is_empty) {
            return Err(NodePathError::EmptyName(s.to_string()));
        }
        Ok(NodePath(s.to_string()))
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for NodePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_parses_and_serializes_as_a_string() {
        let leaf = NodePath::node("leaf-pve");
        let edge = leaf.child("edge");
        assert_eq!(edge.to_string(), "leaf-pve/edge");
        let up = edge.prefixed(&NodePath::node("root-pve"));
        assert_eq!(up.as_str(), "root-pve/leaf-pve/edge");
        assert_eq!(up.name(), "edge");
        assert_eq!(
            up.segments().collect::<Vec<_>>(),
            ["root-pve", "leaf-pve", "edge"]
        );
        assert_eq!("root-pve/leaf-pve/edge".parse::<NodePath>(), Ok(up.clone()));
        assert_eq!(
            serde_json::to_string(&up).unwrap(),
            r#""root-pve/leaf-pve/edge""#
        );
        let back: NodePath = serde_json::from_str(r#""root-pve/leaf-pve/edge""#).unwrap();
        assert_eq!(back, up);
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!("".parse::<NodePath>(), Err(NodePathError::Empty));
        for bad in ["a//b", "/a", "a/"] {
            assert!(
                matches!(bad.parse::<NodePath>(), Err(NodePathError::EmptyName(_))),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<NodePath>(r#""a//b""#).is_err());
    }
}
