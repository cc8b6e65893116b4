//! Preflight's nested-virtualization check over real SSH (OpenSSH `sshd` on
//! loopback): the command runs in a shell on the server and reads files
//! under a root laid out like a host's (`sys/module/kvm_*/parameters/nested`,
//! `proc/cpuinfo`), so each outcome is asserted with its message and fix.

use std::path::Path;

use crate::common::{free_port, Sshd};
use actions::preflight::nested::nested_check;

/// A host root with these files (`rel path`, content).
fn host(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

const INTEL: &str = "sys/module/kvm_intel/parameters/nested";
const AMD: &str = "sys/module/kvm_amd/parameters/nested";
const CPUINFO: &str = "proc/cpuinfo";

async fn check(sshd: &Sshd, root: &Path) -> actions::preflight::Check {
    nested_check(&sshd.target(), "nodes/father.yaml", root).await
}

#[tokio::test]
async fn on_off_amd_and_cpu_flags_each_say_so() {
    let sshd = Sshd::start();

    let on = host(&[(INTEL, "Y\n"), (CPUINFO, "flags\t: fpu vmx sse\n")]);
    let c = check(&sshd, on.path()).await;
    assert!(c.ok, "{c:?}");
    assert_eq!(c.detail, "nested virtualization is on (kvm_intel nested=Y)");

    let off = host(&[(INTEL, "N\n"), (CPUINFO, "flags\t: fpu vmx sse\n")]);
    let c = check(&sshd, off.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(
        c.detail
            .starts_with("nested virtualization is off (kvm_intel nested=N)"),
        "{c:?}"
    );
    assert_eq!(
        c.fix.as_deref(),
        Some(
            "on the host: `echo 'options kvm_intel nested=1' > /etc/modprobe.d/kvm-nested.conf`, \
             then with no VM running `modprobe -r kvm_intel && modprobe kvm_intel` (or reboot)"
        )
    );

    let amd = host(&[(AMD, "1\n"), (CPUINFO, "flags\t: fpu svm\n")]);
    let c = check(&sshd, amd.path()).await;
    assert!(c.ok, "{c:?}");
    assert_eq!(c.detail, "nested virtualization is on (kvm_amd nested=1)");

    let amd_off = host(&[(AMD, "0\n")]);
    let c = check(&sshd, amd_off.path()).await;
    assert!(
        !c.ok
            && c.fix
                .as_deref()
                .unwrap()
                .contains("options kvm_amd nested=1"),
        "{c:?}"
    );

    // Neither module: the CPU flags tell whether it could.
    let flags = host(&[(CPUINFO, "processor\t: 0\nflags\t\t: fpu vme svm lm\n")]);
    let c = check(&sshd, flags.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(
        c.detail.contains("KVM is not loaded") && c.detail.contains("the CPU has svm, so it could"),
        "{c:?}"
    );
    assert!(
        c.fix.as_deref().unwrap().contains("modprobe kvm_amd"),
        "{c:?}"
    );

    let none = host(&[(CPUINFO, "flags\t\t: fpu vme lm\n")]);
    let c = check(&sshd, none.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(c.detail.contains("neither vmx nor svm"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("VT-x / AMD-V"), "{c:?}");
}

#[tokio::test]
async fn ssh_failing_says_so_and_how_to_fix_it() {
    let root = host(&[(INTEL, "Y\n")]);
    // Refused: nothing listens on the port.
    let sshd = Sshd::start();
    let closed = sshd.target().port(free_port());
    let c = nested_check(&closed, "nodes/father.yaml", root.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(c.detail.starts_with("cannot check over SSH ("), "{c:?}");
    assert!(c.detail.contains("cannot connect to 127.0.0.1:"), "{c:?}");
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .contains("check `ip:` (and `ssh_port:`) in nodes/father.yaml"),
        "{c:?}"
    );

    // Not let in: a key the server does not know.
    let stranger = sshd.path("stranger");
    crate::common::keygen(&stranger);
    let t = sshd.target();
    let t =
        actions::ssh::SshTarget::new(&t.host, &t.user, actions::ssh::SshAuth::key_file(&stranger))
            .port(t.port)
            .host_keys(t.host_keys.clone());
    let c = nested_check(&t, "nodes/father.yaml", root.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(c.detail.contains("authentication as"), "{c:?}");
    assert!(
        c.fix.as_deref().unwrap().contains(".ssh/authorized_keys"),
        "{c:?}"
    );

    // An unknown host key under strict checking.
    let unknown = sshd.target().host_keys(actions::ssh::HostKeyCheck {
        policy: actions::ssh::HostKeyPolicy::Strict,
        known_hosts: None,
        pinned: None,
    });
    let c = nested_check(&unknown, "nodes/father.yaml", root.path()).await;
    assert!(!c.ok, "{c:?}");
    assert!(
        c.fix.as_deref().unwrap().contains("ssh-keyscan -p"),
        "{c:?}"
    );
}
