//! Checking a loaded manifest's references (`preset`, `spec`, `image` of each
//! node) against a site-config. An unknown one is a `Problem` pointing at the
//! node's field, naming the file that was looked for.
//!
//! A kind is only checked when the site-config has a folder for it: older
//! site-configs have no `images/`, and a site-config without `presets/` says
//! nothing about which presets exist.

use crate::manifest::{did_you_mean, Loaded, Problem, Problems};
use crate::yaml::Span;

use super::{plain_name, Entity, SiteConfig};

/// Every unknown reference of `loaded` in `site`, in node order (the
/// first `MAX_PROBLEMS` described, all counted).
pub fn check_references(loaded: &Loaded, site: &SiteConfig) -> Problems {
    let kinds = [Entity::Preset, Entity::Spec, Entity::Image];
    let known: Vec<Option<Vec<String>>> = kinds
        .iter()
        .map(|k| site.has_catalogue(*k).then(|| site.names(*k)))
        .collect();
    let mut problems = Problems::default();
    for (i, node) in loaded.manifest.nodes.iter().enumerate() {
        let loc = loaded.locations.get(i);
        let fields: [(Option<&String>, Option<Span>); 3] = [
            (node.preset.as_ref(), loc.and_then(|l| l.preset)),
            (node.spec.as_ref(), loc.and_then(|l| l.spec)),
            (node.image.as_ref(), loc.and_then(|l| l.image)),
        ];
        for ((value, span), (kind, names)) in fields.into_iter().zip(kinds.iter().zip(&known)) {
            let (Some(value), Some(names)) = (value, names) else {
                continue;
            };
            if plain_name(value) && names.iter().any(|n| n == value) {
                continue;
            }
            problems.push_with(|| {
                let looked = site.candidates(*kind, if plain_name(value) { value } else { "?" });
                let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = did_you_mean(value, &candidates)
                    .map(|g| format!("did you mean '{g}'? "))
                    .unwrap_or_default();
                let help = format!(
                    "{hint}{} in {}: {}",
                    kind.plural(),
                    site.dir,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
                Problem::new(
                    &loaded.source,
                    format!(
                        "Node '{}' references unknown {} '{}': there is no {}",
                        crate::yaml::shorten(&node.name, 64),
                        kind.noun(),
                        crate::yaml::shorten(value, 64),
                        crate::yaml::shorten(&looked.join(" or "), 240)
                    ),
                    span.or(loc.map(|l| l.node)),
                    &format!("unknown {}", kind.noun()),
                    Some(help),
                )
            });
        }
    }
    problems
}
