//! The tofu actions against a stand-in `tofu` on PATH (OpenTofu cannot be
//! installed here): it records argv, cwd and environment, keeps a state
//! file where `-state` says, and prints realistic `-json` lines.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use actions::tofu::{self, TofuError, TofuWorkspace};
use serde_json::{json, Value};

/// The stand-in. Behaviour switches are files in the cwd (the env dir), so
/// tests running in parallel do not disturb each other.
const STANDIN: &str = r#"#!/bin/sh
# Stand-in for OpenTofu (tests only).
log="$PWD/tofu-calls.log"
{
  echo "--- call"
  echo "cwd=$PWD"
  echo "TF_DATA_DIR=$TF_DATA_DIR"
  echo "TF_IN_AUTOMATION=$TF_IN_AUTOMATION"
  for a in "$@"; do echo "arg=$a"; done
} >> "$log"
cmd="$1"; shift
state=""; varfile=""
for a in "$@"; do
  case "$a" in
    -state=*) state="${a#-state=}" ;;
    -var-file=*) varfile="${a#-var-file=}" ;;
  esac
done
version='{"@level":"info","@message":"OpenTofu 1.9.0","@module":"tofu.ui","@timestamp":"2025-06-01T10:00:00.000000Z","tofu":"1.9.0","type":"version","ui":"1.2"}'
case "$cmd" in
init)
  if [ -f "$TF_DATA_DIR/.terraform.lock.hcl" ] && grep -q stale "$TF_DATA_DIR/.terraform.lock.hcl"; then
    echo "Initializing provider plugins..."
    echo "╷" >&2
    echo "│ Error: Failed to query available provider packages" >&2
    echo "│ locked provider registry.opentofu.org/bpg/proxmox 0.60.0 does not match configured version constraint >= 0.66.0" >&2
    echo "╵" >&2
    exit 1
  fi
  mkdir -p "$TF_DATA_DIR/providers"
  printf '# provider lock\n' > "$TF_DATA_DIR/.terraform.lock.hcl"
  echo "Initializing the backend..."
  echo "OpenTofu has been successfully initialized!"
  ;;
apply)
  cp "$varfile" "$PWD/tfvars-seen.json"
  stat -c %a "$varfile" > "$PWD/tfvars-mode"
  echo "$version"
  if [ -f "$PWD/fail-apply" ]; then
    echo '{"@level":"info","@message":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm: Creating...","type":"apply_start","hook":{"resource":{"addr":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm"},"action":"create"}}'
    echo '{"@level":"error","@message":"Error: error creating VM: received an HTTP 500 response","@module":"tofu.ui","type":"diagnostic","diagnostic":{"severity":"error","summary":"error creating VM: received an HTTP 500 response","detail":"storage '"'"'local-zfs'"'"' does not exist","address":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm","range":{"filename":"../../modules/vm/main.tf","start":{"line":12,"column":1,"byte":210},"end":{"line":12,"column":40,"byte":250}}}}'
    exit 1
  fi
  echo '{"@level":"info","@message":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm: Plan to create","type":"planned_change","change":{"resource":{"addr":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm"},"action":"create"}}'
  echo '{"@level":"info","@message":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm: Creating...","type":"apply_start","hook":{"resource":{"addr":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm"},"action":"create"}}'
  echo '{"@level":"warn","@message":"Warning: deprecated attribute","type":"diagnostic","diagnostic":{"severity":"warning","summary":"deprecated attribute","detail":"use cpu.cores"}}'
  echo '{"@level":"info","@message":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm: Creation complete after 21s [id=99900]","type":"apply_complete","hook":{"resource":{"addr":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm"},"action":"create","id_key":"id","id_value":"99900","elapsed_seconds":21}}'
  echo '{"@level":"info","@message":"Apply complete! Resources: 2 added, 0 changed, 0 destroyed.","type":"change_summary","changes":{"add":2,"change":0,"import":0,"remove":0,"operation":"apply"}}'
  echo '{"@level":"info","@message":"Outputs: 2","type":"outputs","outputs":{"vm_ids":{"sensitive":false,"type":["map","number"],"value":{"test":99900,"auto":100}}}}'
  cat > "$state" <<'EOF'
{"version":4,"terraform_version":"1.9.0","serial":1,"lineage":"standin","outputs":{"vm_ids":{"value":{"test":99900,"auto":100},"type":["map","number"]},"root_password_hash":{"value":"$6$x","type":"string","sensitive":true}},"resources":[{"mode":"managed","type":"proxmox_virtual_environment_vm","name":"vm"}],"check_results":null}
EOF
  ;;
