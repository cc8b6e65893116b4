//! `driver validate`: check manifests and report every problem.

use std::path::Path;

use engine::catalog::{self, ManifestRef};
use engine::manifest::{self, InvalidManifest};
use engine::output::ProblemOutput;
use engine::site_config;
use engine::{ManifestGraph, Plan, Verb};
use serde::Serialize;

use super::{catalog_failure, discover_site, Failure};
use crate::cli::ValidateArgs;
use crate::render;

#[derive(Serialize)]
struct Checked {
    origin: String,
    valid: bool,
    name: Option<String>,
    nodes: Option<usize>,
    depth: Option<usize>,
    delegations: Option<usize>,
    schema_version: Option<u32>,
    /// Every problem found; `problems` lists the first hundred, then a
    /// line counting the rest.
    problem_count: usize,
    problems: Vec<ProblemOutput>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ValidateOutput {
    valid: bool,
    manifests: Vec<Checked>,
    /// With `--all`: the site-config's files that do not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    site_config: Option<Vec<ProblemOutput>>,
}

pub fn run(args: &ValidateArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let refs: Vec<ManifestRef> = if args.all {
        catalog::list(&site)
            .into_iter()
            .map(|e| match e.path {
                Some(p) => ManifestRef::File(p),
                None => ManifestRef::Name(e.name),
            })
            .collect()
    } else if let Some(n) = &args.name {
        vec![ManifestRef::Name(n.clone())]
    } else if let Some(j) = &args.manifest_json {
        vec![ManifestRef::Json(j.clone())]
    } else {
        args.files
            .iter()
            .chain(&args.manifest_files)
            .cloned()
            .map(ManifestRef::File)
            .collect()
    };
    if refs.is_empty() {
        return Err(Failure::usage(miette::miette!(
            help = "e.g. `driver validate my.yaml`, `driver validate -M n2-quick` or `driver validate --all`",
            "nothing to validate"
        )));
    }
    if args.to_v2 && refs.len() != 1 {
        return Err(Failure::usage(miette::miette!(
            "--to-v2 prints one manifest; name exactly one"
        )));
    }

    // Unknown presets, specs and images are problems of the manifest too.
    let site_refs =
        Some(site_config::SiteConfig::open(site.clone()).map_err(super::config::config_failure)?);
    let mut results = Vec::new();
    let mut reports: Vec<miette::Report> = Vec::new();
    for r in &refs {
        let source = catalog::resolve(r, &site).map_err(catalog_failure)?;
        let origin = source.origin.clone();
        let checked = manifest::load(source).and_then(|loaded| {
            let problems = site_refs
                .as_ref()
                .map(|s| site_config::refs::check_references(&loaded, s))
                .unwrap_or_default();
            if problems.is_empty() {
                Ok(loaded)
            } else {
                Err(problems.into_invalid(&loaded.source))
            }
        });
        match checked {
            Ok(mut loaded) => {
                // Nothing points into a valid manifest's text again: freed
                // before the plan is built (a 100k-node file is 11 MB).
                loaded.source.text = Default::default();
                let g = ManifestGraph::new(&loaded.manifest);
                // Planning is part of validity: what cannot be planned cannot run.
                let plan = Plan::build(Verb::Create, &g, "(validate)");
                if args.to_v2 {
                    crate::outln!(
                        "{}",
                        serde_json::to_string_pretty(&loaded.manifest).unwrap_or_default()
                    );
                } else if !args.json_output {
                    crate::outln!(
                        "ok  {origin}: '{}', {} node{}, depth {}, {} delegated subtree{}",
                        loaded.manifest.name,
                        g.len(),
                        if g.len() == 1 { "" } else { "s" },
                        g.max_depth() + 1,
                        plan.delegations.len(),
                        if plan.delegations.len() == 1 { "" } else { "s" },
                    );
                }
                for w in &loaded.warnings {
                    crate::errln!("warning: {w}");
                }
                results.push(Checked {
                    origin,
                    valid: true,
                    name: Some(loaded.manifest.name.clone()),
                    nodes: Some(g.len()),
                    depth: Some(g.max_depth() + 1),
                    delegations: Some(plan.delegations.len()),
                    schema_version: Some(loaded.source_version),
                    problem_count: 0,
                    problems: Vec::new(),
                    warnings: loaded.warnings.clone(),
                });
                // The process ends soon: freeing a 100k-node manifest's
                // nodes, graph and plan piece by piece took a tenth of
                // `validate`'s time. The exit hands their memory back whole.
                std::mem::forget(plan);
                std::mem::forget(g);
                std::mem::forget(loaded);
            }
            Err(invalid) => {
                results.push(Checked {
                    origin,
                    valid: false,
                    name: None,
                    nodes: None,
                    depth: None,
                    delegations: None,
                    schema_version: None,
                    problem_count: invalid.total,
                    problems: ProblemOutput::all(&invalid),
                    warnings: Vec::new(),
                });
                reports.push(miette::Report::new::<InvalidManifest>(invalid));
            }
        }
    }
    // `--all` is everything driver would read, the site-config's own files too.
    let site_problems = match (&site_refs, args.all) {
        (Some(s), true) => s.check_files(),
        _ => Vec::new(),
    };
    let broken = site_problems.len();
    let site_config = args
        .all
        .then(|| super::config::report_problems(site_problems));
    let valid = reports.is_empty() && broken == 0;
    if args.json_output {
        render::json::print(&ValidateOutput {
            valid,
            manifests: results,
            site_config,
        });
    }
    if valid {
        return Ok(());
    }
    for r in &reports {
        crate::errln!("{r:?}");
    }
    match broken {
        0 => Err(Failure::Usage(None)),
        n => Err(super::config::problems_failure(n)),
    }
}
