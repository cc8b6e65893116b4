//! The cloud-init user-data of a pull-mode guest: its user and SSH keys (PVE's own user-data,
//! which `cicustom user=` replaces), the controller's address, fingerprint, token and the
//! node's identity in an env file only root reads, and a boot script that downloads the
//! driver binary from the run's controller (checked against its SHA-256), then runs
//! `driver config fetch` and `driver config apply`. Its progress is `pull.status` (`running`,
//! `done`, or `failed: WHAT`) and its output `pull.log`, beside the markers in `config/`.
//! A `pve` node's script goes on with its phase 2, `driver config pve` (how it becomes a PVE
//! host in `pve-host.json`, its markers in `pve-config/`).

use super::PullNode;

/// The guest's folder for the driver, its env, script, log and markers, on a real guest.
pub const DIR: &str = "/var/lib/driver";
/// The same folder in a simulated guest, relative to its folder (its `HOME`, where SSH
/// commands start): the simulator's cloud-init writes `write_files` paths inside the guest.
pub const SIM_DIR: &str = "var/lib/driver";

/// YAML double-quoted scalar (JSON's escaping is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// POSIX shell single-quoted word.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `text` as a YAML block literal at `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

/// The env file: `KEY='value'` lines that the script sources.
pub(crate) fn env_file(n: &PullNode<'_>) -> String {
    let mut env = format!(
        "HOMESTAK_SPEC_SERVER={}\nHOMESTAK_SPEC_FINGERPRINT={}\nHOMESTAK_IDENTITY={}\n",
        sh(n.server),
        sh(n.fingerprint),
        sh(n.identity)
    );
    if let Some(t) = n.token.filter(|t| !t.is_empty()) {
        env.push_str(&format!("HOMESTAK_AUTH_TOKEN={}\n", sh(t)));
    }
    env
}

/// The folder a `pve` node's phase 2 keeps its markers in, in the pull folder.
pub const PVE_CONFIG_DIR: &str = "pve-config";

/// The boot script. On a simulated guest the folder is under `$HOME` and the apply goes
/// inside the guest's folder (`--root "$HOME"`, reported as simulated). A `pve` node's
/// apply leaves its spec's `config.pve` to its phase 2, which sets it up as a PVE host in
/// the folder a push-mode parent would use (the guest's own on a simulated host).
fn script(n: &PullNode<'_>) -> String {
    let (dir, root) = match n.simulated {
        true => (format!("\"$HOME\"/{SIM_DIR}"), " --root \"$HOME\""),
        false => (DIR.to_string(), ""),
    };
    let (pve_flag, phase2) = match n.pve_host {
        None => ("", String::new()),
        Some(_) => {
            let home = match n.simulated {
                true => "\"$HOME\"".to_string(),
                false => DIR.to_string(),
            };
            (
                " --pve",
                format!(
                    "./driver config pve --state-dir {PVE_CONFIG_DIR} --spec config/spec.yaml \
                     --host-file pve-host.json --dir {home} || {{ status \"failed: pve-config \
                     (its setup as a PVE host)\"; exit 1; }}\n"
                ),
            )
        }
    };
    format!(
        r#"#!/bin/sh
# Written by driver: this node fetches and applies its own spec (execution.mode: pull).
cd {dir} || exit 1
exec >>pull.log 2>&1
status() {{ echo "$1" > pull.status.tmp && mv pull.status.tmp pull.status; echo "pull: $1"; }}
status running
set -a; . ./pull.env; set +a
want={sha}
sum() {{ sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }}
if [ ! -x driver ] || [ "$(sum driver)" != "$want" ]; then
  url="$HOMESTAK_SPEC_SERVER/bin/driver"
  # The binary's integrity is its SHA-256 above (this file came from PVE, not the network).
  if command -v curl >/dev/null 2>&1; then
    curl -fsSk --retry 20 --retry-delay 2 --retry-connrefused -o driver.part "$url"
  else
    wget -q --no-check-certificate -t 20 --retry-connrefused -O driver.part "$url"
  fi || {{ status "failed: download of the driver binary from $url"; exit 1; }}
  [ "$(sum driver.part)" = "$want" ] || {{ status "failed: the driver binary from $url is not the one sent (SHA-256)"; exit 1; }}
  chmod 755 driver.part && mv driver.part driver
fi
./driver config fetch --state-dir config || {{ status "failed: config fetch"; exit 1; }}
./driver config apply --state-dir config{pve_flag}{root} || {{ status "failed: config apply"; exit 1; }}
{phase2}status done
"#,
        sha = n.binary_sha256,
    )
}

