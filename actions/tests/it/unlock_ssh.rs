//! Clearing a failed rollback's lock on a real host: over SSH (a real OpenSSH sshd on
//! 127.0.0.1 plays the PVE host), the host's own `qm unlock VMID`. The `qm` on that sshd's
//! PATH is a stand-in that records its arguments and hands the command to the simulator's
//! host shell, so that the simulator (whose API the lock is read through) really loses it.

use std::time::Duration;

use crate::common::{require, Sshd, SshdOptions};
use actions::pve::{tls, GuestKind, PveClient, PveTarget, TlsTrust};
use actions::resources::locks::{self, HostShell, UnlockError};
use actions::resources::{self as res, snapshots};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollbacks_lock_is_cleared_with_qm_unlock_over_ssh() {
    require("curl", "apt-get install curl");
    let h = sim::PveSim::start(sim::SimConfig {
        guest_ssh_port: 0,
        ..sim::SimConfig::default()
    })
    .await
    .unwrap();
    let t = h.token();
    let client = PveClient::new(&PveTarget {
        endpoint: h.url(),
        node: h.node().into(),
        token_id: t.full_id(),
        token_secret: t.secret.clone(),
        trust: TlsTrust::Fingerprint(tls::parse_fingerprint(h.fingerprint()).unwrap()),
    })
    .unwrap();
    let rows = res::guests(&client).await.unwrap();
    let template = rows.iter().find(|g| g.name == "debian-12").unwrap().vmid;
    client
        .clone_guest(GuestKind::Qemu, template, 4100, "web", None, false, T)
        .await
        .unwrap();
    let g = res::guests(&client)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.vmid == 4100)
        .unwrap();
    snapshots::create(&client, &g, "s1", None, T).await.unwrap();
    let mut f = sim::Fault::new(sim::FaultKind::TaskFailure { message: None });
    f.op = Some(sim::Op::Rollback);
    f.vmid = Some(4100);
    f.count = Some(1);
    h.inject(f);
    snapshots::rollback(&client, &g, "s1", false, T)
        .await
        .expect_err("the injected failure");
    let lock = locks::lock_of(&client, &g).await.unwrap().expect("locked");
    assert_eq!(lock.lock, "rollback");
    assert!(lock.task.is_none(), "{lock:?}");

    // The host: `qm` records its call and runs it on the simulator's host shell.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = root.path().join("qm-calls.log");
    let qm = bin.join("qm");
    std::fs::write(
        &qm,
        format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\n\
             out=$(curl -sk -H \"Authorization: PVEAPIToken={id}={secret}\" \
             -H 'Content-Type: application/json' --data \"{{\\\"command\\\": \\\"qm $*\\\"}}\" \
             {url}/sim/host/exec)\n\
             case \"$out\" in *'\"exit_code\":0'*) exit 0 ;; *) echo \"$out\" >&2; exit 2 ;; esac\n",
            calls = calls.display(),
            id = t.full_id(),
            secret = t.secret,
            url = h.url(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        extra: vec![format!(
            "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin",
            bin.display()
        )],
        ..SshdOptions::default()
    });
    let shell = HostShell::Ssh(Box::new(sshd.target()));

    let cleared = locks::unlock(&client, &shell, &g, T).await.unwrap();
    assert_eq!(cleared, "rollback");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "unlock 4100\n");
    assert!(locks::lock_of(&client, &g).await.unwrap().is_none());
    // Nothing to clear now: refused before anything runs on the host.
    let again = locks::unlock(&client, &shell, &g, T).await.unwrap_err();
    assert!(matches!(again, UnlockError::NotLocked { .. }), "{again}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "unlock 4100\n");
    // The rollback now goes through.
    snapshots::rollback(&client, &g, "s1", false, T)
        .await
        .unwrap();
    h.shutdown().await;
}
