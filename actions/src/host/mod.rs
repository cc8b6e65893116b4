//! Hosts before PVE: the steps that turn a Debian 13 machine into a PVE node
//! driver can use (the original's `pve-install` playbook and its `pve-setup`,
//! `user-setup` and `bootstrap-install` scenarios). Each step reads before it
//! writes, acts only on what differs, and reports what it changed, so a second
//! run changes nothing; with `dry_run` it reports what it would change.
//!
//! The steps run shell commands through a [`Shell`]: on this machine
//! (`--local`) or over SSH ([`crate::ssh::Connection`]). Every file they read
//! or write is under [`Host::root`] (`/` on a real host; a chroot or a test's
//! folder otherwise).

pub mod bootstrap;
pub mod install;
pub mod pve;
pub mod setup;
pub mod user;

use std::time::Duration;

use crate::ssh::{shell_quote, Connection, SshError};

pub const SHORT: Duration = Duration::from_secs(60);
/// apt: a dist-upgrade and PVE's packages (the seed's "Extended" tier).
pub const APT: Duration = Duration::from_secs(1200);

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("on {target}: `{command}` failed ({status}): {stderr}")]
    Command {
        target: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("on {target}: {message}")]
    Refused { target: String, message: String },
    #[error("cannot run `{command}` here: {source}")]
    Local {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the commands run.
#[derive(Clone)]
pub enum Shell {
    /// This machine, `sh -c`.
    Local,
    /// Over SSH.
    Ssh(Connection),
}

/// A finished command.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// The machine a step works on.
pub struct Host {
    pub shell: Shell,
    /// Every path the steps touch is under this (`/` on a real host).
    pub root: String,
    /// What messages call it.
    pub label: String,
}

/// What a step did (or, in a dry run, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// One line per change, e.g. `wrote /etc/apt/sources.list.d/pve-install-repo.sources`.
    pub changed: Vec<String>,
    /// What was already as wanted.
    pub unchanged: Vec<String>,
}

impl Report {
    pub fn unchanged(&mut self, what: impl Into<String>) {
        self.unchanged.push(what.into());
    }
}

