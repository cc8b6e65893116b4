//! One module per verb. Each turns parsed arguments into calls on the
//! library crates and hands the results to a renderer.

pub mod config;
pub mod execute;
pub mod graph;
pub mod guard;
pub mod heal;
pub mod host;
pub mod host_node;
pub mod hostcheck;
pub mod images;
pub mod list;
pub mod node_config;
pub mod preflight;
pub mod pull;
pub mod resources;
pub mod run;
pub mod scenario;
mod scenario_context;
pub mod scenario_table;
pub mod secrets;
pub mod serve;
pub mod sim;
pub mod simhost;
pub mod sshkey;
pub mod state;
pub mod status;
pub mod target;
pub mod templates;
pub mod validate;

use std::path::Path;

use engine::catalog::{self, CatalogError, ManifestRef};
use engine::manifest::{self, Loaded};
use engine::site_config::{self, Probe, SiteConfigDir};

use crate::cli::ManifestArgs;

pub use crate::failure::Failure;

pub fn discover_site(flag: Option<&Path>) -> Result<SiteConfigDir, Failure> {
    let site = site_config::discover(&Probe::from_env(flag.map(Path::to_path_buf)))
        .map_err(|e| Failure::usage(miette::miette!("{e}")))?;
    tracing::info!("site-config: {site}");
    Ok(site)
}

pub fn catalog_failure(e: CatalogError) -> Failure {
    let help = e.help();
    let report = match help {
        Some(h) => miette::miette!(help = h, "{e}"),
        None => miette::miette!("{e}"),
    };
    Failure::usage(report)
}

impl ManifestArgs {
    /// How the user named the manifest, to repeat in a hint's command.
    pub fn cli_flag(&self) -> String {
        match (&self.name, &self.manifest_file) {
            (Some(n), _) => format!("-M {n}"),
            (_, Some(f)) => format!("--manifest-file {}", f.display()),
            _ => "--manifest-json JSON".into(),
        }
    }

    pub fn to_ref(&self) -> ManifestRef {
        match (&self.name, &self.manifest_file, &self.manifest_json) {
            (Some(n), _, _) => ManifestRef::Name(n.clone()),
            (_, Some(f), _) => ManifestRef::File(f.clone()),
            (_, _, Some(j)) => ManifestRef::Json(j.clone()),
            // clap's required group guarantees one of them.
            _ => ManifestRef::Name(String::new()),
        }
    }
}

/// Checks a manifest's `preset` / `spec` / `image` references against the site-config.
pub fn check_site_refs(loaded: &Loaded, site: &SiteConfigDir) -> Result<(), Failure> {
    let opened = site_config::SiteConfig::open(site.clone()).map_err(config::config_failure)?;
    let problems = site_config::refs::check_references(loaded, &opened);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(problems.into_invalid(&loaded.source)))
}

/// Finds, reads and validates a manifest; deprecation notes go to stderr.
pub fn load_manifest(r: &ManifestRef, site: &SiteConfigDir) -> Result<Loaded, Failure> {
    let source = catalog::resolve(r, site).map_err(catalog_failure)?;
    let loaded = manifest::load(source).map_err(Failure::usage)?;
    check_site_refs(&loaded, site)?;
    for w in &loaded.warnings {
        crate::render::err(&format!("warning: {w}\n"));
    }
    Ok(loaded)
}
