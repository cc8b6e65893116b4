//! Guest ownership: the marker driver puts on every guest it creates, how a
//! guest found on a host is judged against a state, and how a state is
//! reconciled with the guests the host says are its own.
//!
//! A guest is ours only when it carries this state's marker, or (guests made
//! before markers existed) when this state recorded its vmid and it carries
//! no marker at all. Adoption, resume, destroy and rollback act on nothing
//! else: a guest of another manifest, or of another state of the same
//! manifest, is never touched.
//!
//! The marker is twofold:
//! - a PVE tag `driver-<state id>`: returned with the guest list, so finding
//!   a state's guests is one call per kind;
//! - a line in the guest's description naming manifest, host, node and
//!   state: set by the clone itself (so a guest is marked from the moment it
//!   exists), read from the guest's config, and enough to rebuild a lost
//!   state from the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::NodeStatus;
use crate::state::{NodeState, RunState};

/// Every driver tag starts with this; the state id follows.
pub const TAG_PREFIX: &str = "driver-";
/// The description line holding the marker (JSON after the prefix).
const LINE_PREFIX: &str = "driver-owner: ";
/// `created_by` of a node whose guest was found through its marker rather
/// than recorded by a run (the journal that said so was lost).
pub const FOUND_BY_MARKER: &str = "found-by-marker";

/// Who a run acts for: a manifest on a host, with one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub manifest: String,
    pub host: String,
    /// The state's id: two states of the same manifest (two state folders,
    /// two machines) never claim each other's guests.
    pub state: String,
}

impl Owner {
    /// The PVE tag of this state's guests.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", self.state)
    }

    pub fn marker(&self, node: &str) -> Marker {
        Marker {
            manifest: self.manifest.clone(),
            host: self.host.clone(),
            node: node.to_string(),
            state: self.state.clone(),
        }
    }
}

/// What a guest's description says about who made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub manifest: String,
    pub host: String,
    pub node: String,
    pub state: String,
}

impl Marker {
    /// The description a new guest is cloned with.
    pub fn description(&self) -> String {
        // Serializing plain strings cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!(
            "Created by driver for node '{}' of manifest '{}' on '{}'. \
             driver acts only on guests whose marker names its state.\n{LINE_PREFIX}{json}\n",
            self.node, self.manifest, self.host
        )
    }

    /// The marker in a guest's description, if any.
    pub fn parse(description: &str) -> Option<Marker> {
        description
            .lines()
            .find_map(|l| l.trim().strip_prefix(LINE_PREFIX))
            .and_then(|json| serde_json::from_str(json.trim()).ok())
    }

    /// Who this names, for messages: `node 'edge' of manifest 'n1-basic' on 'sim' (state 3f…)`.
    pub fn describe(&self) -> String {
        format!(
            "node '{}' of manifest '{}' on '{}' (state {})",
            self.node, self.manifest, self.host, self.state
        )
    }
}

/// The state id in a guest's PVE tags (`a;driver-3f9a;b`), if any.
pub fn state_in_tags(tags: &str) -> Option<&str> {
    tags.split([';', ',', ' '])
        .find_map(|t| t.trim().strip_prefix(TAG_PREFIX))
        .filter(|s| !s.is_empty())
}

/// `tags` with this owner's tag added (kept as PVE lists them: `;`-separated).
pub fn with_tag(tags: &str, owner: &Owner) -> String {
    let mine = owner.tag();
    let mut all: Vec<&str> = tags
        .split([';', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with(TAG_PREFIX))
        .collect();
    all.push(&mine);
    all.join(";")
}

pub use crate::state::new_state_id;

/// Who a state acts for, as its guests' markers name it (here rather than
/// in `state`, which ownership builds on).
impl RunState {
    pub fn owner(&self) -> Owner {
        Owner {
            manifest: self.manifest.clone(),
            host: self.host.clone(),
            state: self.state_id.clone(),
        }
    }
}

/// How a guest stands to a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries this state's marker for this node.
    Ours,
    /// It carries a marker, but another state's or another node's.
    Foreign(Marker),
    /// It carries no marker at all: someone else's, or made before markers.
    Unmarked,
}

/// What a guest says about itself: its name, tags and description.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub name: &'a str,
    pub tags: &'a str,
    pub description: Option<&'a str>,
}