destroy)
  cp "$varfile" "$PWD/tfvars-seen-destroy.json"
  echo "$version"
  echo '{"@level":"info","@message":"module.vm[\"test\"].proxmox_virtual_environment_vm.vm: Destroying... [id=99900]","type":"apply_start","hook":{"action":"delete"}}'
  echo '{"@level":"info","@message":"Destroy complete! Resources: 2 destroyed.","type":"change_summary","changes":{"add":0,"change":0,"import":0,"remove":2,"operation":"destroy"}}'
  echo '{"version":4,"terraform_version":"1.9.0","serial":2,"lineage":"standin","outputs":{},"resources":[]}' > "$state"
  ;;
output)
  if [ ! -f "$state" ]; then echo "{}"; exit 0; fi
  # Pretty-printed over several lines, as tofu does.
  cat <<'EOF'
{
  "root_password_hash": {
    "sensitive": true,
    "type": "string",
    "value": "$6$x"
  },
  "vm_ids": {
    "sensitive": false,
    "type": [
      "map",
      "number"
    ],
    "value": {
      "auto": 100,
      "test": 99900
    }
  }
}
EOF
  ;;
*)
  echo "stand-in: unsupported command $cmd" >&2; exit 2 ;;
esac
"#;

static PATH_SET: Once = Once::new();

/// Puts the stand-in first on PATH (once per test process; nextest runs
/// each test in its own process).
fn standin_on_path() {
    PATH_SET.call_once(|| {
        // Per process: another test process may be running its own copy.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tofu-standin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let tofu = dir.join("tofu");
        std::fs::write(&tofu, STANDIN).expect("write stand-in");
        std::fs::set_permissions(&tofu, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir];
        paths.extend(std::env::split_paths(&path));
        std::env::set_var("PATH", std::env::join_paths(paths).expect("PATH"));
    });
}

/// The seed's tofu tfvars structure (ConfigResolver.resolve_env).
fn seed_tfvars() -> Value {
    json!({
        "node": "pve",
        "api_endpoint": "https://localhost:8006",
        "api_token": "root@pam!tofu=00000000-1111-2222-3333-444444444444",
        "ssh_user": "root",
        "datastore": "local-zfs",
        "root_password": "$6$rounds=4096$salt$hash",
        "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFBxZD1IuBXuN0EIAztR9FPtfSxt1tZ332N8E1WwZFoC test"],
        "spec_server": "https://controller:44443",
        "vms": [
            {"name": "test", "vmid": 99900, "image": "debian-12", "cores": 1, "memory": 2048,
             "disk": 20, "bridge": "vmbr0", "auth_token": ""},
            {"name": "auto", "vmid": null, "image": "debian-13", "cores": 2, "memory": 4096,
             "disk": 32, "bridge": "vmbr0", "auth_token": "site-token"}
        ]
    })
}

struct Call {
    cwd: String,
    data_dir: String,
    automation: String,
    args: Vec<String>,
}

fn calls(env_dir: &Path) -> Vec<Call> {
    let text =
        std::fs::read_to_string(env_dir.join("tofu-calls.log")).expect("stand-in was called");
    text.split("--- call\n")
        .filter(|c| !c.is_empty())
        .map(|c| {
            let get = |k: &str| {
                c.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_default()
                    .to_string()
            };
            Call {
                cwd: get("cwd="),
                data_dir: get("TF_DATA_DIR="),
                automation: get("TF_IN_AUTOMATION="),
                args: c
                    .lines()
                    .filter_map(|l| l.strip_prefix("arg="))
                    .map(String::from)
                    .collect(),
            }
        })
        .collect()
}

fn workspace(root: &Path) -> (PathBuf, TofuWorkspace) {
    standin_on_path();
    let env_dir = root.join("tofu/envs/dev");
    std::fs::create_dir_all(&env_dir).expect("mkdir");
    std::fs::write(env_dir.join("main.tf"), "# config\n").expect("main.tf");
    let ws = TofuWorkspace::new(&env_dir, root.join("iac-driver/.states"), "dev", "pve");
    (env_dir, ws)
}

