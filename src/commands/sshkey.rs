//! The SSH key pair driver makes for itself in the state folder: made once, by one run
//! even when several start at once, and never half there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Failure;

fn run_err(msg: String, help: Option<String>) -> Failure {
    Failure::Run(Some(match help {
        Some(h) => miette::miette!(help = h, "{msg}"),
        None => miette::miette!("{msg}"),
    }))
}

/// Makes the ed25519 key pair `key` (+ `key.pub`) unless it exists. Concurrent runs take
/// turns (a lock file beside it); the pair is made under temp names and renamed into place,
/// `.pub` first, so whoever sees `key` sees its `.pub` too. ssh-keygen writes to a fresh
/// path, so it never asks to overwrite, and it gets no stdin and no stdout (under
/// `--json-output` only the JSON document may reach stdout).
pub fn ensure(key: &Path) -> Result<(), Failure> {
    if key.exists() {
        return Ok(());
    }
    let dir = key.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| run_err(format!("cannot create {}: {e}", dir.display()), None))?;
    let lock_path = key.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| run_err(format!("cannot create {}: {e}", lock_path.display()), None))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                return Err(run_err(
                    format!("cannot lock {}: {e}", lock_path.display()),
                    None,
                ))
            }
        }
    }
    // Another run may have made it while this one waited.
    if key.exists() {
        return Ok(());
    }
    let tmp: PathBuf = dir.join(format!(".keygen-{}", std::process::id()));
    let tmp_pub = tmp.with_extension("pub");
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&tmp_pub);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "driver", "-f"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let out = match made {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(run_err(
                format!("cannot make an SSH key at {}: ssh-keygen not found", key.display()),
                Some("install ssh-keygen (apt-get install openssh-client), or set `ssh_key:` in site.yaml".into()),
            ))
        }
        Err(e) => {
            return Err(run_err(
                format!("cannot make an SSH key at {}: cannot run ssh-keygen: {e}", key.display()),
                None,
            ))
        }
    };
    let placed = out.status.success().then(|| {
        std::fs::rename(&tmp_pub, key.with_extension("pub"))
            .and_then(|()| std::fs::rename(&tmp, key))
    });
    match placed {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(run_err(
            format!("cannot put the SSH key in place at {}: {e}", key.display()),
            None,
        )),
        None => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&tmp_pub);
            Err(run_err(
                format!(
                    "cannot make an SSH key at {}: ssh-keygen failed ({}): {}",
                    key.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                None,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_runs_make_one_key_pair() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ssh/id_ed25519");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (key, barrier) = (key.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ensure(&key).is_ok()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        // The pair belongs together: ssh-keygen derives the same public key from the private one.
        let derived = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&key)
            .output()
            .unwrap();
        let derived = String::from_utf8_lossy(&derived.stdout);
        assert_eq!(
            derived.split_whitespace().nth(1),
            public.split_whitespace().nth(1)
        );
    }
}
