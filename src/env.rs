//! The environment variables driver reads, all in one place. Everything else
//! takes values, not variable names.
//!
//! | variable | what it does |
//! |---|---|
//! | `DRIVER_STATE_DIR` | run state folder (`--state-dir` wins; see `engine::state::default_dir`) |
//! | `HOMESTAK_SITE_CONFIG` | site-config folder (`--site-config` wins; see `engine::site_config::discover`) |
//! | `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE` | age identities for secrets.yaml (`engine::secrets`) |
//! | `PVESIM_TIME_SCALE` | simulated durations (0 instant, 1 realistic) |
//! | `PVESIM_FAULTS` | faults injected into the simulator, a JSON list; passed on to nested ones |
//! | `PVESIM_ROOT_PASSWORD` | `driver sim serve`: allows ticket logins (never on argv) |
//! | `PVESIM_TOKEN` | `driver sim serve --token` |
//! | `DRIVER_TOFU` | the `tofu` program (default: from `PATH`) |
//! | `DRIVER_ANSIBLE_PLAYBOOK` | the `ansible-playbook` program (default: from `PATH`) |

use std::path::PathBuf;

use crate::failure::Failure;

/// The simulator's settings from the environment, for demos and tests.
pub struct SimEnv {
    /// `PVESIM_TIME_SCALE` (default 0).
    pub time_scale: f64,
    pub faults: Vec<sim::Fault>,
    /// `PVESIM_FAULTS` as given, for nested simulators.
    pub faults_json: Option<String>,
}

impl SimEnv {
    /// Read and checked: a bad value is a usage error naming the variable.
    pub fn read() -> Result<SimEnv, Failure> {
        let time_scale: f64 = json("PVESIM_TIME_SCALE")?.unwrap_or(0.0);
        if time_scale < 0.0 {
            return Err(Failure::usage(miette::miette!(
                "$PVESIM_TIME_SCALE must be 0 or more, got {time_scale}"
            )));
        }
        Ok(SimEnv {
            time_scale,
            faults: json("PVESIM_FAULTS")?.unwrap_or_default(),
            faults_json: text("PVESIM_FAULTS"),
        })
    }
}

/// `PVESIM_ROOT_PASSWORD`.
pub fn sim_root_password() -> Option<String> {
    text("PVESIM_ROOT_PASSWORD")
}

/// `DRIVER_TOFU`.
pub fn tofu_program() -> Option<PathBuf> {
    text("DRIVER_TOFU").map(PathBuf::from)
}

/// `DRIVER_ANSIBLE_PLAYBOOK`.
pub fn ansible_program() -> Option<PathBuf> {
    text("DRIVER_ANSIBLE_PLAYBOOK").map(PathBuf::from)
}

fn text(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn json<T: serde::de::DeserializeOwned>(var: &str) -> Result<Option<T>, Failure> {
    match text(var) {
        Some(v) => serde_json::from_str(&v)
            .map(Some)
            .map_err(|e| Failure::usage(miette::miette!("${var} is not valid: {e}"))),
        None => Ok(None),
    }
}