impl Host {
    /// `path` (absolute, as on the host) under [`Host::root`].
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.root.trim_end_matches('/'))
    }

    pub async fn run(&self, cmd: &str, timeout: Duration) -> Result<Out, HostError> {
        tracing::debug!("{}: {cmd}", self.label);
        match &self.shell {
            Shell::Ssh(c) => {
                let o = c.exec(cmd, timeout).await?;
                Ok(Out {
                    code: o.status.code.unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                })
            }
            Shell::Local => {
                let child = tokio::process::Command::new("sh")
                    .args(["-c", cmd])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let o = tokio::time::timeout(timeout, child)
                    .await
                    .map_err(|_| HostError::Refused {
                        target: self.label.clone(),
                        message: format!("`{cmd}` did not finish in {} s", timeout.as_secs()),
                    })?
                    .map_err(|e| HostError::Local {
                        command: cmd.to_string(),
                        source: e,
                    })?;
                Ok(Out {
                    code: o.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                })
            }
        }
    }

    /// `cmd`, which must succeed; its stdout.
    pub async fn ok(&self, cmd: &str, timeout: Duration) -> Result<String, HostError> {
        let o = self.run(cmd, timeout).await?;
        if o.ok() {
            return Ok(o.stdout);
        }
        Err(HostError::Command {
            target: self.label.clone(),
            command: cmd.chars().take(160).collect(),
            status: format!("exit {}", o.code),
            stderr: o
                .stderr
                .trim()
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        })
    }

    /// The file at `path` (under the root), `None` when it is not there.
    pub async fn read(&self, path: &str) -> Result<Option<String>, HostError> {
        let p = shell_quote(&self.path(path));
        let o = self.run(&format!("test -f {p} && cat {p}"), SHORT).await?;
        Ok(o.ok().then_some(o.stdout))
    }

    /// Writes `text` to `path` (under the root) with `mode`, making its folder.
    pub async fn write(&self, path: &str, text: &str, mode: u32) -> Result<(), HostError> {
        let full = self.path(path);
        if let Some((dir, _)) = full.rsplit_once('/') {
            if !dir.is_empty() {
                self.ok(&format!("mkdir -p {}", shell_quote(dir)), SHORT)
                    .await?;
            }
        }
        match &self.shell {
            Shell::Ssh(c) => Ok(c
                .upload_bytes(text.as_bytes().to_vec(), &full, mode, SHORT)
                .await?),
            Shell::Local => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&full, text)
                    .and_then(|()| {
                        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
                    })
                    .map_err(|e| HostError::Local {
                        command: format!("write {full}"),
                        source: e,
                    })
            }
        }
    }

    /// Makes `path` hold `text`: writes it only when it differs.
    pub async fn ensure_file(
        &self,
        path: &str,
        text: &str,
        mode: u32,
        dry_run: bool,
        r: &mut Report,
    ) -> Result<bool, HostError> {
        if self.read(path).await?.as_deref() == Some(text) {
            r.unchanged(path);
            return Ok(false);
        }
        if !dry_run {
            self.write(path, text, mode).await?;
        }
        r.changed.push(format!("wrote {path}"));
        Ok(true)
    }

    /// Is the Debian package installed (`dpkg-query`)?
    pub async fn installed(&self, package: &str) -> Result<bool, HostError> {
        let o = self
            .run(
                &format!(
                    "dpkg-query -W -f='${{Status}}' {} 2>/dev/null",
                    shell_quote(package)
                ),
                SHORT,
            )
            .await?;
        Ok(o.ok() && o.stdout.contains("install ok installed"))
    }

    /// Is PVE there and answering (`pveversion`)?
    pub async fn has_pve(&self) -> Result<Option<String>, HostError> {
        let o = self.run("pveversion 2>/dev/null", SHORT).await?;
        Ok(o.ok().then(|| o.stdout.trim().to_string()))
    }

    /// The address this machine answers on, for `--local` without `--address`:
    /// the IPv4 address of the interface the default route uses (a bridge
    /// already made holds it), else the one non-loopback IPv4 address there is.
    /// `Ok(Err(why))` when that is not one address (the candidates named).
    pub async fn own_address(&self) -> Result<Result<String, String>, HostError> {
        let parse = |cmd: &str, out: String| {
            serde_json::from_str::<serde_json::Value>(out.trim())
                .map_err(|e| self.refuse(format!("`{cmd}` printed no JSON ({e})")))
        };
        let (r, a) = ("ip -j -4 route show default", "ip -j -4 addr show");
        let routes = parse(r, self.ok(r, SHORT).await?)?;
        let addrs = parse(a, self.ok(a, SHORT).await?)?;
        let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
        let mut devs: Vec<String> = list(&routes)
            .iter()
            .filter_map(|r| r["dev"].as_str().map(str::to_string))
            .collect();
        devs.dedup();
        let mut found: Vec<(String, String)> = Vec::new();
        for link in list(&addrs) {
            let dev = link["ifname"].as_str().unwrap_or_default().to_string();
            if dev == "lo" || !(devs.is_empty() || devs.contains(&dev)) {
                continue;
            }
            for info in list(&link["addr_info"]) {
                let local = info["local"].as_str().unwrap_or_default();
                if info["family"] != "inet6" && !local.is_empty() && !local.starts_with("127.") {
                    found.push((local.to_string(), dev.clone()));
                }
            }
        }
        let named = |f: &[(String, String)]| {
            f.iter()
                .map(|(a, d)| format!("{a} on {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(match found.as_slice() {
            [(one, _)] => Ok(one.clone()),
            [] if devs.is_empty() => Err("no default route and no IPv4 address".into()),
            [] => Err(format!(
                "the default route's {} has no IPv4 address",
                devs.join(", ")
            )),
            many if devs.is_empty() => Err(format!(
                "no default route, and several addresses: {}",
                named(many)
            )),
            many => Err(format!(
                "the default route's interfaces hold several addresses: {}",
                named(many)
            )),
        })
    }

    pub fn refuse(&self, message: impl Into<String>) -> HostError {
        HostError::Refused {
            target: self.label.clone(),
            message: message.into(),
        }
    }
}
