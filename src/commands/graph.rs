//! `driver graph`: the node graph as text, DOT or Mermaid.

use std::path::Path;

use engine::ManifestGraph;

use super::{discover_site, load_manifest, Failure};
use crate::cli::{GraphArgs, GraphFormat};
use crate::render;

pub fn run(args: &GraphArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let loaded = load_manifest(&args.manifest.to_ref(), &site)?;
    let g = ManifestGraph::new(&loaded.manifest);
    let out = match args.format {
        GraphFormat::Text => render::graph::text(&g),
        GraphFormat::Dot => render::graph::dot(&g),
        GraphFormat::Mermaid => render::graph::mermaid(&g),
    };
    print!("{out}");
    Ok(())
}
