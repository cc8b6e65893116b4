//! The SSH client against a real OpenSSH sshd on 127.0.0.1, one module per theme:
//! running commands, PTYs, stdin and uploads (`commands`), getting connected: a
//! bastion, host keys, auth and waiting for the server (`connect`).

mod commands;
mod connect;

use std::time::Duration;

const T: Duration = Duration::from_secs(20);
