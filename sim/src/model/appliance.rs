//! The simulator's appliance index: what `pveam available` (and `GET /nodes/{node}/aplinfo`)
//! lists on a real host after `pveam update`, cut to a few system templates. Seeding and the
//! appliance download both take their files from here.

/// Where Proxmox's index points (`source` of each entry).
pub(crate) const APL_SOURCE: &str = "http://download.proxmox.com/images";

/// One entry of the index (the fields of a record in PVE's `aplinfo.dat`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appliance {
    pub package: &'static str,
    pub version: &'static str,
    pub os: &'static str,
    pub headline: &'static str,
    pub description: &'static str,
    /// Bytes the archive takes in the storage.
    pub size: u64,
    /// Whether a fresh (not bare) simulated host has it in `local` already.
    pub seeded: bool,
}

impl Appliance {
    pub fn section(&self) -> &'static str {
        "system"
    }

    /// The archive's file name, as PVE derives it from the entry's location.
    pub fn template(&self) -> String {
        format!("{}_{}_amd64.tar.zst", self.package, self.version)
    }

    pub fn location(&self) -> String {
        format!("{APL_SOURCE}/{}/{}", self.section(), self.template())
    }
}

pub(crate) const APPLIANCES: &[Appliance] = &[
    Appliance {
        package: "debian-12-standard",
        version: "12.12-1",
        os: "debian-12",
        headline: "Debian 12 Bookworm (standard)",
        description: "A small Debian Bookworm system including all standard packages.",
        size: 126_000_000,
        seeded: true,
    },
    Appliance {
        package: "debian-13-standard",
        version: "13.1-2",
        os: "debian-13",
        headline: "Debian 13 Trixie (standard)",
        description: "A small Debian Trixie system including all standard packages.",
        size: 129_000_000,
        seeded: true,
    },
    // Listed but on no storage until downloaded: what a container needs fetched first.
    Appliance {
        package: "ubuntu-24.04-standard",
        version: "24.04-2",
        os: "ubuntu-24.04",
        headline: "Ubuntu 24.04 Noble (standard)",
        description: "A small Ubuntu 24.04 Noble Numbat system including all standard packages.",
        size: 141_000_000,
        seeded: false,
    },
];

/// The entry whose archive is `template` (PVE looks appliances up by file name).
pub(crate) fn appliance(template: &str) -> Option<&'static Appliance> {
    APPLIANCES.iter().find(|a| a.template() == template)
}
