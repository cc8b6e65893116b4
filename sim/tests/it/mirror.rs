//! A bare pvesim's image mirror: published in `pvesim.json`, a GitHub-shaped release whose
//! split parts and `SHA256SUMS` fit together into qcow2 files of the images' disk sizes, the
//! same files upstream-style under `/images/`, and the host's own `download-url` fetching
//! one of them and importing it at its virtual size. A seeded host serves none.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sim::SimConfig;

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(30);

/// `GET url` over plain HTTP: status and body.
async fn get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `sha256sum` lines as name → hex.
fn sums(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, n)| (n.to_string(), h.to_string()))
        .collect()
}

fn virtual_size(b: &[u8]) -> u64 {
    assert_eq!(&b[..4], b"QFI\xfb", "not a qcow2 file");
    u64::from_be_bytes(b[24..32].try_into().unwrap())
}

#[tokio::test]
async fn a_bare_host_serves_its_images_as_release_parts_and_upstream_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        bare: true,
        state_dir: Some(dir.path().to_path_buf()),
        ..crate::common::config()
    };
    let (h, c) = crate::common::start(cfg).await;
    let base = h.images_mirror_url().expect("a bare host has a mirror");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    // Published beside the API's endpoint, with each file's SHA-256.
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("pvesim.json")).unwrap())
            .unwrap();
    assert_eq!(info["images_mirror"]["url"], base.as_str());
    let published = info["images_mirror"]["sha256"].as_object().unwrap().clone();
    let names: Vec<&str> = published.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "debian-12.qcow2",
            "debian-13-pve.qcow2",
            "debian-13.qcow2",
            "pve-9.qcow2"
        ]
    );

    // The release, by tag and as the latest: two parts per image and the checksums.
    for listing in [
        format!("{base}/repos/homestak-dev/packer/releases/tags/v0.9"),
        format!("{base}/repos/homestak-dev/packer/releases/latest"),
    ] {
        let (status, body) = get(&listing).await;
        assert_eq!(status, 200, "{listing}");
        let release: Value = serde_json::from_slice(&body).unwrap();
        let assets = release["assets"].as_array().unwrap();
        assert_eq!(assets.len(), 9, "{release}");
    }
    let (_, body) = get(&format!("{base}/repos/a/b/releases/tags/v0.9")).await;
    let release: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(release["tag_name"], "v0.9");
    let url_of = |name: &str| {
        release["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no asset {name}: {release}"))["browser_download_url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (status, text) = get(&url_of("SHA256SUMS")).await;
    assert_eq!(status, 200);
    let release_sums = sums(&String::from_utf8(text).unwrap());
    let (_, text) = get(&format!("{base}/images/SHA256SUMS")).await;
    let file_sums = sums(&String::from_utf8(text).unwrap());
    for (file, size) in [
        ("debian-12.qcow2", 3u64 << 30),
        ("debian-13.qcow2", 3 << 30),
        ("debian-13-pve.qcow2", 8 << 30),
        ("pve-9.qcow2", 16 << 30),
    ] {
        let mut whole = Vec::new();
        for part in ["partaa", "partab"] {
            let name = format!("{file}.{part}");
            let url = url_of(&name);
            assert!(url.starts_with(&base), "{url}");
            let (status, bytes) = get(&url).await;
            assert_eq!(status, 200, "{url}");
            assert!(!bytes.is_empty());
            assert_eq!(release_sums[&name], sha256_hex(&bytes), "{name}");
            whole.extend(bytes);
        }
        let sum = sha256_hex(&whole);
        assert_eq!(release_sums[file], sum);
        assert_eq!(file_sums[file], sum);
        assert_eq!(published[file], sum.as_str());
        assert_eq!(virtual_size(&whole), size, "{file}");
        assert!(whole.len() < 1 << 20, "{file} is small");
        // The same bytes upstream-style.
        let (status, upstream) = get(&format!("{base}/images/{file}")).await;
        assert_eq!(status, 200);
        assert_eq!(upstream, whole, "{file}");
    }
    assert_eq!(get(&format!("{base}/images/nope.qcow2")).await.0, 404);
    assert_eq!(get(&format!("{base}/download/nope")).await.0, 404);

    // The host fetches one itself and imports it at its disk size.
    let url = format!("{base}/images/debian-13-pve.qcow2");
    let r = c
        .post(
            &format!("/nodes/{NODE}/storage/local/download-url"),
            &[
                ("url", &url),
                ("content", "import"),
                ("filename", "debian-13-pve.qcow2"),
                (
                    "checksum",
                    published["debian-13-pve.qcow2"].as_str().unwrap(),
                ),
                ("checksum-algorithm", "sha256"),
            ],
        )
        .await;
    let st = c.wait_task(NODE, &r.upid(), WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu"),
            &[
                ("vmid", "9000"),
                ("name", "debian-13-pve"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/debian-13-pve.qcow2",
                ),
            ],
        )
        .await;
    assert_eq!(c.wait_task(NODE, &r.upid(), WAIT).await["exitstatus"], "OK");
    let cfg = c.get(&format!("/nodes/{NODE}/qemu/9000/config")).await;
    assert_eq!(cfg.ok()["scsi0"], "local-lvm:vm-9000-disk-0,size=8G");
    h.shutdown().await;
}

#[tokio::test]
async fn a_seeded_host_has_no_mirror() {
    let (h, _) = crate::common::start(crate::common::config()).await;
    assert_eq!(h.images_mirror_url(), None);
    h.shutdown().await;
}
