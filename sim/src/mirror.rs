//! The image mirror a bare simulator serves (`simulated: bare`): a plain-HTTP server on its
//! own loopback port, so a fresh simulated PVE can get its templates made without internet.
//!
//! It owns a fixed catalogue: the images the seeded simulator has as templates
//! (`debian-12`, `debian-13`, `debian-13-pve`, `pve-9`, with the same disk sizes), each a
//! small deterministic file `NAME.qcow2`: a qcow2 header whose virtual size is the image's
//! disk size (what `import-from` reads, see `api::content::image_size`), then 64 KiB of
//! filler. The files and their SHA-256 are computed once per process.
//!
//! Two shapes of the same files:
//! - a GitHub-shaped release, as the driver lists packer releases: `GET
//!   /repos/{owner}/{repo}/releases/tags/{tag}` (any repository, any tag) and
//!   `/repos/{owner}/{repo}/releases/latest` list every image split in two parts
//!   (`NAME.qcow2.partaa`, `.partab`) and a `SHA256SUMS` asset (parts and whole files), their
//!   `browser_download_url`s under `/download/`;
//! - upstream-style files, as a cloud-image mirror publishes them: `GET /images/NAME.qcow2`
//!   and `/images/SHA256SUMS` beside them.
//!
//! Its URL and the files' SHA-256 go into the folder's `pvesim.json` (`images_mirror`), where
//! a driver run on the host reads them (node file `images_mirror: sim`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The images served, with their disk (virtual) sizes: those of the seeded templates.
pub const IMAGES: &[(&str, u64)] = &[
    ("debian-12", 3 << 30),
    ("debian-13", 3 << 30),
    ("debian-13-pve", 8 << 30),
    ("pve-9", 16 << 30),
];

/// The file's length: the header's cluster, then filler.
const FILE_LEN: usize = 64 << 10;
/// The checksums file's name, in the release and beside the upstream-style files.
pub const SUMS: &str = "SHA256SUMS";

/// One served image.
#[derive(Debug)]
pub struct MirrorImage {
    /// `NAME` (the template it makes).
    pub name: &'static str,
    /// `NAME.qcow2`.
    pub file: String,
    /// Its virtual (disk) size.
    pub virtual_size: u64,
    pub bytes: Vec<u8>,
    /// Where the second part starts.
    pub split: usize,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

impl MirrorImage {
    /// Its release parts: (`NAME.qcow2.partaa`, bytes), (`....partab`, bytes).
    pub fn parts(&self) -> [(String, &[u8]); 2] {
        let (a, b) = self.bytes.split_at(self.split);
        [
            (format!("{}.partaa", self.file), a),
            (format!("{}.partab", self.file), b),
        ]
    }
}

/// Everything the mirror serves, computed once.
#[derive(Debug)]
pub struct Catalogue {
    pub images: Vec<MirrorImage>,
    /// The release's `SHA256SUMS`: every part and every whole file.
    pub release_sums: String,
    /// `/images/SHA256SUMS`: the whole files.
    pub file_sums: String,
}

impl Catalogue {
    pub fn image(&self, file: &str) -> Option<&MirrorImage> {
        self.images.iter().find(|i| i.file == file)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    crate::api::content::hex(&ring::digest::digest(&ring::digest::SHA256, b))
}

/// `NAME`'s file: a qcow2 (version 3) header of a `virtual_size` disk with 64 KiB
/// clusters, the name, then filler seeded by the name (so each file differs).
pub fn qcow2_image(name: &str, virtual_size: u64) -> Vec<u8> {
    let mut b = vec![0u8; FILE_LEN];
    b[0..4].copy_from_slice(b"QFI\xfb");
    b[4..8].copy_from_slice(&3u32.to_be_bytes()); // version
    b[20..24].copy_from_slice(&16u32.to_be_bytes()); // cluster_bits: 64 KiB
    b[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    b[96..100].copy_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit
    b[100..104].copy_from_slice(&104u32.to_be_bytes()); // header_length
    let label = format!("pvesim image mirror: {name}");
    b[512..512 + label.len()].copy_from_slice(label.as_bytes());
    // A small LCG: deterministic, different per name.
    let mut x: u64 = name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    });
    for v in b.iter_mut().skip(4096) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *v = (x >> 56) as u8;
    }
    b
}

/// The catalogue (computed on first use).
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let images: Vec<MirrorImage> = IMAGES
            .iter()
            .map(|&(name, size)| {
                let bytes = qcow2_image(name, size);
                MirrorImage {
                    name,
                    file: format!("{name}.qcow2"),
                    virtual_size: size,
                    split: bytes.len() / 2,
                    sha256: sha256_hex(&bytes),
                    bytes,
                }
            })
            .collect();
        let (mut release_sums, mut file_sums) = (String::new(), String::new());
        for i in &images {
            for (part, bytes) in i.parts() {
                let _ = writeln!(release_sums, "{}  {part}", sha256_hex(bytes));
            }
            let _ = writeln!(release_sums, "{}  {}", i.sha256, i.file);
            let _ = writeln!(file_sums, "{}  {}", i.sha256, i.file);
        }
        Catalogue {
            images,
            release_sums,
            file_sums,
        }
    })
}

