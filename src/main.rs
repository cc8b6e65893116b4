//! `driver`: the command line. Parses arguments, wires the crates together
//! and renders what they produce; the logic lives in `engine` and `actions`.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod env;
mod failure;
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
        Command::Images {
            what: cli::ImagesCmd::Ensure(a),
        } => commands::images::ensure(a, site),
        Command::Validate(a) => commands::validate::run(a, site),
        Command::Graph(a) => commands::graph::run(a, site),
        Command::List {
            what: ListWhat::Manifests { json_output },
        } => commands::list::manifests(*json_output, site),
        Command::Config { what } => commands::config::run(what, site),
        Command::Secrets { what } => commands::secrets::run(what, site),
        Command::State { what } => commands::state::run(what, site),
        Command::Scenario { what } => commands::scenario::run(
            what,
            &commands::scenario::Globals {
                site,
                verbose: cli.verbose,
            },
        ),
        Command::Host { what } => commands::host::run(what, site),
        Command::Sim { what } => commands::sim::run(what),
        Command::Get(a) => commands::resources::get::run(a, site),
        Command::Describe(a) => commands::resources::describe::run(a, site),
        Command::Vm { what } => {
            commands::resources::verbs::run(cli::resources::KindArg::Vm, what, site)
        }
        Command::Ct { what } => {
            commands::resources::verbs::run(cli::resources::KindArg::Ct, what, site)
        }
        Command::Tasks(a) => commands::resources::tasks::run(a, site),
        Command::Completion(a) => commands::resources::completion(a),
        Command::Check(a) => commands::resources::check::run(a, site),
        Command::Serve(a) => commands::serve::run(a, site),
        Command::Snapshot { what } => commands::resources::snapshot::run(what, site),
        Command::Backup(a) => commands::resources::backup::backup(a, site),
        Command::Restore(a) => commands::resources::backup::restore(a, site),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let code = f.exit_code();
            if let Some(verb) = json_verb(&cli.command).filter(|_| !render::json::printed()) {
                render::json::print(&FailureOutput {
                    verb,
                    success: false,
                    error: f
                        .report()
                        .map_or_else(|| "failed".to_string(), ToString::to_string),
                });
            }
            if let Some(report) = f.report() {
                render::err(&format!("{report:?}\n"));
            }
            ExitCode::from(code)
        }
    }
}

/// What a command that was asked for JSON prints when it failed before
/// printing its own document: stdout then still holds one JSON document.
#[derive(serde::Serialize)]
struct FailureOutput {
    verb: &'static str,
    success: bool,
    error: String,
}

/// The command's name when it was asked for `--json-output`.
fn json_verb(c: &Command) -> Option<&'static str> {
    let (verb, json) = match c {
        Command::Create(a) => ("create", a.json_output),
        Command::Destroy(a) => ("destroy", a.json_output),
        Command::Test(a) => ("test", a.json_output),
        Command::Status(a) => ("status", a.json_output),
        Command::Preflight(a) => ("preflight", a.json_output),
        Command::Images {
            what: cli::ImagesCmd::Download(a),
        } => ("images download", a.json_output),
        Command::Images {
            what: cli::ImagesCmd::Ensure(a),
        } => ("images ensure", a.json_output),
        Command::Validate(a) => ("validate", a.json_output),
        Command::List {
            what: ListWhat::Manifests { json_output },
        } => ("list manifests", *json_output),
        Command::Config {
            what: cli::config::ConfigCmd::Show { json_output },
        } => ("config show", *json_output),
        Command::Secrets {
            what: cli::secrets::SecretsCmd::Check { json_output, .. },
        } => ("secrets check", *json_output),
        Command::State {
            what: cli::StateCmd::Rebuild(a),
        } => ("state rebuild", a.json_output),
        Command::Host { .. } => ("", false), // prints its own document, failed or not
        Command::Serve(a) => ("serve", a.json_output),
        Command::Config {
            what: cli::config::ConfigCmd::Apply(a),
        } => ("config apply", a.json_output),
        Command::Config { .. }
        | Command::Scenario { .. }
        | Command::Secrets { .. }
        | Command::Graph(_)
        | Command::Sim { .. }
        | Command::Get(_)
        | Command::Describe(_)
        | Command::Vm { .. }
        | Command::Ct { .. }
        | Command::Tasks(_)
        | Command::Completion(_)
        | Command::Check(_)
        | Command::Snapshot { .. }
        | Command::Backup(_)
        | Command::Restore(_) => ("", false),
    };
    json.then_some(verb)
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
