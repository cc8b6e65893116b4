//! What `driver preflight` reports about the templates a manifest needs: each one present
//! (its vmid), or missing with the command that makes it, or missing with nothing that
//! could make it (no `images/NAME.yaml`, or one that does not read): the only failure.

use serde::Serialize;

use super::{find, ImageSetup};
use crate::pve::{GuestKind, PveClient, PveError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TemplateState {
    Present {
        vmid: u32,
    },
    /// Missing; `command` makes it.
    Missing {
        source: String,
        command: String,
    },
    /// Missing, and no source is known.
    NoSource {
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateCheck {
    pub image: String,
    pub kind: &'static str,
    #[serde(flatten)]
    pub state: TemplateState,
}

impl TemplateCheck {
    pub fn ok(&self) -> bool {
        !matches!(self.state, TemplateState::NoSource { .. })
    }
}

/// The state of each `(kind, image)` on host `host` (the `-H` name, for the command).
pub async fn check(
    client: &PveClient,
    setup: &ImageSetup,
    host: &str,
    wanted: &[(GuestKind, String)],
) -> Result<Vec<TemplateCheck>, PveError> {
    let mut out = Vec::new();
    for (kind, image) in wanted {
        let state = match find(client, *kind, image).await? {
            Some(vmid) => TemplateState::Present { vmid },
            None if *kind == GuestKind::Lxc => TemplateState::NoSource {
                why: "containers are created from template archives (`vztmpl:`), not cloned".into(),
            },
            None => match (setup.images.get(image), setup.broken.get(image)) {
                (_, Some(why)) => TemplateState::NoSource { why: why.clone() },
                (Some(spec), None) => TemplateState::Missing {
                    source: super::fetch::release_url(spec, setup),
                    command: format!("driver images ensure -H {host} {image}"),
                },
                (None, None) => TemplateState::NoSource {
                    why: format!("the site-config has no images/{image}.yaml"),
                },
            },
        };
        out.push(TemplateCheck {
            image: image.clone(),
            kind: kind.segment(),
            state,
        });
    }
    Ok(out)
}
