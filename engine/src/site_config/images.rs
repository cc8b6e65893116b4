//! `images/NAME.yaml`, read typed: where the file a template is made from
//! comes from. Either a release of the packer repository (`file:` and
//! optionally `release:`, `repo:`, `api_base:`), fetched by the driver, or
//! an upstream cloud image (`url:` with `sha256:` or `sha512:`, optionally
//! `file:` naming it on the host), fetched by the host itself. Unknown keys
//! and contradictory ones are refused, with a hint. [`ImageSpec::mirrored`]
//! points either kind at an image mirror instead (node file `images_mirror:`).

use crate::yaml::{Node, Value};

use super::{ConfigError, Entity, SiteConfig};

/// The keys an image file may hold.
pub const IMAGE_KEYS: &[&str] = &[
    "file", "release", "repo", "api_base", "url", "sha256", "sha512", "vztmpl", "pve",
];

/// Default repository whose releases hold the images.
pub const DEFAULT_RELEASE_REPO: &str = "homestak-dev/packer";
/// Default releases API.
pub const DEFAULT_RELEASE_API: &str = "https://api.github.com";

/// The hash an upstream image is checked with (what PVE's
/// `checksum-algorithm` calls it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha512,
}

impl HashAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 64,
            HashAlgorithm::Sha512 => 128,
        }
    }
}

/// Where an image's file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// A packer release asset (maybe split in parts), checked against the
    /// release's published checksums.
    Release {
        /// The tag; `None`: the site default (`packer_release`), else `latest`.
        release: Option<String>,
        repo: String,
        api_base: String,
    },
    /// An upstream image the host downloads itself.
    Url {
        url: String,
        algorithm: HashAlgorithm,
        /// Lower-case hex.
        checksum: String,
    },
}

/// One `images/NAME.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The image (and template) name.
    pub name: String,
    /// Where it was read from, for messages.
    pub file_path: String,
    /// The file name on the host (and in a release).
    pub file: String,
    pub source: ImageSource,
    /// `pve: true`: Proxmox VE is installed in the image, so a `pve` node made
    /// from it needs no `install_pve` step.
    pub pve: bool,
}

/// Extensions PVE's `import` content takes for disk images.
const IMPORT_EXTS: &[&str] = &[".qcow2", ".raw", ".vmdk"];

fn invalid(file: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        message,
    }
}

fn text<'a>(doc: &'a Node, file: &str, key: &str) -> Result<Option<&'a str>, ConfigError> {
    match doc.get(key) {
        None => Ok(None),
        Some(n) => match &n.value {
            Value::Str(s) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Value::Null => Ok(None),
            _ => Err(invalid(
                file,
                format!("'{key}' must be a non-empty string, not {}", n.kind()),
            )),
        },
    }
}

/// `pve:` (default false): whether Proxmox VE is installed in the image.
fn has_pve(doc: &Node, file: &str) -> Result<bool, ConfigError> {
    match doc.get("pve").map(|n| &n.value) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err(invalid(
            file,
            "'pve' is true (Proxmox VE is installed in the image) or false".into(),
        )),
    }
}

