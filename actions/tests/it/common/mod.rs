//! Test harness: a real OpenSSH `sshd` on 127.0.0.1, run as the current
//! user with its own host key, client key and authorized_keys.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actions::ssh::{HostKey, HostKeyCheck, SshAuth, SshTarget};

pub const SSHD: &str = "/usr/sbin/sshd";

/// Fails (never skips) when a tool is missing, naming the install command.
pub fn require(path: &str, install: &str) {
    let found = if path.contains('/') {
        Path::new(path).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {path}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        found,
        "{path} not found: {install} (or run scripts/install-test-deps.sh as root)"
    );
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ed25519 key pair made by ssh-keygen.
pub fn keygen(path: &Path) -> String {
    require("ssh-keygen", "apt-get install openssh-client");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success(), "ssh-keygen failed");
    std::fs::read_to_string(path.with_extension("pub")).expect("public key")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_key: HostKey,
    pub client_key: PathBuf,
    pub user: String,
    child: Child,
}

#[derive(Clone, Default)]
pub struct SshdOptions {
    /// Reuse this host key (private key path) instead of a new one.
    pub host_key: Option<PathBuf>,
    /// Authorize this public key (instead of a new client key).
    pub authorized_key: Option<String>,
    /// Extra sshd_config lines.
    pub extra: Vec<String>,
    /// Listen on this port (else a free one).
    pub port: Option<u16>,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(SshdOptions::default())
    }

    pub fn start_with(opts: SshdOptions) -> Sshd {
        require(SSHD, "apt-get install openssh-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let host_key_path = match &opts.host_key {
            Some(p) => p.clone(),
            None => {
                let p = d.join("host_ed25519");
                keygen(&p);
                p
            }
        };
        let host_pub = std::fs::read_to_string(host_key_path.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{}.pub", host_key_path.display())))
            .expect("host public key");
        let host_key = HostKey::parse(&host_pub).expect("host key parses");
        let client_key = d.join("id_ed25519");
        let client_pub = keygen(&client_key);
        let authorized = opts.authorized_key.clone().unwrap_or(client_pub);
        std::fs::write(d.join("authorized_keys"), authorized).expect("authorized_keys");
        // Privilege separation needs this directory when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");

        for attempt in 0..5 {
            let port = opts.port.unwrap_or_else(free_port);
            // sshd takes the first value it reads: the extra lines go first.
            let mut cfg: String = opts.extra.iter().map(|l| format!("{l}\n")).collect();
            cfg += &format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {hk}\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 PermitRootLogin yes\n\
                 Subsystem sftp internal-sftp\n\
                 LogLevel VERBOSE\n",
                hk = host_key_path.display(),
                d = d.display(),
            );
            let cfg_path = d.join("sshd_config");
            std::fs::write(&cfg_path, cfg).expect("sshd_config");
            let log = std::fs::File::create(d.join("sshd.log")).expect("log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        dir,
                        port,
                        host_key,
                        client_key,
                        user: current_user(),
                        child,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // e.g. the port was taken meanwhile: retry
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if opts.port.is_some() || attempt == 4 {
                panic!(
                    "sshd did not start: {}",
                    std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                );
            }
        }
        unreachable!()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A target for this sshd, key auth, the host key pinned.
    pub fn target(&self) -> SshTarget {
        SshTarget::new(
            "127.0.0.1",
            self.user.clone(),
            SshAuth::key_file(&self.client_key),
        )
        .port(self.port)
        .host_keys(HostKeyCheck::pinned(self.host_key.clone()))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repo root (the workspace), for `.venv`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