#[tokio::test]
async fn apply_isolates_state_and_passes_tfvars_by_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let (env_dir, ws) = workspace(root.path());
    let states = root.path().join("iac-driver/.states");
    let tfvars = seed_tfvars();
    let mut lines = Vec::new();
    let out = ws
        .apply(&tfvars, &mut |l: &str| lines.push(l.to_string()))
        .await
        .expect("apply");

    let calls = calls(&env_dir);
    assert_eq!(calls.len(), 3, "init, apply, output");
    let state_dir = states.join("dev-pve");
    let state_file = state_dir.join("terraform.tfstate");
    let data_dir = state_dir.join("data");
    let tfvars_path = state_dir.join("tfvars.json");
    for c in &calls {
        assert_eq!(c.cwd, env_dir.display().to_string());
        assert_eq!(c.data_dir, data_dir.display().to_string());
        assert_eq!(c.automation, "1");
    }
    assert_eq!(calls[0].args, vec!["init", "-input=false", "-no-color"]);
    assert_eq!(
        calls[1].args,
        vec![
            "apply".to_string(),
            "-auto-approve".into(),
            "-input=false".into(),
            "-json".into(),
            format!("-state={}", state_file.display()),
            format!("-var-file={}", tfvars_path.display()),
        ]
    );
    assert_eq!(
        calls[2].args,
        vec![
            "output".to_string(),
            "-json".into(),
            format!("-state={}", state_file.display())
        ]
    );
    // No secret on any command line.
    for c in &calls {
        assert!(!c
            .args
            .iter()
            .any(|a| a.contains("tofu=0000") || a.contains("$6$")));
    }
    // State outside TF_DATA_DIR (opentofu#3643); providers inside it.
    assert!(state_file.is_file());
    assert!(!data_dir.join("terraform.tfstate").exists());
    assert!(data_dir.join(".terraform.lock.hcl").is_file());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state")).expect("json");
    assert_eq!(state["version"], 4);

    // The tfvars tofu saw: field for field what we were given, 0600,
    // and gone after the run.
    let seen: Value = serde_json::from_str(
        &std::fs::read_to_string(env_dir.join("tfvars-seen.json")).expect("seen"),
    )
    .expect("json");
    assert_eq!(seen, tfvars);
    assert_eq!(
        std::fs::read_to_string(env_dir.join("tfvars-mode"))
            .expect("mode")
            .trim(),
        "600"
    );
    assert!(
        !tfvars_path.exists(),
        "tfvars (secrets) removed after the run"
    );

    // Parsed: messages streamed, change summary, warnings, outputs, context.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Creation complete after 21s [id=99900]")),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l == "OpenTofu has been successfully initialized!"));
    assert!(
        !lines.iter().any(|l| l.starts_with('{')),
        "JSON lines are shown by their message"
    );
    let changes = out.changes.expect("change summary");
    assert_eq!((changes.add, changes.remove), (2, 0));
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(out.warnings[0].summary, "deprecated attribute");
    assert_eq!(
        out.outputs["vm_ids"].value,
        json!({"test": 99900, "auto": 100})
    );
    assert!(out.outputs["root_password_hash"].sensitive);
    assert_eq!(
        out.context,
        vec![
            ("test_vm_id".to_string(), json!(99900)),
            ("auto_vm_id".to_string(), json!(100)),
            (
                "provisioned_vms".to_string(),
                json!([{"name": "test", "vmid": 99900}, {"name": "auto", "vmid": 100}])
            ),
        ]
    );
    assert!(!out.cleared_lockfile);

    // Destroy: same isolation, the state emptied.
    let d = ws
        .destroy(&tfvars, &mut |_: &str| {})
        .await
        .expect("destroy");
    let calls = calls_after(&env_dir, 3);
    assert_eq!(calls.len(), 2, "init, destroy");
    assert_eq!(
        calls[1].args,
        vec![
            "destroy".to_string(),
            "-auto-approve".into(),
            "-input=false".into(),
            "-json".into(),
            format!("-state={}", state_file.display()),
            format!("-var-file={}", tfvars_path.display()),
        ]
    );
    assert_eq!(d.changes.expect("summary").remove, 2);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state")).expect("json");
    assert_eq!(state["resources"], json!([]));
    assert!(!tfvars_path.exists());
}

fn calls_after(env_dir: &Path, skip: usize) -> Vec<Call> {
    calls(env_dir).into_iter().skip(skip).collect()
}