/// Reads an image file's document (see the module docs).
pub fn parse_image(name: &str, file: &str, doc: &Node) -> Result<ImageSpec, ConfigError> {
    let Some(entries) = doc.as_map() else {
        return Err(invalid(
            file,
            format!(
                "an image file is a mapping (file:, url:, ...), not {}",
                doc.kind()
            ),
        ));
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("?");
        if !IMAGE_KEYS.contains(&key) {
            let guess = crate::manifest::did_you_mean(key, IMAGE_KEYS)
                .map(|g| format!("did you mean '{g}'? "))
                .unwrap_or_default();
            return Err(invalid(
                file,
                format!(
                    "unknown key '{}' ({guess}an image file knows: {})",
                    crate::yaml::shorten(key, 60),
                    IMAGE_KEYS.join(", ")
                ),
            ));
        }
    }
    let get = |k: &str| text(doc, file, k);
    let url = get("url")?;
    let sums = [
        (HashAlgorithm::Sha256, get("sha256")?),
        (HashAlgorithm::Sha512, get("sha512")?),
    ];
    let given: Vec<(HashAlgorithm, &str)> = sums
        .iter()
        .filter_map(|(a, v)| v.map(|v| (*a, v)))
        .collect();
    let source = match url {
        Some(url) => {
            for k in ["release", "repo", "api_base"] {
                if doc.get(k).is_some() {
                    return Err(invalid(
                        file,
                        format!("'{k}' is for release images; this one has `url:` (remove one)"),
                    ));
                }
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(file, format!("url '{url}' is not http(s)://")));
            }
            let (algorithm, sum) =
                match given.as_slice() {
                    [one] => *one,
                    [] => return Err(invalid(
                        file,
                        "an upstream image needs its checksum: add `sha256: HEX` (or `sha512:`) \
                         as published beside the image (e.g. SHA512SUMS)"
                            .into(),
                    )),
                    _ => {
                        return Err(invalid(
                            file,
                            "give one of sha256: and sha512:, not both".into(),
                        ))
                    }
                };
            let sum = sum.to_ascii_lowercase();
            if sum.len() != algorithm.hex_len() || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    file,
                    format!(
                        "{} must be {} hex digits (got '{}')",
                        algorithm.name(),
                        algorithm.hex_len(),
                        crate::yaml::shorten(&sum, 40)
                    ),
                ));
            }
            ImageSource::Url {
                url: url.to_string(),
                algorithm,
                checksum: sum,
            }
        }
        None => {
            if let Some((a, _)) = given.first() {
                return Err(invalid(
                    file,
                    format!(
                        "'{}' goes with `url:`; a release image is checked against the \
                         release's published checksums",
                        a.name()
                    ),
                ));
            }
            ImageSource::Release {
                release: get("release")?.map(str::to_string),
                repo: get("repo")?.unwrap_or(DEFAULT_RELEASE_REPO).to_string(),
                api_base: get("api_base")?.unwrap_or(DEFAULT_RELEASE_API).to_string(),
            }
        }
    };
    let file_name = match (get("file")?, &source) {
        (Some(f), _) => f.to_string(),
        (None, ImageSource::Url { url, .. }) => url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .unwrap_or("")
            .to_string(),
        (None, ImageSource::Release { .. }) => {
            return Err(invalid(
                file,
                "no `file:` (the image's file name in the release, e.g. debian-12.qcow2) \
                 and no `url:`"
                    .into(),
            ))
        }
    };
    if !crate::site_config::plain_name(&file_name) {
        return Err(invalid(
            file,
            format!("file '{file_name}' is not a plain file name"),
        ));
    }
    if !IMPORT_EXTS.iter().any(|e| file_name.ends_with(e)) {
        return Err(invalid(
            file,
            format!(
                "file '{file_name}' must end in {} (PVE imports disks only from those); \
                 set `file: NAME.qcow2` to store it under such a name",
                IMPORT_EXTS.join(", ")
            ),
        ));
    }
    Ok(ImageSpec {
        name: name.to_string(),
        file_path: file.to_string(),
        file: file_name,
        source,
        pve: has_pve(doc, file)?,
    })
}

/// The image mirror a host's images come from instead (`images_mirror:`): its base URL, a
/// GitHub-shaped release API and upstream-style files under `/images/`, and the SHA-256 of
/// each file it serves (`NAME.qcow2` → hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMirror {
    pub url: String,
    pub sha256: std::collections::BTreeMap<String, String>,
}