/// The release listing of `tag`, its assets' URLs under `base`.
pub fn release_listing(base: &str, tag: &str) -> serde_json::Value {
    let cat = catalogue();
    let asset = |name: &str, size: usize| {
        json!({
            "name": name,
            "size": size,
            "content_type": "application/octet-stream",
            "browser_download_url": format!("{base}/download/{name}"),
        })
    };
    let mut assets: Vec<serde_json::Value> = cat
        .images
        .iter()
        .flat_map(|i| i.parts().map(|(n, b)| asset(&n, b.len())))
        .collect();
    assets.push(asset(SUMS, cat.release_sums.len()));
    json!({
        "tag_name": tag,
        "name": format!("pvesim image mirror ({tag})"),
        "draft": false,
        "prerelease": false,
        "assets": assets,
    })
}

/// `http://IP:PORT`.
pub fn url_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("http://{a}"),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}

/// What `GET path` answers: status, content type, body.
fn answer(base: &str, path: &str) -> (StatusCode, &'static str, Bytes) {
    let cat = catalogue();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let json_body = |v: serde_json::Value| {
        (
            StatusCode::OK,
            "application/json; charset=utf-8",
            Bytes::from(v.to_string()),
        )
    };
    let octets = |b: &'static [u8]| {
        (
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from_static(b),
        )
    };
    let text = |t: &'static str| {
        (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(t.as_bytes()),
        )
    };
    match segs.as_slice() {
        ["repos", _, _, "releases", "tags", tag] => json_body(release_listing(base, tag)),
        ["repos", _, _, "releases", "latest"] => json_body(release_listing(base, "latest")),
        ["download", name] if *name == SUMS => text(&cat.release_sums),
        ["download", name] => {
            let part = cat
                .images
                .iter()
                .flat_map(|i| i.parts())
                .find(|(n, _)| n == name);
            match part {
                Some((_, b)) => octets(b),
                None => not_found(),
            }
        }
        ["images", name] if *name == SUMS => text(&cat.file_sums),
        ["images", name] => match cat.image(name) {
            Some(i) => octets(&i.bytes),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> (StatusCode, &'static str, Bytes) {
    (
        StatusCode::NOT_FOUND,
        "application/json; charset=utf-8",
        Bytes::from_static(br#"{"message":"Not Found"}"#),
    )
}

fn respond(base: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let head = req.method() == hyper::Method::HEAD;
    let (status, ctype, body) = if req.method() == hyper::Method::GET || head {
        answer(base, req.uri().path())
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"GET only\n"),
        )
    };
    tracing::debug!(method = %req.method(), path = %req.uri().path(), status = status.as_u16(), "pvesim mirror");
    let len = body.len();
    let mut resp = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    h.insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(len),
    );
    resp
}

/// Serves the mirror on `listener` until `stop` changes.
pub(crate) async fn serve(listener: TcpListener, stop: watch::Receiver<bool>) {
    let base: Arc<str> = match listener.local_addr() {
        Ok(a) => url_of(a).into(),
        Err(e) => {
            tracing::error!("pvesim mirror: {e}");
            return;
        }
    };
    crate::server::accept_loop(listener, stop, "pvesim mirror", move |tcp, peer| {
        let base = base.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let r = respond(&base, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                tracing::debug!(%peer, "pvesim mirror: connection ended: {e}");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_qcow2_of_their_disk_size_and_sums_match() {
        let cat = catalogue();
        assert_eq!(cat.images.len(), IMAGES.len());
        for i in &cat.images {
            assert_eq!(&i.bytes[..4], b"QFI\xfb");
            let mut size = [0u8; 8];
            size.copy_from_slice(&i.bytes[24..32]);
            assert_eq!(u64::from_be_bytes(size), i.virtual_size);
            let [(a, pa), (b, pb)] = i.parts();
            assert_eq!([pa, pb].concat(), i.bytes);
            for (n, bytes) in [(a, pa), (b, pb)] {
                assert!(cat
                    .release_sums
                    .contains(&format!("{}  {n}\n", sha256_hex(bytes))));
            }
            assert!(cat
                .file_sums
                .contains(&format!("{}  {}\n", i.sha256, i.file)));
        }
        // Deterministic and distinct.
        assert_eq!(qcow2_image("debian-12", 3 << 30), cat.images[0].bytes);
        assert_ne!(cat.images[0].sha256, cat.images[1].sha256);
    }

    #[test]
    fn listing_names_two_parts_per_image_and_the_sums() {
        let l = release_listing("http://127.0.0.1:9", "v1");
        assert_eq!(l["tag_name"], "v1");
        let assets = l["assets"].as_array().unwrap();
        assert_eq!(assets.len(), IMAGES.len() * 2 + 1);
        assert_eq!(assets[0]["name"], "debian-12.qcow2.partaa");
        assert_eq!(
            assets[0]["browser_download_url"],
            "http://127.0.0.1:9/download/debian-12.qcow2.partaa"
        );
        assert!(assets.iter().any(|a| a["name"] == SUMS));
    }
}