#[tokio::test]
async fn error_diagnostic_is_surfaced() {
    let root = tempfile::tempdir().expect("tempdir");
    let (env_dir, ws) = workspace(root.path());
    std::fs::write(env_dir.join("fail-apply"), "").expect("switch");
    let mut lines = Vec::new();
    let e = ws
        .apply(&seed_tfvars(), &mut |l: &str| lines.push(l.to_string()))
        .await
        .expect_err("apply fails");
    match &e {
        TofuError::Failed {
            command,
            workspace,
            code,
            diagnostics,
            ..
        } => {
            assert_eq!(*command, "apply");
            assert_eq!(workspace, "dev-pve");
            assert_eq!(*code, 1);
            assert_eq!(diagnostics.len(), 1);
            assert_eq!(diagnostics[0].detail, "storage 'local-zfs' does not exist");
            assert_eq!(
                diagnostics[0].location.as_deref(),
                Some("../../modules/vm/main.tf:12")
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("tofu apply for dev-pve failed (exit 1): error creating VM: received an HTTP 500 response: storage 'local-zfs' does not exist"),
        "{msg}"
    );
    assert!(msg.contains("module.vm[\"test\"]"), "{msg}");
    assert!(!msg.contains("tofu=0000"), "no secrets in errors");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("Error: error creating VM")));
    // Secrets are not left behind on failure either.
    assert!(!ws.state_dir().join("tfvars.json").exists());
}

#[tokio::test]
async fn stale_lockfile_is_cleared_and_init_retried() {
    let root = tempfile::tempdir().expect("tempdir");
    let (env_dir, ws) = workspace(root.path());
    std::fs::create_dir_all(ws.data_dir()).expect("mkdir");
    std::fs::write(ws.lockfile(), "# stale: bpg/proxmox 0.60.0\n").expect("lock");
    let out = ws
        .apply(&seed_tfvars(), &mut |_: &str| {})
        .await
        .expect("apply after retry");
    assert!(out.cleared_lockfile);
    let calls = calls(&env_dir);
    let inits = calls
        .iter()
        .filter(|c| c.args.first().map(String::as_str) == Some("init"))
        .count();
    assert_eq!(inits, 2, "init failed, lockfile cleared, init retried");
    assert_eq!(
        std::fs::read_to_string(ws.lockfile()).expect("new lock"),
        "# provider lock\n"
    );

    // The manual fix, for every env-node under .states.
    let states = root.path().join("iac-driver/.states");
    for n in ["dev-a", "test-b"] {
        std::fs::create_dir_all(states.join(n).join("data")).expect("mkdir");
        std::fs::write(states.join(n).join("data/.terraform.lock.hcl"), "x").expect("lock");
    }
    std::fs::create_dir_all(states.join("no-lock/data")).expect("mkdir");
    let removed = tofu::clear_stale_lockfiles(&states).expect("cleared");
    assert_eq!(
        removed,
        vec![
            states.join("dev-a/data/.terraform.lock.hcl"),
            states.join("dev-pve/data/.terraform.lock.hcl"),
            states.join("test-b/data/.terraform.lock.hcl"),
        ]
    );
    assert!(tofu::clear_stale_lockfiles(&states)
        .expect("again")
        .is_empty());
    assert!(tofu::clear_stale_lockfiles(&root.path().join("none"))
        .expect("missing root")
        .is_empty());
}

#[tokio::test]
async fn state_left_inside_tf_data_dir_is_moved_out() {
    let root = tempfile::tempdir().expect("tempdir");
    let (_env_dir, ws) = workspace(root.path());
    std::fs::create_dir_all(ws.data_dir()).expect("mkdir");
    std::fs::write(ws.data_dir().join("terraform.tfstate"), "{\"version\":4}").expect("old state");
    ws.init(&mut |_: &str| {}).await.expect("init");
    assert!(!ws.data_dir().join("terraform.tfstate").exists());
    assert_eq!(
        std::fs::read_to_string(ws.state_file()).expect("moved"),
        "{\"version\":4}"
    );
}

#[tokio::test]
async fn missing_tofu_says_so() {
    let root = tempfile::tempdir().expect("tempdir");
    let (_env_dir, mut ws) = workspace(root.path());
    ws.program = "/nonexistent/tofu".into();
    let e = ws
        .apply(&seed_tfvars(), &mut |_: &str| {})
        .await
        .expect_err("missing");
    assert!(matches!(e, TofuError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("install OpenTofu"));
    // tfvars must be an object.
    let (_e2, ws) = workspace(root.path());
    let e = ws
        .apply(&json!([1, 2]), &mut |_: &str| {})
        .await
        .expect_err("bad tfvars");
    assert!(matches!(e, TofuError::BadTfvars));
}
