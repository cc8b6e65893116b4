//! The `ensure_image` action: the template a node is cloned from is on the host, made
//! once per run from the site-config's image when missing (see [`crate::templates`]);
//! for a container, the template archive it is created from (see [`crate::ct_templates`]);
//! quick when it is there.

use engine::executor::{ActionCall, ActionError, ActionOutput};

use super::{kind_of, PveRunner};
use crate::templates::Ensured;

impl PveRunner {
    pub(super) async fn ensure_image(
        &self,
        call: &ActionCall,
    ) -> Result<ActionOutput, ActionError> {
        let Some(image) = call.node.image.as_deref() else {
            return Ok(ActionOutput::default());
        };
        let kind = kind_of(&call.node);
        if kind == crate::pve::GuestKind::Lxc {
            // Containers are created from a container template archive, not cloned.
            let volid = self.ct_template(call, image).await?;
            call.facts
                .log(format!("container template '{image}' is {volid}"));
            return Ok(ActionOutput::default());
        }
        let key = (kind, image.to_string());
        if let Some(id) = self
            .templates
            .lock()
            .ok()
            .and_then(|t| t.get(&key).copied())
        {
            call.facts.log(format!("template '{image}' is vmid {id}"));
            return Ok(ActionOutput::default());
        }
        let ensured = match &self.images {
            Some(t) => {
                let facts = call.facts.clone();
                let log = move |l: String| facts.log(l);
                t.ensure(
                    &self.client,
                    kind,
                    image,
                    &call.node.name,
                    call.timeout,
                    &log,
                )
                .await?
            }
            // Without the site-config's images: only a template that is there will do.
            None => Ensured::Present(self.template(kind, image).await?),
        };
        call.facts.log(match ensured {
            Ensured::Present(id) => format!("template '{image}' is there (vmid {id})"),
            Ensured::Made(id) => format!("made template '{image}' (vmid {id})"),
            Ensured::Waited(id) => format!("template '{image}' was made meanwhile (vmid {id})"),
        });
        if let Ok(mut t) = self.templates.lock() {
            t.insert(key, ensured.vmid());
        }
        Ok(ActionOutput::default())
    }
}
