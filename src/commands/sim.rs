//! `driver sim serve`: runs pvesim (the Proxmox VE simulator in the `sim` crate) in the
//! foreground until Ctrl-C, and prints where to reach it and what to pin.

use super::Failure;
use crate::cli::sim::SimCommand;

pub fn run(cmd: &SimCommand) -> Result<(), Failure> {
    let SimCommand::Serve(args) = cmd;
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err(Failure::usage(miette::miette!(
            "--time-scale must be 0 or more, got {}",
            args.time_scale
        )));
    }
    let token = match &args.token {
        Some(t) => Some(
            t.parse::<sim::ApiToken>()
                .map_err(|e| Failure::usage(miette::miette!("--token: {e}")))?,
        ),
        None => None,
    };
    // Faults a parent driver passes down to nested simulators (a JSON list).
    let mut faults = crate::env::SimEnv::read()?.faults;
    for f in &args.faults {
        let fault: sim::Fault = serde_json::from_str(f)
            .map_err(|e| Failure::usage(miette::miette!("--fault '{f}': {e}")))?;
        faults.push(fault);
    }
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        let ip = args.bind.ip().to_string().replace(':', "_");
        std::env::temp_dir().join(format!("pvesim-{ip}-{}", args.bind.port()))
    });
    let config = sim::SimConfig {
        bind: args.bind,
        node_name: args.node.clone(),
        token,
        // Ticket login stays off unless a password is given out of band (never on argv).
        root_password: crate::env::sim_root_password(),
        time_scale: args.time_scale,
        state_dir: Some(state_dir),
        faults,
        guest_ssh_port: args.guest_ssh_port,
        guest_net: args.guest_net,
        bare: args.bare,
        cluster_nodes: args.cluster_nodes,
        ..sim::SimConfig::default()
    };
    let on_ready = |h: &sim::SimHandle| {
        let dir = h
            .state_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        crate::outln!("pvesim listening on {} (node {})", h.url(), h.node());
        crate::outln!("  API:         {}", h.api_url());
        let urls = h.node_urls();
        if urls.len() > 1 {
            for (node, url) in &urls {
                crate::outln!("  cluster node {node}: {url}");
            }
        }
        crate::outln!("  fingerprint: {}", h.fingerprint());
        if let Some(f) = h.fingerprint_file() {
            crate::outln!("               (also in {})", f.display());
        }
        if let Some(f) = h.token_file() {
            crate::outln!(
                "  token:       {} (USER@REALM!ID=SECRET in {})",
                h.token().full_id(),
                f.display()
            );
        }
        crate::outln!("  CA:          {dir}/pve-root-ca.pem");
        crate::outln!("  state:       {dir}");
        crate::outln!("  time scale:  {}", h.time_scale());
        let net = h.guest_net();
        crate::outln!(
            "  guests:      {}.{}.0.0/16, SSH on port {} (folders in {})",
            net[0],
            net[1],
            h.guest_ssh_port(),
            h.guests_dir().display()
        );
        if let Some(m) = h.images_mirror_url() {
            crate::outln!(
                "  images:      {m} (the image mirror of a bare host: releases and /images/)"
            );
        }
        crate::outln!("Ctrl-C stops it.");
    };
    let served = match args.shared {
        // Checked often: a run waits for this one to be gone before it starts another.
        true => sim::folder::serve_shared(config, std::time::Duration::from_millis(200), on_ready),
        false => sim::serve_until_signal(config, on_ready),
    };
    served.map_err(|e| match e {
        // Bad flags are usage errors (exit 2); anything else is a failed run (exit 1).
        sim::SimError::NonLoopbackBind(_)
        | sim::SimError::BadNodeName(_)
        | sim::SimError::BadToken(_)
        | sim::SimError::BadGuestNet(_) => Failure::usage(miette::miette!("{e}")),
        e => Failure::Run(Some(miette::miette!("{e}"))),
    })
}
