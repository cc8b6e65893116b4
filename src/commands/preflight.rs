//! `driver preflight -H HOST`: the checks every verb runs first, on their own.

use std::path::Path;

use actions::preflight::{self, Check, Wants};
use engine::catalog::ManifestRef;
use engine::manifest::Pattern;
use engine::site_config::SiteConfig;
use engine::state;

use super::config::{config_failure, open_secrets};
use super::{discover_site, load_manifest, target, Failure};
use crate::cli::PreflightArgs;
use crate::render;

fn check(name: &'static str, ok: bool, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        ok,
        detail,
        fix,
    }
}

pub fn run(args: &PreflightArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let dir = discover_site(site_flag)?;
    let mut checks = vec![check("site-config", true, dir.to_string(), None)];
    let site = SiteConfig::open(dir.clone()).map_err(config_failure)?;
    match open_secrets(&site) {
        Ok(Some(s)) => checks.push(check(
            "secrets",
            true,
            match &s.opened_by {
                Some((_, from)) => format!("{} decrypted (identity from {from})", s.file),
                None => format!("{} (not encrypted)", s.file),
            },
            None,
        )),
        Ok(None) => checks.push(check("secrets", true, "no secrets.yaml".into(), None)),
        Err(e) => checks.push(check(
            "secrets",
            false,
            e.to_string(),
            Some(e.help().unwrap_or_else(|| {
                "point SOPS_AGE_KEY_FILE at the age key the file is encrypted to".into()
            })),
        )),
    }
    let manifest = match &args.manifest {
        Some(m) => Some(load_manifest(&ManifestRef::Name(m.clone()), &dir)?.manifest),
        None => None,
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let api = rt.block_on(async {
        let empty = engine::Manifest {
            schema_version: 2,
            name: "preflight".into(),
            description: None,
            pattern: Pattern::Flat,
            execution: Default::default(),
            settings: Default::default(),
            nodes: Vec::new(),
        };
        let m = manifest.as_ref().unwrap_or(&empty);
        let checked = target::check(&site, &args.host, m)?;
        let (t, guests) = target::connect(checked, &state_dir).await?;
        let mut out = for_run(&t, &guests, m).await;
        if manifest.is_some() {
            let runner = guests.runner(&site, &t, m, &state_dir, &Default::default())?;
            if let Some(images) = runner.images() {
                let templates =
                    super::templates::preflight_checks(&t.client, images.setup(), &args.host, m)
                        .await;
                // Beside the storage checks, before the nested one.
                let at = out
                    .iter()
                    .position(|c| c.name == "nested")
                    .unwrap_or(out.len());
                out.splice(at..at, templates);
            }
        }
        if let Some(sim) = t.sim {
            sim.shutdown().await;
        }
        Ok::<_, Failure>(out)
    })?;
    checks.extend(api);
    // The original's provider lockfile fix: cached lockfiles under .states/
    // go stale when provider versions change, and make `tofu init` fail.
    match actions::tofu::clear_stale_lockfiles(&state_dir.join(".states")) {
        Ok(removed) if removed.is_empty() => checks.push(check(
            "tofu-locks",
            true,
            "no cached provider lockfiles".into(),
            None,
        )),
        Ok(removed) => checks.push(check(
            "tofu-locks",
            true,
            format!(
                "cleared {} cached provider lockfile(s) under .states/",
                removed.len()
            ),
            None,
        )),
        Err(e) => checks.push(check(
            "tofu-locks",
            false,
            format!("cannot clear provider lockfiles under .states/: {e}"),
            Some("remove .states/*/data/.terraform.lock.hcl by hand".into()),
        )),
    }

    if args.json_output {
        render::json::print(&checks);
    } else {
        for c in &checks {
            crate::outln!(
                "{} {:12} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = c.fix.as_ref().filter(|_| !c.ok) {
                crate::outln!("     {:12} fix: {fix}", "");
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Run(Some(miette::miette!(
            "{failed} preflight check(s) failed"
        ))))
    }
}

/// The preflight checks of a connected host for a run of `manifest`: the
/// API's, the content of the storages it uses, and nested virtualization
/// for a tiered manifest.
pub async fn for_run(
    t: &target::Target,
    guests: &target::Guests,
    manifest: &engine::manifest::Manifest,
) -> Vec<Check> {
    let storage = target::datastore(&t.host);
    let wants = Wants {
        host: &t.host.name,
        storage: &storage,
        bridge: &t.host.bridge,
    };
    let mut out = preflight::api_checks(&t.client, &wants).await;
    if out
        .iter()
        .any(|c| !c.ok && matches!(c.name, "api" | "node"))
    {
        // Nothing more can be asked of the API.
        return out;
    }
    // Unlisted (the token check says why): no image is taken for a download.
    let templates = t.client.guests().await.ok();
    let needs = super::hostcheck::storage_needs(&t.placement, manifest, templates.as_deref());
    out.extend(preflight::content::content_checks(&t.client, &t.host.name, &needs).await);
    // VMs of this host that may be cloned onto another cluster node (containers are created
    // on theirs, not cloned).
    let elsewhere: Vec<preflight::cluster::Elsewhere> = manifest
        .nodes
        .iter()
        .filter(|n| n.parent.is_none() && n.kind != engine::manifest::NodeKind::Ct)
        .filter(|n| n.target_node.is_some() || n.placement.is_some())
        .map(|n| preflight::cluster::Elsewhere {
            name: &n.name,
            target_node: n.target_node.as_deref(),
            storage: n.storage.as_deref().unwrap_or(&storage),
        })
        .collect();
    out.extend(
        preflight::cluster::placement_checks(&t.client, &t.host.name, &storage, &elsewhere).await,
    );
    if manifest.pattern == engine::manifest::Pattern::Tiered {
        let key = guests.ssh_key();
        out.push(super::hostcheck::nested(t, guests.is_simulated(), key).await);
    }
    out
}

/// Prints failed checks; an error when any failed.
pub fn report(checks: &[Check]) -> Result<(), Failure> {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for c in &failed {
        crate::render::err(&format!("preflight: {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            crate::render::err(&format!("    fix: {fix}\n"));
        }
    }
    let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
    Err(Failure::Run(Some(miette::miette!(
        help = "fix what is listed above, or pass --skip-preflight to go ahead anyway",
        "preflight failed ({} of {} checks: {})",
        failed.len(),
        checks.len(),
        names.join(", ")
    ))))
}
