//! Which PVE cluster node a new guest goes on: the manifest node's `target_node:` (which
//! must be an online node of the cluster), or the node its `placement:` policy picks from
//! the memory not committed to guests on each node, then CPU; neither: the node file's
//! node, as on a standalone host.

use engine::executor::{ActionCall, ActionError};

use super::PveRunner;

impl PveRunner {
    /// The cluster node for `call`'s guest; `None`: the node file's node.
    pub(super) async fn cluster_node_for(
        &self,
        call: &ActionCall,
    ) -> Result<Option<String>, ActionError> {
        let node = &call.node;
        if node.target_node.is_none() && node.placement.is_none() {
            return Ok(None);
        }
        let what = match (&node.target_node, node.placement) {
            (Some(t), _) => format!("target_node: {t}"),
            (None, Some(p)) => format!("placement: {}", p.as_str()),
            (None, None) => unreachable!("checked above"),
        };
        if !self.client.detect_cluster().await? {
            return Err(ActionError::new(format!(
                "node '{}' sets `{what}`, but {} is not a PVE cluster member (its /cluster/status has no cluster): remove it, or point the node file at a cluster",
                node.name, self.setup.node_file
            )));
        }
        let chosen = match (&node.target_node, node.placement) {
            (Some(t), _) => {
                let nodes = self.client.cluster_nodes().await?;
                match nodes.iter().find(|n| &n.name == t) {
                    Some(n) if n.online => t.clone(),
                    Some(_) => {
                        return Err(ActionError::new(format!(
                            "node '{}' sets `target_node: {t}`, and cluster node {t} is offline",
                            node.name
                        )))
                    }
                    None => {
                        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                        return Err(ActionError::new(format!(
                            "node '{}' sets `target_node: {t}`, which is not a node of the cluster (nodes: {})",
                            node.name,
                            names.join(", ")
                        )));
                    }
                }
            }
            (None, Some(p)) => {
                let mem = (self.size_for)(node)
                    .map(|s| u64::from(s.memory_mb))
                    .map_err(ActionError::new)?;
                self.client.choose_node(p, &node.name, mem).await?
            }
            (None, None) => return Ok(None),
        };
        call.facts.log(format!("cluster node {chosen} ({what})"));
        Ok(Some(chosen))
    }
}
