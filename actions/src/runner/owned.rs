//! Which guests a call may act on: a guest's config read as an ownership
//! claim (`engine::ownership` judges it), the vmid a call may touch, and the
//! engine's `exists` / `marked_guests` questions.

use engine::executor::{ActionCall, ActionError};
use engine::manifest::NodeSpec;
use engine::ownership::{self, Claim, MarkedGuest, Marker, Owner, Seen};
use serde_json::Value;

use super::{kind_of, PveRunner};
use crate::pve::GuestKind;

impl PveRunner {
    /// A guest as its config shows it (`None`: there is no such guest).
    pub(super) async fn inspect(
        &self,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<Option<Inspected>, ActionError> {
        match self.client.config(kind, vmid).await {
            Ok(cfg) => Ok(Some(Inspected::from_config(vmid, kind, &cfg))),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The guest of `node` that carries `owner`'s tag, when no vmid says which.
    async fn tagged(&self, node: &NodeSpec, owner: &Owner) -> Result<Option<u32>, ActionError> {
        let kind = kind_of(node);
        Ok(self
            .client
            .guests()
            .await?
            .into_iter()
            .find(|g| {
                !g.template
                    && g.kind == kind
                    && g.name == node.name
                    && ownership::state_in_tags(&g.tags) == Some(owner.state.as_str())
            })
            .map(|g| g.vmid))
    }

    /// The vmid of the node's guest when it is this state's to act on:
    /// it carries this state's marker, or (made before markers) this state
    /// recorded it and it carries none. A guest that is someone else's is
    /// left alone: an error when this state recorded that vmid (something
    /// took its place), `None` when only the manifest named it.
    pub(super) async fn own_vmid(&self, call: &ActionCall) -> Result<Option<u32>, ActionError> {
        let Some(id) = call.vm_id else {
            return self.tagged(&call.node, &call.owner).await;
        };
        let Some(found) = self.inspect(kind_of(&call.node), id).await? else {
            return Ok(None);
        };
        match found.standing(call) {
            Ok(()) => Ok(Some(id)),
            Err(why) if call.recorded => Err(ActionError::new(format!("{why}: not touching it"))),
            Err(why) => {
                call.facts.log(format!("{why}: left alone"));
                Ok(None)
            }
        }
    }

    pub(super) async fn owned_exists(
        &self,
        node: &NodeSpec,
        _host: &str,
        vm_id: Option<u32>,
        owner: &Owner,
    ) -> Result<bool, ActionError> {
        let Some(id) = vm_id else {
            return Ok(self.tagged(node, owner).await?.is_some());
        };
        Ok(match self.inspect(kind_of(node), id).await? {
            None => false,
            Some(found) => match found.claim(owner, &node.name) {
                Claim::Ours => true,
                // Recorded by this state (the caller's vmid) before markers.
                Claim::Unmarked => found.name == node.name && !found.template,
                Claim::Foreign(_) => false,
            },
        })
    }

    pub(super) async fn owned_marked_guests(
        &self,
        owner: &Owner,
        names: &[String],
    ) -> Result<Vec<MarkedGuest>, ActionError> {
        let mut out = Vec::new();
        for g in self.client.guests().await? {
            // Tagged by some driver state; or named like one of the nodes
            // and not tagged yet (a clone that was cut off before its tag
            // was set carries the marker in its description already).
            let tagged = ownership::state_in_tags(&g.tags).is_some();
            if g.template || !(tagged || names.contains(&g.name)) {
                continue;
            }
            let Some(found) = self.inspect(g.kind, g.vmid).await? else {
                continue;
            };
            let marker = found.marker.or_else(|| {
                // A description edited by hand: the tag still says whose.
                ownership::state_in_tags(&found.tags)
                    .filter(|s| *s == owner.state)
                    .map(|_| owner.marker(&found.name))
            });
            if let Some(m) = marker.filter(|m| m.manifest == owner.manifest && m.host == owner.host)
            {
                out.push(MarkedGuest {
                    vmid: g.vmid,
                    marker: m,
                });
            }
        }
        Ok(out)
    }
}

/// What a guest's config says about who it is.
pub(super) struct Inspected {
    pub(super) vmid: u32,
    pub(super) kind: GuestKind,
    pub(super) name: String,
    pub(super) tags: String,
    pub(super) description: Option<String>,
    pub(super) marker: Option<Marker>,
    pub(super) template: bool,
}

impl Inspected {
    fn from_config(vmid: u32, kind: GuestKind, cfg: &Value) -> Self {
        let s = |k: &str| cfg.get(k).and_then(Value::as_str).map(str::to_string);
        let description = s("description");
        Inspected {
            vmid,
            kind,
            name: match kind {
                GuestKind::Qemu => s("name"),
                GuestKind::Lxc => s("hostname"),
            }
            .unwrap_or_default(),
            tags: s("tags").unwrap_or_default(),
            marker: description.as_deref().and_then(Marker::parse),
            description,
            template: cfg.get("template").is_some_and(|t| t == 1 || t == "1"),
        }
    }

    pub(super) fn claim(&self, owner: &Owner, node: &str) -> Claim {
        ownership::judge(
            owner,
            node,
            Seen {
                name: &self.name,
                tags: &self.tags,
                description: self.description.as_deref(),
            },
        )
    }

    /// Ok when `call` may act on this guest; else why not.
    pub(super) fn standing(&self, call: &ActionCall) -> Result<(), String> {
        let node = &call.node.name;
        let what = format!(
            "vmid {} ({} '{}')",
            self.vmid,
            self.kind.segment(),
            self.name
        );
        if self.template {
            return Err(format!("{what} is a template"));
        }
        match self.claim(&call.owner, node) {
            Claim::Ours => Ok(()),
            // Made by this state before guests carried markers.
            Claim::Unmarked if call.recorded && self.name == *node => Ok(()),
            Claim::Unmarked => Err(format!(
                "{what} carries no driver ownership marker: driver did not create it for this state"
            )),
            Claim::Foreign(m) if m.manifest == "?" => Err(format!(
                "{what} carries the tag of another driver state ({})",
                m.state
            )),
            Claim::Foreign(m) => Err(format!("{what} belongs to {}", m.describe())),
        }
    }
}
