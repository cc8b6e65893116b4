//! Container templates (`vztmpl` archives) on a PVE host: the one a container's image needs
//! is found in a storage's content, or ensured there (downloaded from PVE's appliance index,
//! or from the site-config's URL with its checksum), at most once per (host, template) per
//! run even when many containers ask at the same time.

use std::time::Duration;

use engine::site_config::ct_template::CtTemplateSource;
use tokio::sync::OnceCell;

use crate::single_flight::SingleFlight;

use crate::pve::{ApplianceEntry, PveClient, PveError};

#[derive(Debug, thiserror::Error)]
pub enum CtTemplateError {
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error(
        "no storage on node {node} takes container templates: enable content `vztmpl` on one \
         (`pvesm set local --content vztmpl,iso,backup`)"
    )]
    NoStorage { node: String },
    #[error(
        "PVE's appliance index on node {node} has no '{package}' (has: {available}): run \
         `pveam update` on the host, or name another in images/IMAGE.yaml `vztmpl: {{appliance: ...}}` \
         (`pveam available --section system`)"
    )]
    NoAppliance {
        node: String,
        package: String,
        available: String,
    },
}

/// The templates a runner has found or fetched on its host: one cell per template, so
/// concurrent containers wait for the same download instead of starting their own.
#[derive(Default)]
pub struct CtTemplates {
    cells: SingleFlight<String, OnceCell<String>>,
}

impl CtTemplates {
    /// The volid (`STORAGE:vztmpl/FILE`) of the template `source` names on `client`'s node,
    /// downloaded first when no storage has it. A failure is not remembered: the next
    /// caller tries again.
    pub async fn ensure(
        &self,
        client: &PveClient,
        source: &CtTemplateSource,
        timeout: Duration,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, CtTemplateError> {
        let key = format!("{}@{}", source.describe(), client.node());
        self.cells
            .entry(key)
            .get_or_try_init(|| find_or_fetch(client, source, timeout, log))
            .await
            .cloned()
    }
}

async fn find_or_fetch(
    client: &PveClient,
    source: &CtTemplateSource,
    timeout: Duration,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<String, CtTemplateError> {
    let storages = client.vztmpl_storages().await?;
    let mut have = Vec::new();
    for s in &storages {
        have.extend(client.vztmpl_volumes(s).await?);
    }
    if let Some(found) = pick_stored(source, &have) {
        log(format!("container template {found}"));
        return Ok(found);
    }
    // `local` is where PVE keeps templates by default; else the first that takes them.
    let storage = storages
        .iter()
        .find(|s| *s == "local")
        .or(storages.first())
        .ok_or_else(|| CtTemplateError::NoStorage {
            node: client.node().to_string(),
        })?;
    match source {
        CtTemplateSource::Appliance { package } => {
            let index = client.appliances().await?;
            let entry = newest(package, index.iter()).ok_or_else(|| {
                let mut names: Vec<&str> = index.iter().map(|a| a.package.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                CtTemplateError::NoAppliance {
                    node: client.node().to_string(),
                    package: package.clone(),
                    available: if names.is_empty() {
                        "nothing".into()
                    } else {
                        names.join(", ")
                    },
                }
            })?;
            log(format!(
                "downloading appliance {} into {storage} (not on any storage yet)",
                entry.template
            ));
            client
                .download_appliance(storage, &entry.template, timeout)
                .await?;
            Ok(format!("{storage}:vztmpl/{}", entry.template))
        }
        CtTemplateSource::Url {
            url,
            file,
            checksum,
        } => {
            log(format!(
                "downloading {url} into {storage} (not on any storage yet)"
            ));
            let sum = checksum
                .as_ref()
                .map(|(algo, hex)| (algo.as_str(), hex.as_str()));
            let upid = client
                .download_url(storage, url, "vztmpl", file, sum)
                .await?;
            client
                .follow_task(&upid, timeout, &|l: &str| log(format!("host: {l}")))
                .await?;
            Ok(format!("{storage}:vztmpl/{file}"))
        }
    }
}

/// The stored template that fits `source`: the exact file for a URL, the newest version of
/// the package for an appliance.
fn pick_stored(source: &CtTemplateSource, volids: &[String]) -> Option<String> {
    let file_of = |v: &String| v.split_once(":vztmpl/").map(|(_, f)| f.to_string());
    match source {
        CtTemplateSource::Url { file, .. } => volids
            .iter()
            .find(|v| file_of(v).as_deref() == Some(file.as_str()))
            .cloned(),
        CtTemplateSource::Appliance { package } => {
            let entries: Vec<(ApplianceEntry, &String)> = volids
                .iter()
                .filter_map(|v| {
                    let file = file_of(v)?;
                    let version = file
                        .strip_prefix(&format!("{package}_"))?
                        .split('_')
                        .next()?;
                    Some((
                        ApplianceEntry {
                            package: package.clone(),
                            version: version.to_string(),
                            template: file.clone(),
                        },
                        v,
                    ))
                })
                .collect();
            let best = newest(package, entries.iter().map(|(e, _)| e))?;
            entries
                .iter()
                .find(|(e, _)| e.template == best.template)
                .map(|(_, v)| (*v).clone())
        }
    }
}

/// The newest entry of `package` (versions compared number by number: `12.12-1` > `12.7-1`).
fn newest<'a>(
    package: &str,
    entries: impl Iterator<Item = &'a ApplianceEntry>,
) -> Option<&'a ApplianceEntry> {
    entries
        .filter(|a| a.package == package)
        .max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)))
}

fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+', '~', ':'])
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            (
                digits.parse().unwrap_or(0),
                part[digits.len()..].to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_stored_version_of_a_package_or_the_exact_file_of_a_url() {
        let have = vec![
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".to_string(),
            "nfs:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst".to_string(),
            "local:vztmpl/debian-12-standard-extra_13.0-1_amd64.tar.zst".to_string(),
            "local:vztmpl/mine.tar.gz".to_string(),
        ];
        let app = |p: &str| CtTemplateSource::Appliance { package: p.into() };
        assert_eq!(
            pick_stored(&app("debian-12-standard"), &have).as_deref(),
            Some("nfs:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst")
        );
        assert_eq!(pick_stored(&app("debian-13-standard"), &have), None);
        let url = |f: &str| CtTemplateSource::Url {
            url: format!("https://example.org/{f}"),
            file: f.into(),
            checksum: None,
        };
        assert_eq!(
            pick_stored(&url("mine.tar.gz"), &have).as_deref(),
            Some("local:vztmpl/mine.tar.gz")
        );
        assert_eq!(pick_stored(&url("other.tar.gz"), &have), None);
    }
}