/// Judges a guest found on the host for `node` of `owner`.
pub fn judge(owner: &Owner, node: &str, seen: Seen<'_>) -> Claim {
    if let Some(m) = seen.description.and_then(Marker::parse) {
        return if m.state == owner.state && m.node == node {
            Claim::Ours
        } else {
            Claim::Foreign(m)
        };
    }
    // A description edited by hand: the tag still says whose it is.
    match state_in_tags(seen.tags) {
        Some(s) if s == owner.state && seen.name == node => Claim::Ours,
        Some(s) => Claim::Foreign(Marker {
            manifest: "?".into(),
            host: owner.host.clone(),
            node: seen.name.to_string(),
            state: s.to_string(),
        }),
        None => Claim::Unmarked,
    }
}

/// A guest on the host that carries a marker of the manifest being run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedGuest {
    pub vmid: u32,
    pub marker: Marker,
}

/// What reconciling a state with its host found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Nodes whose guest the state had lost track of: `(node, vmid)`.
    pub adopted: Vec<(String, u32)>,
    /// Guests marked for a node that already has another guest: left alone
    /// and reported, `(node, vmid)`.
    pub extra: Vec<(String, u32)>,
    /// Guests of this manifest and host that belong to other states.
    pub foreign: BTreeMap<String, Vec<u32>>,
}

/// Why a run must not go on with a state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    #[error(
        "host '{host}' has {count} guest(s) of manifest '{manifest}' from another state \
         (state {states}) that this state does not know (vmids {vmids})"
    )]
    UnknownState {
        manifest: String,
        host: String,
        count: usize,
        states: String,
        vmids: String,
    },
}

impl ReconcileError {
    /// The command that takes such guests over, for the hint. `manifest_arg`:
    /// how the user named the manifest (`--manifest-file F`), else `-M NAME`.
    pub fn hint(&self, manifest_arg: Option<&str>) -> String {
        match self {
            ReconcileError::UnknownState {
                manifest,
                host,
                states,
                ..
            } => {
                let manifest =
                    manifest_arg.map_or_else(|| format!("-M {manifest}"), str::to_string);
                let pick = if states.contains(',') {
                    " --state-id ID"
                } else {
                    ""
                };
                format!(
                    "if that state was lost (a deleted or damaged state folder), \
                     `driver state rebuild {manifest} -H {host}{pick}` takes its guests over; \
                     if another state folder or machine still runs this manifest there, use that one"
                )
            }
        }
    }
}

