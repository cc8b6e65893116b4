//! `driver list manifests`.

use std::path::Path;

use engine::catalog;
use serde::Serialize;

use super::{discover_site, Failure};
use crate::render;

#[derive(Serialize)]
struct Listed {
    name: String,
    source: String,
    shadows_builtin: bool,
}

pub fn manifests(json: bool, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let entries: Vec<Listed> = catalog::list(&site)
        .into_iter()
        .map(|e| Listed {
            source: e
                .path
                .map_or_else(|| "built-in".to_string(), |p| p.display().to_string()),
            name: e.name,
            shadows_builtin: e.shadows_builtin,
        })
        .collect();
    if json {
        render::json::print(&entries);
        return Ok(());
    }
    crate::outln!("site-config: {site}");
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for e in &entries {
        let note = if e.shadows_builtin {
            "  (replaces the built-in one)"
        } else {
            ""
        };
        crate::outln!("  {:width$}  {}{note}", e.name, e.source);
    }
    Ok(())
}
