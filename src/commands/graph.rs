//! `driver graph`: the node graph as text, DOT, Mermaid or manifest JSON.

use std::path::Path;

use engine::manifest::NodeKind;
use engine::{Manifest, ManifestGraph};

use super::{discover_site, load_manifest, Failure};
use crate::cli::{GraphArgs, GraphFormat};
use crate::render;

pub fn run(args: &GraphArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let loaded = load_manifest(&args.manifest.to_ref(), &site)?;
    let sub: Manifest;
    let manifest = match &args.subtree {
        None => &loaded.manifest,
        Some(name) => {
            let g = ManifestGraph::new(&loaded.manifest);
            let i = g
                .index_of(name)
                .filter(|&i| g.node(i).kind == NodeKind::Pve && !g.children(i).is_empty())
                .ok_or_else(|| {
                    Failure::usage(miette::miette!(
                        help = "--subtree takes a pve node that has nodes below it",
                        "'{name}' is not a pve node with children in manifest '{}'",
                        loaded.manifest.name
                    ))
                })?;
            sub = g.subtree_manifest(i);
            &sub
        }
    };
    let g = ManifestGraph::new(manifest);
    let out = match args.format {
        GraphFormat::Text => render::graph::text(&g),
        GraphFormat::Dot => render::graph::dot(&g),
        GraphFormat::Mermaid => render::graph::mermaid(&g),
        GraphFormat::Json => format!("{}\n", manifest.to_json()),
    };
    crate::out!("{out}");
    Ok(())
}
