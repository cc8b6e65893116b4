//! Nested virtualization on a real host, read over SSH: the `nested`
//! parameter of the `kvm_intel` / `kvm_amd` module (`Y` or `1` = on), and,
//! with neither module loaded, whether the CPU offers `vmx`/`svm` at all.
//! Each outcome, SSH failing included, is a check naming its fix. A driver
//! running on the host itself (a nested PVE's own driver) reads the same
//! files without SSH ([`nested_check_here`]).

use std::path::Path;

use super::Check;
use crate::ssh::{self, shell_quote, SshError, SshTarget};

const NAME: &str = "nested";

/// What the host said.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    /// A loaded module and its `nested` value.
    Module(String, String),
    /// No kvm module; the CPU's virtualization flag, if any.
    NoModule(Option<String>),
}

/// The shell command that prints `kvm_intel Y` / `kvm_amd 1` for each
/// loaded module, then `cpu vmx|svm|-`. `root` is `/` on a host; tests
/// point it at a folder laid out like one.
fn probe(root: &Path) -> String {
    let r = shell_quote(root.to_string_lossy().trim_end_matches('/'));
    format!(
        "for m in kvm_intel kvm_amd; do f={r}/sys/module/$m/parameters/nested; \
         if [ -r \"$f\" ]; then printf '%s %s\\n' \"$m\" \"$(cat \"$f\")\"; fi; done; \
         printf 'cpu %s\\n' \"$(grep -m1 -o -w -e vmx -e svm {r}/proc/cpuinfo || echo -)\""
    )
}

fn parse(out: &str) -> Found {
    let mut cpu = None;
    for line in out.lines() {
        let Some((k, v)) = line.trim().split_once(' ') else {
            continue;
        };
        match k {
            "kvm_intel" | "kvm_amd" => return Found::Module(k.into(), v.trim().into()),
            "cpu" if v == "vmx" || v == "svm" => cpu = Some(v.to_string()),
            _ => {}
        }
    }
    Found::NoModule(cpu)
}

fn judge(found: Found) -> Check {
    match found {
        Found::Module(m, v) if v == "Y" || v == "1" => Check::pass(
            NAME,
            format!("nested virtualization is on ({m} nested={v})"),
        ),
        Found::Module(m, v) => Check::fail(
            NAME,
            format!(
                "nested virtualization is off ({m} nested={v}): nested PVE nodes cannot run VMs"
            ),
            format!(
                "on the host: `echo 'options {m} nested=1' > /etc/modprobe.d/kvm-nested.conf`, \
                 then with no VM running `modprobe -r {m} && modprobe {m}` (or reboot)"
            ),
        ),
        Found::NoModule(Some(flag)) => {
            let m = if flag == "vmx" {
                "kvm_intel"
            } else {
                "kvm_amd"
            };
            Check::fail(
                NAME,
                format!(
                    "KVM is not loaded (no kvm_intel or kvm_amd module); the CPU has {flag}, so \
                     it could run nested VMs"
                ),
                format!(
                    "on the host: `echo 'options {m} nested=1' > /etc/modprobe.d/kvm-nested.conf` \
                     then `modprobe {m}` (or reboot)"
                ),
            )
        }
        Found::NoModule(None) => Check::fail(
            NAME,
            "KVM is not loaded and the CPU offers neither vmx nor svm: hardware virtualization \
             is off or hidden",
            "enable VT-x / AMD-V in the host's firmware; if the host is itself a VM, enable \
             nested virtualization on its hypervisor",
        ),
    }
}

/// How to fix an SSH failure to the host described in `file`.
fn ssh_fix(e: &SshError, target: &SshTarget, file: &str) -> String {
    match e {
        SshError::Connect { .. } | SshError::Timeout { .. } | SshError::Handshake { .. } => {
            format!(
                "check `ip:` (and `ssh_port:`) in {file} and that sshd runs on the host \
                 (`systemctl status ssh`)"
            )
        }
        SshError::Auth { .. } | SshError::KeyFile { .. } => format!(
            "let driver in as {user}: put the public key of `defaults.ssh_key` (or a key in \
             ssh-agent) into ~{user}/.ssh/authorized_keys on the host, or set `ssh_user:` in {file}",
            user = target.user
        ),
        SshError::HostKeyUnknown { .. } => format!(
            "after checking the fingerprint against `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` \
             on the host, record it: `ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`",
            port = target.port,
            host = target.host
        ),
        _ => format!(
            "fix SSH to the host ({}), or check on the host that \
             `cat /sys/module/kvm_intel/parameters/nested` (or kvm_amd) says Y",
            target.label()
        ),
    }
}

/// Reads nested virtualization on the host `target` reaches; `file` is the
/// node file (for fixes), `root` is `/` except in tests.
pub async fn nested_check(target: &SshTarget, file: &str, root: &Path) -> Check {
    let run = async {
        let conn = ssh::connect(target).await?;
        conn.exec(&probe(root), ssh::DEFAULT_COMMAND_TIMEOUT)
            .await?
            .check()
    };
    match run.await {
        Ok(out) => judge(parse(&out.stdout)),
        Err(e) => Check::fail(
            NAME,
            format!("cannot check over SSH ({}): {e}", target.label()),
            ssh_fix(&e, target, file),
        ),
    }
}

/// The same reading on this machine, for a driver that runs on the host it
/// checks.
pub async fn nested_check_here(root: &Path) -> Check {
    let out = tokio::process::Command::new("sh")
        .args(["-c", &probe(root)])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => judge(parse(&String::from_utf8_lossy(&o.stdout))),
        Ok(o) => Check::fail(
            NAME,
            format!(
                "reading /sys/module/kvm_*/parameters/nested here failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            "check on the host that `cat /sys/module/kvm_intel/parameters/nested` (or kvm_amd) says Y",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot run sh here: {e}"),
            "check on the host that `cat /sys/module/kvm_intel/parameters/nested` (or kvm_amd) says Y",
        ),
    }
}

/// Whether `ip` is one of this machine's own (non-loopback) addresses: a
/// socket binds only to a local address. Loopback is left out: a PVE host
/// is never reached on it (tests reach their sshd there).
pub fn is_this_machine(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(a) if !a.is_loopback() && !a.is_unspecified() => {
            std::net::UdpSocket::bind((a, 0)).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!(
            parse("kvm_intel N\ncpu vmx\n"),
            Found::Module("kvm_intel".into(), "N".into())
        );
        assert_eq!(parse("cpu svm\n"), Found::NoModule(Some("svm".into())));
        assert_eq!(parse("cpu -\n"), Found::NoModule(None));
        assert!(judge(parse("kvm_amd 1\ncpu svm\n")).ok);
    }
}
