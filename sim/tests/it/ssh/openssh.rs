//! OpenSSH's own `ssh` and `sftp` against a guest: exec, PTY, SFTP and strict host key
//! checking against the guest's key.

use crate::common::start;
use russh::keys::PrivateKey;
use sim::GuestInfo;

use super::{cfg, key, make_vm, public};

/// `ssh`/`sftp` from OpenSSH with strict host key checking against the guest's key.
struct OpenSsh {
    dir: tempfile::TempDir,
    port: u16,
    ip: String,
}

impl OpenSsh {
    fn new(g: &GuestInfo, k: &PrivateKey, known_hosts_line: &str) -> OpenSsh {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id_ed25519");
        std::fs::write(
            &id,
            k.to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("{known_hosts_line}\n"),
        )
        .unwrap();
        OpenSsh {
            dir,
            port: g.ssh_port.unwrap(),
            ip: g.ip.to_string(),
        }
    }

    fn opts(&self) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "-F",
            "/dev/null",
            "-o",
            &format!("IdentityFile={d}/id_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    async fn run(&self, prog: &str, args: Vec<String>) -> std::process::Output {
        let home = self.dir.path().to_path_buf();
        let prog = prog.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(prog)
                .args(args)
                .env("HOME", home)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn ssh(&self, user: &str, extra: &[&str], cmd: &str) -> std::process::Output {
        let mut args = self.opts();
        args.extend(["-p".to_string(), self.port.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("{user}@{}", self.ip));
        args.push(cmd.to_string());
        self.run("ssh", args).await
    }

    async fn sftp_batch(&self, user: &str, batch: &str) -> std::process::Output {
        let file = self.dir.path().join("batch");
        std::fs::write(&file, batch).unwrap();
        let mut args = self.opts();
        args.extend(["-P".to_string(), self.port.to_string(), "-b".to_string()]);
        args.push(file.display().to_string());
        args.push(format!("{user}@{}", self.ip));
        self.run("sftp", args).await
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_exec_pty_sftp_and_strict_host_keys() {
    let (h, c) = start(cfg()).await;
    let k = key(10);
    let g = make_vm(&c, &h, 110, "debian", &[&k]).await;
    let ssh = OpenSsh::new(&g, &k, &g.known_hosts_line().unwrap());

    let out = ssh
        .ssh(
            "debian",
            &[],
            "echo $PVESIM_GUEST_IP; echo oops >&2; exit 4",
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(text(&out.stdout), format!("{}\n", g.ip));
    assert!(text(&out.stderr).contains("oops"), "{out:?}");

    // `ssh -tt`: a PTY session; stderr arrives merged into stdout.
    let out = ssh.ssh("debian", &["-tt"], "echo one; echo two >&2").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let merged = text(&out.stdout);
    assert!(merged.contains("one") && merged.contains("two"), "{out:?}");

    // Upload with sftp, make it executable, run it.
    let local = ssh.dir.path().join("tool.sh");
    std::fs::write(&local, "#!/bin/sh\necho \"tool says $1\"\n").unwrap();
    let out = ssh
        .sftp_batch(
            "debian",
            &format!(
                "mkdir tools\nput {} tools/tool.sh\nchmod 755 tools/tool.sh\nls -l tools\n",
                local.display()
            ),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("-rwxr-xr-x"), "{out:?}");
    let out = ssh.ssh("debian", &[], "./tools/tool.sh hi").await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "tool says hi\n".to_string())
    );

    // A changed host key is refused loudly by a strict client.
    let other = key(11);
    let wrong = format!("[{}]:{} {}", g.ip, g.ssh_port.unwrap(), public(&other));
    let strict = OpenSsh::new(&g, &k, &wrong);
    let out = strict.ssh("debian", &[], "true").await;
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        text(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{out:?}"
    );
    h.shutdown().await;
}
