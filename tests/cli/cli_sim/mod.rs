//! Real runs of the `driver` binary against the built-in simulator (host
//! `sim`), one module per theme: runs on the simulated host alone
//! (`single_host`), stops and resumes there (`stop`), nested PVEs and their
//! drivers (`nested`, `nested_stop`), and runs sharing one simulator folder
//! (`shared_sim`). Here: the helpers more than one of them use.

mod contention;
mod nested;
mod nested_stop;
mod shared_sim;
mod single_host;
mod stop;

use std::path::Path;

use crate::common::sim::sim_driver;

/// API-only nodes (no SSH step): a VM with an explicit vmid, one without,
/// and a container (through PVE's lxc endpoints).
const API_ONLY: &str = "schema_version: 2
name: api-only
settings: {verify_ssh: false}
nodes:
  - {name: edge, type: vm, spec: base, preset: vm-small, image: debian-12, vmid: 99001}
  - {name: edge2, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
  - {name: box, type: ct, spec: base, preset: vm-xsmall, image: debian-12, vmid: 99005}
";

/// `driver test` with the built-in site-config and host `sim`, in a fresh state folder.
fn sim_test(manifest: &str, extra: &[&str]) -> (crate::common::Run, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut c = sim_driver(state.path());
    c.args(["test", "-M", manifest, "-H", "sim", "--json-output"])
        .args(extra);
    (crate::common::Run::from(c.output().unwrap()), state)
}

/// Processes whose working directory is in `dir`, as "pid N in PATH".
fn processes_under(dir: &Path) -> Vec<String> {
    let root = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(&root).then(|| {
                format!(
                    "pid {} in {}",
                    e.file_name().to_string_lossy(),
                    cwd.display()
                )
            })
        })
        .collect()
}

/// Pids of processes whose working directory is `dir` and whose command line contains `word`.
///
/// A process that is its parent's fork on the way to `exec` is left out: spawning a command in a
/// guest's folder forks, changes directory, then execs, so for a moment (long, under load) a copy
/// of the simulator sits in the guest's folder with the simulator's own command line.
fn pids_in(dir: &Path, word: &str) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let cmdline = |pid: &str| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let name = name.to_str()?;
            let pid: i32 = name.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = cmdline(name)?;
            if cwd != dir || !cmd.contains(word) {
                return None;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (cmdline(ppid).as_deref() != Some(cmd.as_str())).then_some(pid)
        })
        .collect()
}
