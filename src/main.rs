//! `driver`: the command line. Parses arguments, wires the crates together
//! and renders what they produce; the logic lives in `engine` and `actions`.

mod cli;
mod commands;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ListWhat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let site = cli.site_config.as_deref();
    let result = match &cli.command {
        Command::Create(a) => commands::run::run(engine::Verb::Create, a, site),
        Command::Destroy(a) => commands::run::run(engine::Verb::Destroy, a, site),
        Command::Test(a) => commands::run::run(engine::Verb::Test, a, site),
        Command::Status(a) => commands::status::run(a, site),
        Command::Preflight(a) => commands::preflight::run(a, site),
        Command::Images {
            what: cli::ImagesCmd::Download(a),
        } => commands::images::download(a, site),
        Command::Validate(a) => commands::validate::run(a, site),
        Command::Graph(a) => commands::graph::run(a, site),
        Command::List {
            what: ListWhat::Manifests { json_output },
        } => commands::list::manifests(*json_output, site),
        Command::Config { what } => commands::config::run(what, site),
        Command::Secrets { what } => commands::secrets::run(what, site),
        Command::State { what } => commands::state::run(what, site),
        Command::Sim { what } => commands::sim::run(what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let code = f.exit_code();
            if let Some(report) = f.report() {
                render::err(&format!("{report:?}\n"));
            }
            ExitCode::from(code)
        }
    }
}

/// Logs go to stderr so `--json-output` keeps stdout clean.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its own report of a failed write is an `crate::errln!`, which panics
        // when stderr is gone (a lost terminal): drop such logs instead.
        .log_internal_errors(false)
        .with_target(false)
        .init();
}
