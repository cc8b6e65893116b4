//! `driver secrets` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Say what the secrets file holds, without printing any value: whether it is
    /// encrypted, to whom, whether a key here opens it (MAC verified), its keys,
    /// and which keys the site-config needs but lacks.
    Check {
        /// A secrets file (default: the site-config's secrets.yaml).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json_output: bool,
    },
    /// Encrypt a plain YAML file with SOPS (age), as `sops -e` would: the
    /// recipients and value selection come from the nearest .sops.yaml creation
    /// rule for FILE, unless --age is given. Prints to stdout unless -o / -i.
    Encrypt(CryptArgs),
    /// Decrypt a SOPS (age) file, checking its MAC, as `sops -d` would. Age keys
    /// come from $SOPS_AGE_KEY, $SOPS_AGE_KEY_FILE and ~/.config/sops/age/keys.txt.
    /// Prints the plaintext to stdout unless -o / -i.
    Decrypt(CryptArgs),
}

#[derive(Debug, Args)]
pub struct CryptArgs {
    /// The file to read.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the result to OUT (mode 0600) instead of stdout.
    #[arg(short, long, value_name = "OUT", conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Replace FILE with the result.
    #[arg(short, long)]
    pub in_place: bool,
    /// Encrypt to these age recipients (age1...) instead of the .sops.yaml rule (encrypt only).
    #[arg(long = "age", value_name = "RECIPIENT", value_delimiter = ',')]
    pub age: Vec<String>,
}
