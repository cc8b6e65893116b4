//! A real OpenSSH sshd on 127.0.0.1 for the CLI tests (as actions/tests/it's
//! harness): its own host key, a client key, extra sshd_config lines first.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `type base64` of the host key.
    pub host_pub: String,
    pub client_key: PathBuf,
    pub user: String,
    child: Child,
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen not found: apt-get install openssh-client");
    assert!(st.success(), "ssh-keygen failed");
    std::fs::read_to_string(format!("{}.pub", path.display())).unwrap()
}

impl Sshd {
    pub fn start(extra: &[String]) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd not found: apt-get install openssh-server (or scripts/install-test-deps.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_pub = keygen(&d.join("host_ed25519"));
        let client_key = d.join("id_ed25519");
        std::fs::write(d.join("authorized_keys"), keygen(&client_key)).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cfg: String = extra.iter().map(|l| format!("{l}\n")).collect();
            cfg += &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                d = d.display()
            );
            std::fs::write(d.join("sshd_config"), cfg).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .expect("sshd starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let host_pub = host_pub
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Sshd {
                        dir,
                        port,
                        host_pub,
                        client_key,
                        user,
                        child,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    /// A HOME whose ~/.ssh has this sshd's client key and host key (strict checking passes).
    pub fn home(&self) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::copy(&self.client_key, ssh.join("id_ed25519")).unwrap();
        std::fs::write(
            ssh.join("known_hosts"),
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_pub),
        )
        .unwrap();
        home
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