/// The user-data (`#cloud-config`) of pull-mode node `n`.
pub fn render(n: &PullNode<'_>) -> String {
    let mut y = String::from("#cloud-config\n");
    y.push_str(&format!(
        "# Written by driver for '{}' (execution.mode: pull).\n",
        n.identity
    ));
    y.push_str(&format!(
        "hostname: {}\nmanage_etc_hosts: true\n",
        q(n.identity)
    ));
    y.push_str(&format!("user: {}\n", q(n.user)));
    if !n.ssh_keys.is_empty() {
        y.push_str("ssh_authorized_keys:\n");
        for k in n.ssh_keys {
            y.push_str(&format!("  - {}\n", q(k)));
        }
    }
    y.push_str("chpasswd:\n  expire: false\nusers:\n  - default\n");
    y.push_str("write_files:\n");
    y.push_str(&format!(
        "  - path: {DIR}/pull.env\n    permissions: '0600'\n    content: |\n{}",
        block(&env_file(n), 6)
    ));
    y.push_str(&format!(
        "  - path: {DIR}/pull.sh\n    permissions: '0755'\n    content: |\n{}",
        block(&script(n), 6)
    ));
    if let Some(host) = n.pve_host {
        y.push_str(&format!(
            "  - path: {DIR}/pve-host.json\n    permissions: '0644'\n    content: |\n{}",
            block(host, 6)
        ));
    }
    y.push_str("runcmd:\n");
    match n.simulated {
        true => y.push_str(&format!("  - sh \"$HOME/{SIM_DIR}/pull.sh\"\n")),
        false => y.push_str(&format!("  - [sh, {DIR}/pull.sh]\n")),
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(simulated: bool) -> PullNode<'static> {
        PullNode {
            identity: "edge",
            server: "https://10.0.0.1:44443",
            fingerprint: "AA:BB",
            token: Some("to'ken"),
            binary_sha256: "abc",
            user: "homestak",
            ssh_keys: &[],
            simulated,
            pve_host: None,
        }
    }

    #[test]
    fn the_token_is_in_the_root_only_env_file_quoted() {
        let y = render(&node(false));
        assert!(y.starts_with("#cloud-config\n"));
        assert!(y.contains("HOMESTAK_AUTH_TOKEN='to'\\''ken'"));
        assert!(y.contains("path: /var/lib/driver/pull.env\n    permissions: '0600'"));
        assert!(y.contains("- [sh, /var/lib/driver/pull.sh]"));
        assert!(!y.contains("--root"));
    }

    #[test]
    fn a_simulated_guest_applies_inside_its_folder() {
        let y = render(&node(true));
        assert!(y.contains("cd \"$HOME\"/var/lib/driver"));
        assert!(y.contains("config apply --state-dir config --root \"$HOME\""));
        assert!(!y.contains("config pve") && !y.contains("pve-host.json"));
    }

    #[test]
    fn a_pve_node_goes_on_with_its_phase_2() {
        let host = r#"{"image": "pve-9", "host": "installed"}"#;
        let y = render(&PullNode {
            pve_host: Some(host),
            ..node(false)
        });
        assert!(
            y.contains("config apply --state-dir config --pve ||"),
            "{y}"
        );
        assert!(
            y.contains(
                "./driver config pve --state-dir pve-config --spec config/spec.yaml \
                 --host-file pve-host.json --dir /var/lib/driver ||"
            ),
            "{y}"
        );
        assert!(y.contains(&format!(
            "  - path: /var/lib/driver/pve-host.json\n    permissions: '0644'\n    \
             content: |\n      {host}\n"
        )));
        let sim = render(&PullNode {
            pve_host: Some(host),
            ..node(true)
        });
        assert!(
            sim.contains("--host-file pve-host.json --dir \"$HOME\" ||"),
            "{sim}"
        );
        assert!(
            sim.contains("--state-dir config --pve --root \"$HOME\""),
            "{sim}"
        );
    }
}
