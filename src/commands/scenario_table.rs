//! The original's scenarios (seed 001 and its later versions) and what each
//! one is in driver: a verb on a manifest, host steps, or retired with its
//! replacement named.

use engine::Verb;

/// What a scenario runs.
#[derive(Clone, Copy, Debug)]
pub enum Job {
    /// `driver VERB -M MANIFEST -H HOST` (the manifest unless -M/--manifest-file says otherwise).
    Verb { verb: Verb, manifest: &'static str },
    /// `driver host STEP` for each step, in order.
    Host(&'static [HostStep]),
    /// Not run: the command that replaces it.
    Retired { replacement: &'static str },
}

/// One `driver host` step a scenario runs, and its phase name in the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStep {
    InstallPve,
    Setup,
    User,
    Bootstrap,
}

impl HostStep {
    /// The `driver host` subcommand.
    pub fn command(self) -> &'static str {
        match self {
            HostStep::InstallPve => "install-pve",
            HostStep::Setup => "setup",
            HostStep::User => "user",
            HostStep::Bootstrap => "bootstrap",
        }
    }

    /// The original's phase name (verb_noun).
    pub fn phase(self) -> &'static str {
        match self {
            HostStep::InstallPve => "ensure_pve",
            HostStep::Setup => "setup_pve",
            HostStep::User => "create_user",
            HostStep::Bootstrap => "bootstrap",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// The original's runtime estimate (`--list-scenarios`).
    pub runtime: &'static str,
    pub job: Job,
}

const fn verb(name: &'static str, description: &'static str, v: Verb, m: &'static str) -> Scenario {
    Scenario {
        name,
        description,
        runtime: "-",
        job: Job::Verb {
            verb: v,
            manifest: m,
        },
    }
}

const fn retired(
    name: &'static str,
    description: &'static str,
    runtime: &'static str,
    replacement: &'static str,
) -> Scenario {
    Scenario {
        name,
        description,
        runtime,
        job: Job::Retired { replacement },
    }
}

const IMAGES: &str =
    "driver images ensure IMAGE -H HOST (images come from site-config images/*.yaml; \
driver images download IMAGE fetches one here)";

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pve-setup",
        description: "Install PVE (if needed), configure host, generate node config",
        runtime: "~3m",
        job: Job::Host(&[HostStep::InstallPve, HostStep::Setup]),
    },
    Scenario {
        name: "user-setup",
        description: "Create homestak user",
        runtime: "~30s",
        job: Job::Host(&[HostStep::User]),
    },
    Scenario {
        name: "bootstrap-install",
        description:
            "Bootstrap: driver and site-config onto the host (and the user, with --homestak-user)",
        runtime: "~2m",
        job: Job::Host(&[HostStep::Bootstrap]),
    },
    verb(
        "spec-vm-push-roundtrip",
        "Spec discovery integration test (push verification)",
        Verb::Test,
        "n1-push",
    ),
    verb(
        "push-vm-roundtrip",
        "Deploy VM with spec server vars, verify, destroy",
        Verb::Test,
        "n1-push",
    ),
    verb(
        "pull-vm-roundtrip",
        "Deploy VM in pull mode, verify spec fetch and config apply, destroy",
        Verb::Test,
        "n1-pull",
    ),
    // Retired in the original's v0.47 in favour of the verbs, which they run here.
    verb(
        "vm-constructor",
        "Create a VM (the verb `create`)",
        Verb::Create,
        "n1-basic",
    ),
    verb(
        "vm-destructor",
        "Destroy it (the verb `destroy`)",
        Verb::Destroy,
        "n1-basic",
    ),
    verb(
        "vm-roundtrip",
        "Create, verify SSH, destroy (`test`)",
        Verb::Test,
        "n1-basic",
    ),
    verb(
        "nested-pve-constructor",
        "Nested PVE and a VM in it (`create`)",
        Verb::Create,
        "n2-quick",
    ),
    verb(
        "nested-pve-destructor",
        "Tear it down (`destroy`)",
        Verb::Destroy,
        "n2-quick",
    ),
    verb(
        "nested-pve-roundtrip",
        "Nested PVE round trip (`test`)",
        Verb::Test,
        "n2-quick",
    ),
    verb(
        "recursive-pve-constructor",
        "PVE in PVE in PVE (`create`)",
        Verb::Create,
        "n3-deep",
    ),
    verb(
        "recursive-pve-destructor",
        "Tear it down (`destroy`)",
        Verb::Destroy,
        "n3-deep",
    ),
    verb(
        "recursive-pve-roundtrip",
        "Three levels round trip (`test`)",
        Verb::Test,
        "n3-deep",
    ),
    retired("packer-build", "Build packer images", "~3m", IMAGES),
    retired(
        "packer-build-fetch",
        "Build remotely, fetch to local",
        "~5m",
        "driver images download IMAGE --dest DIR",
    ),
    retired(
        "packer-build-publish",
        "Build and publish to PVE storage",
        "~7m",
        IMAGES,
    ),
    retired("packer-sync", "Sync local packer to remote", "~30s", IMAGES),
    retired(
        "packer-sync-build-fetch",
        "Sync, build, fetch",
        "~6m",
        "driver images download IMAGE --dest DIR",
    ),
    retired(
        "pve-config",
        "PVE self-configure from the server's config endpoint",
        "-",
        "a pve node in pull mode runs it itself (driver config pve, from its cloud-init; \
         driver create/test wait for it), or driver host setup -H HOST (push)",
    ),
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

impl Scenario {
    /// What it runs, as a command line (with the user's host/manifest in place).
    pub fn does(&self) -> String {
        match self.job {
            Job::Verb { verb, manifest } => {
                format!("driver {} -M {manifest} -H HOST", verb.as_str())
            }
            Job::Host(steps) => steps
                .iter()
                .map(|s| format!("driver host {} -H HOST", s.command()))
                .collect::<Vec<_>>()
                .join(" && "),
            Job::Retired { replacement } => format!("retired: {replacement}"),
        }
    }
}