impl ImageSpec {
    /// This image as the mirror serves it: a release image keeps its repository, tag and
    /// file, its releases listed by the mirror (`api_base`); an upstream image becomes the
    /// mirror's `/images/NAME.qcow2` (by the image's name: the mirror's copy of it), checked
    /// against the mirror's SHA-256, stored under its own `file:`. An error (to report when
    /// the image is needed) when the mirror has no such file.
    pub fn mirrored(&self, mirror: &ImageMirror) -> Result<ImageSpec, String> {
        let base = mirror.url.trim_end_matches('/');
        let served = |file: &str| {
            mirror.sha256.get(file).cloned().ok_or_else(|| {
                format!(
                    "the image mirror at {base} has no {file} (it serves {})",
                    mirror
                        .sha256
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        };
        let source = match &self.source {
            ImageSource::Release { release, repo, .. } => {
                served(&self.file)?;
                ImageSource::Release {
                    release: release.clone(),
                    repo: repo.clone(),
                    api_base: base.to_string(),
                }
            }
            ImageSource::Url { .. } => {
                let file = format!("{}.qcow2", self.name);
                ImageSource::Url {
                    checksum: served(&file)?,
                    url: format!("{base}/images/{file}"),
                    algorithm: HashAlgorithm::Sha256,
                }
            }
        };
        Ok(ImageSpec {
            source,
            ..self.clone()
        })
    }
}

impl SiteConfig {
    /// `images/NAME.yaml`, read typed.
    pub fn image(&self, name: &str) -> Result<ImageSpec, ConfigError> {
        let found = self.find(Entity::Image, name)?;
        parse_image(name, &found.file, &found.doc)
    }

    /// `images/NAME.yaml` checked whole: its container template (`vztmpl:`, see
    /// `ct_template`) and its disk image, unless it is for containers only.
    pub fn check_image(&self, name: &str) -> Result<(), ConfigError> {
        let found = self.find(Entity::Image, name)?;
        let ct = found.doc.get("vztmpl");
        if let Some(v) = ct {
            super::ct_template::parse(&found.file, v)?;
        }
        let for_vms = IMAGE_KEYS
            .iter()
            .any(|k| *k != "vztmpl" && found.doc.get(k).is_some());
        if for_vms || ct.is_none() {
            parse_image(name, &found.file, &found.doc)?;
        }
        Ok(())
    }

    /// The images with Proxmox VE installed (`pve: true`): a `pve` node made
    /// from any other image gets PVE installed by its `install_pve` step.
    pub fn images_with_pve(&self) -> Result<std::collections::BTreeSet<String>, ConfigError> {
        let mut with = std::collections::BTreeSet::new();
        for name in self.names(Entity::Image) {
            let found = self.find(Entity::Image, &name)?;
            if has_pve(&found.doc, &found.file)? {
                with.insert(name);
            }
        }
        Ok(with)
    }

    /// Whether the site-config has `images/NAME.yaml`.
    pub fn has_image(&self, name: &str) -> bool {
        self.names(Entity::Image).iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(y: &str) -> Result<ImageSpec, ConfigError> {
        let doc = crate::yaml::parse(y).unwrap();
        parse_image("img", "images/img.yaml", &doc)
    }

    #[test]
    fn release_and_url_images_are_read() {
        let r = read("file: debian-12.qcow2\nrelease: v1\n").unwrap();
        assert_eq!(r.file, "debian-12.qcow2");
        assert!(matches!(r.source, ImageSource::Release { release: Some(ref t), .. } if t == "v1"));
        let sum = "a".repeat(64);
        let u = read(&format!("url: http://x/a/deb.qcow2\nsha256: {sum}\n")).unwrap();
        assert_eq!(u.file, "deb.qcow2");
        assert!(matches!(
            u.source,
            ImageSource::Url {
                algorithm: HashAlgorithm::Sha256,
                ..
            }
        ));
    }

    #[test]
    fn a_mirror_replaces_where_either_kind_comes_from() {
        let mirror = ImageMirror {
            url: "http://127.0.0.1:9/".into(),
            sha256: [("img.qcow2".to_string(), "c".repeat(64))].into(),
        };
        let r = read("file: img.qcow2\nrelease: v1\nrepo: o/r\n").unwrap();
        let m = r.mirrored(&mirror).unwrap();
        assert_eq!(
            m.source,
            ImageSource::Release {
                release: Some("v1".into()),
                repo: "o/r".into(),
                api_base: "http://127.0.0.1:9".into()
            }
        );
        let u = read(&format!(
            "url: https://x/a/deb.qcow2\nfile: d.qcow2\nsha512: {}\n",
            "a".repeat(128)
        ))
        .unwrap();
        let m = u.mirrored(&mirror).unwrap();
        assert_eq!(m.file, "d.qcow2");
        assert_eq!(
            m.source,
            ImageSource::Url {
                url: "http://127.0.0.1:9/images/img.qcow2".into(),
                algorithm: HashAlgorithm::Sha256,
                checksum: "c".repeat(64)
            }
        );
        let other = read("file: other.qcow2\n").unwrap();
        let e = other.mirrored(&mirror).unwrap_err();
        assert!(
            e.contains("has no other.qcow2 (it serves img.qcow2)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_contradictory_keys_are_refused() {
        let e = read("file: a.qcow2\nreleas: v1\n").unwrap_err().to_string();
        assert!(
            e.contains("unknown key 'releas'") && e.contains("did you mean 'release'"),
            "{e}"
        );
        let e = read("url: http://x/a.qcow2\n").unwrap_err().to_string();
        assert!(e.contains("sha256"), "{e}");
        let e = read("file: a.qcow2\nsha256: abc\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("goes with `url:`"), "{e}");
        let e = read(&format!(
            "url: http://x/noble.img\nsha256: {}\n",
            "b".repeat(64)
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("file: NAME.qcow2"), "{e}");
        let e = read("url: http://x/a.qcow2\nsha512: abcd\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("128 hex digits"), "{e}");
    }
}
