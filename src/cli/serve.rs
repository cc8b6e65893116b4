//! `driver serve` arguments.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = controller::DEFAULT_PORT)]
    pub port: u16,
    /// TLS certificate (PEM, leaf first); without it a self-signed one is made at start.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Bearer token for the git repos (prefer the environment variable: argv is visible to
    /// every user of the machine).
    #[arg(
        long,
        value_name = "T",
        env = "DRIVER_REPO_TOKEN",
        hide_env_values = true
    )]
    pub repo_token: Option<String>,
    /// Serve the git repo at PATH as /NAME.git (repeatable).
    #[arg(long = "repo", value_name = "NAME=PATH")]
    pub repos: Vec<String>,
    /// Serve spec SPEC to the node called NAME (repeatable); any other identity is the name
    /// of a spec.
    #[arg(long = "node", value_name = "NAME=SPEC")]
    pub nodes: Vec<String>,
    /// A `pve` node in pull mode called NAME with spec SPEC (repeatable): served its spec,
    /// and at /config/NAME (authenticated as its spec is) the site-config its own driver
    /// reads and the tokens of the nodes given below it with --below.
    #[arg(long = "pve-node", value_name = "NAME=SPEC")]
    pub pve_nodes: Vec<String>,
    /// Node NODE (a --node or --pve-node) is inside --pve-node PVE, at any depth
    /// (repeatable): /config/PVE carries the token NODE's posture wants, and no other node's.
    #[arg(long = "below", value_name = "PVE=NODE")]
    pub below: Vec<String>,
    /// Seconds a stop waits for requests in flight.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub drain: u64,
    /// Print JSON lines instead of text: one when listening, one per reload, one at stop.
    #[arg(long)]
    pub json_output: bool,
}