/// Brings `st` in line with the guests `found` on its host (every guest that
/// carries a marker of this manifest and host, whatever its state).
///
/// `fresh`: the state knows of no guest (just made, or never got as far
/// as a clone). A fresh state
/// facing guests of an unknown state refuses, unless `adopt_lost` (a
/// destroy, which works from the markers when the state is gone) and all of
/// them belong to one state, which this state then becomes.
pub fn reconcile(
    st: &mut RunState,
    found: &[MarkedGuest],
    fresh: bool,
    adopt_lost: bool,
) -> Result<Reconciled, ReconcileError> {
    let mut out = Reconciled::default();
    let mine: Vec<&MarkedGuest> = found
        .iter()
        .filter(|g| g.marker.state == st.state_id)
        .collect();
    let mut foreign: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for g in found.iter().filter(|g| g.marker.state != st.state_id) {
        foreign
            .entry(g.marker.state.clone())
            .or_default()
            .push(g.vmid);
    }
    if fresh && mine.is_empty() && !foreign.is_empty() {
        if adopt_lost && foreign.len() == 1 {
            if let Some(id) = foreign.keys().next() {
                st.state_id = id.clone();
            }
            return reconcile(st, found, false, false);
        }
        let vmids: Vec<String> = foreign.values().flatten().map(u32::to_string).collect();
        return Err(ReconcileError::UnknownState {
            manifest: st.manifest.clone(),
            host: st.host.clone(),
            count: vmids.len(),
            states: foreign.keys().cloned().collect::<Vec<_>>().join(", "),
            vmids: vmids.join(", "),
        });
    }
    out.foreign = foreign;

    // A vmid recorded for a node whose guest there is marked for another of
    // our nodes was a pick that lost a race: it is not this node's. (A nested
    // node's vmid is its nested host's: the same number here says nothing.)
    for n in st.nodes.iter_mut().filter(|n| n.inside.is_none()) {
        let taken = n
            .vm_id
            .is_some_and(|id| mine.iter().any(|g| g.vmid == id && g.marker.node != n.name));
        if taken {
            n.vm_id = None;
        }
    }

    for g in mine {
        let name = &g.marker.node;
        match st.nodes.iter_mut().find(|n| &n.name == name) {
            Some(n) if n.vm_id == Some(g.vmid) => {
                // Known; a guest the state thinks gone is there after all.
                if n.status == NodeStatus::Destroyed {
                    n.status = NodeStatus::Pending;
                    n.done.clear();
                    n.action = None;
                }
                if n.created_by.is_none() {
                    n.created_by = Some(FOUND_BY_MARKER.into());
                }
            }
            Some(n) => {
                let other_is_ours = n.vm_id.is_some_and(|id| {
                    found.iter().any(|x| {
                        x.vmid == id && x.marker.state == g.marker.state && &x.marker.node == name
                    })
                });
                if other_is_ours {
                    out.extra.push((name.clone(), g.vmid));
                    continue;
                }
                // The record of this guest was lost (an emptied or cut
                // journal): take it back, and redo the node's steps on it.
                n.vm_id = Some(g.vmid);
                n.created_by = Some(FOUND_BY_MARKER.into());
                if n.status != NodeStatus::Completed {
                    n.status = NodeStatus::Pending;
                    n.done.clear();
                    n.action = None;
                    n.ip = None;
                    n.host_key = None;
                }
                out.adopted.push((name.clone(), g.vmid));
            }
            None => {
                // A node no longer in the manifest (or never in this copy of
                // it): kept so that it is not forgotten.
                st.nodes.push(NodeState {
                    vm_id: Some(g.vmid),
                    created_by: Some(FOUND_BY_MARKER.into()),
                    ..NodeState::pending(name)
                });
                out.adopted.push((name.clone(), g.vmid));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load, Source};

    fn owner(state: &str) -> Owner {
        Owner {
            manifest: "m".into(),
            host: "h".into(),
            state: state.into(),
        }
    }

    fn state(id: &str) -> RunState {
        let m = load(Source::new(
            "m",
            "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n  - {name: b, type: vm}\n",
        ))
        .unwrap()
        .manifest;
        let mut st = RunState::for_manifest(&m, "h", "r1", "create", None);
        st.state_id = id.into();
        st
    }

    fn marked(vmid: u32, node: &str, state: &str) -> MarkedGuest {
        MarkedGuest {
            vmid,
            marker: owner(state).marker(node),
        }
    }

    #[test]
    fn the_marker_survives_the_description_around_it() {
        let m = owner("00ff").marker("edge");
        let text = format!("notes by hand\n{}more notes", m.description());
        assert_eq!(Marker::parse(&text), Some(m));
        assert_eq!(Marker::parse("driver-owner: {not json"), None);
        assert_eq!(Marker::parse(""), None);
    }

    #[test]
    fn tags_are_kept_and_ours_replaces_an_older_one() {
        assert_eq!(state_in_tags("a;driver-12ab;b"), Some("12ab"));
        assert_eq!(state_in_tags("a,b"), None);
        assert_eq!(state_in_tags("driver-"), None);
        assert_eq!(with_tag("", &owner("1")), "driver-1");
        assert_eq!(with_tag("prod;driver-0", &owner("1")), "prod;driver-1");
        let id = new_state_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_state_id());
    }

    #[test]
    fn a_guest_is_ours_only_with_this_states_marker_for_this_node() {
        let me = owner("s1");
        let desc = me.marker("a").description();
        let seen = |name, tags, d: Option<&'static str>| Seen {
            name,
            tags,
            description: d,
        };
        let leaked: &'static str = Box::leak(desc.into_boxed_str());
        assert_eq!(judge(&me, "a", seen("a", "", Some(leaked))), Claim::Ours);
        // Another node of ours, another state, another manifest: not ours.
        assert!(matches!(
            judge(&me, "b", seen("a", "", Some(leaked))),
            Claim::Foreign(_)
        ));
        assert!(matches!(
            judge(&owner("s2"), "a", seen("a", "", Some(leaked))),
            Claim::Foreign(_)
        ));
        // The description edited away: the tag still tells.
        assert_eq!(judge(&me, "a", seen("a", "driver-s1", None)), Claim::Ours);
        assert!(matches!(
            judge(&me, "a", seen("a", "driver-s9", None)),
            Claim::Foreign(_)
        ));
        assert_eq!(
            judge(&me, "a", seen("a", "prod", Some("hand made"))),
            Claim::Unmarked
        );
    }

    #[test]
    fn reconcile_takes_back_what_a_lost_journal_forgot() {
        let mut st = state("s1");
        st.nodes[1].vm_id = Some(200);
        st.nodes[1].status = NodeStatus::Completed;
        let found = [
            marked(100, "a", "s1"),
            marked(200, "b", "s1"),
            marked(300, "gone", "s1"),
        ];
        let r = reconcile(&mut st, &found, false, false).unwrap();
        assert_eq!(
            r.adopted,
            [("a".to_string(), 100), ("gone".to_string(), 300)]
        );
        assert_eq!(st.nodes[0].vm_id, Some(100));
        assert_eq!(st.nodes[0].status, NodeStatus::Pending);
        assert_eq!(st.nodes[1].status, NodeStatus::Completed);
        assert_eq!(st.node("gone").and_then(|n| n.vm_id), Some(300));
        assert!(st.node("gone").is_some_and(NodeState::may_exist));
    }

    #[test]
    fn a_vmid_recorded_for_a_node_but_marked_for_another_is_forgotten() {
        // b's pick lost the race for 100 to a, and b was cut off before its
        // next pick was recorded.
        let mut st = state("s1");
        st.nodes[0].vm_id = Some(100);
        st.nodes[1].vm_id = Some(100);
        reconcile(&mut st, &[marked(100, "a", "s1")], false, false).unwrap();
        assert_eq!(st.nodes[0].vm_id, Some(100));
        assert_eq!(st.nodes[1].vm_id, None);
    }

    #[test]
    fn a_nested_nodes_vmid_is_not_judged_by_the_guests_here() {
        // b lives on a nested PVE, which picked the number 100 for it too.
        let mut st = state("s1");
        st.nodes[0].vm_id = Some(100);
        st.nodes[1].vm_id = Some(100);
        st.nodes[1].inside = Some("a".into());
        reconcile(&mut st, &[marked(100, "a", "s1")], false, false).unwrap();
        assert_eq!(st.nodes[1].vm_id, Some(100));
    }

    #[test]
    fn reconcile_leaves_a_second_guest_of_a_node_alone() {
        let mut st = state("s1");
        st.nodes[0].vm_id = Some(100);
        let found = [marked(100, "a", "s1"), marked(101, "a", "s1")];
        let r = reconcile(&mut st, &found, false, false).unwrap();
        assert_eq!(r.extra, [("a".to_string(), 101)]);
        assert_eq!(st.nodes[0].vm_id, Some(100));
    }

    #[test]
    fn a_fresh_state_refuses_another_states_guests_unless_destroying_one_lost_state() {
        let found = [marked(100, "a", "old"), marked(101, "b", "old")];
        let mut st = state("new");
        let e = reconcile(&mut st, &found, true, false).unwrap_err();
        assert!(e.to_string().contains("100, 101"), "{e}");
        assert!(
            e.hint(None).contains("driver state rebuild -M m -H h"),
            "{}",
            e.hint(None)
        );
        assert!(e
            .hint(Some("--manifest-file x.yaml"))
            .contains("rebuild --manifest-file x.yaml -H h"));
        // A destroy takes the lost state over.
        let mut st = state("new");
        let r = reconcile(&mut st, &found, true, true).unwrap();
        assert_eq!(st.state_id, "old");
        assert_eq!(r.adopted.len(), 2);
        // Two lost states: which one is not ours to guess.
        let two = [marked(100, "a", "old"), marked(101, "b", "older")];
        let e = reconcile(&mut state("new"), &two, true, true).unwrap_err();
        assert!(e.hint(None).contains("--state-id"), "{}", e.hint(None));
        // A state that is not fresh leaves other states' guests alone.
        let mut st = state("s1");
        let r = reconcile(&mut st, &found, false, false).unwrap();
        assert!(r.adopted.is_empty());
        assert_eq!(r.foreign["old"], [100, 101]);
        assert_eq!(st.nodes[0].vm_id, None);
    }
}
