//! Release-image download against a small HTTP/1.1 server on 127.0.0.1
//! that speaks GitHub's release listing, serves byte ranges, and can drop
//! a connection mid-transfer or corrupt a part.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use actions::download::{self, DownloadError, ImageDownload, Phase, Progress, ReleaseSource};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    /// tag → asset names.
    releases: HashMap<String, Vec<String>>,
    /// asset → offset at which the next transfer is cut (once).
    drop_once_at: HashMap<String, usize>,
    corrupt_once: HashSet<String>,
    corrupt_always: HashSet<String>,
    /// (path, Range header) of every request.
    requests: Vec<(String, Option<String>)>,
}

struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(sock, addr, st).await;
                });
            }
        });
        Server { addr, state }
    }

    fn source(&self) -> ReleaseSource {
        ReleaseSource {
            api_base: format!("http://{}/api", self.addr),
            repo: "homestak-dev/packer".into(),
            token: None,
        }
    }

    fn publish(&self, tag: &str, files: Vec<(String, Vec<u8>)>) {
        let mut s = self.state.lock().expect("lock");
        let names = files.iter().map(|(n, _)| n.clone()).collect();
        s.releases.insert(tag.into(), names);
        for (n, d) in files {
            s.files.insert(n, d);
        }
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().expect("lock").requests.clone()
    }
}

async fn handle(sock: TcpStream, addr: SocketAddr, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut r = BufReader::new(sock);
    let mut request_line = String::new();
    r.read_line(&mut request_line).await?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range: Option<String> = None;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await? == 0 || l.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let mut sock = r.into_inner();
    st.lock()
        .expect("lock")
        .requests
        .push((path.clone(), range.clone()));

    if let Some(tag) = path.strip_prefix("/api/repos/homestak-dev/packer/releases/tags/") {
        let body = {
            let s = st.lock().expect("lock");
            s.releases.get(tag).map(|names| {
                let assets: Vec<_> = names
                    .iter()
                    .map(|n| {
                        json!({"name": n, "size": s.files[n].len(), "content_type": "application/octet-stream",
                               "browser_download_url": format!("http://{addr}/dl/{n}")})
                    })
                    .collect();
                json!({"tag_name": tag, "name": tag, "assets": assets}).to_string()
            })
        };
        return match body {
            Some(b) => {
                respond(
                    &mut sock,
                    "200 OK",
                    &[("Content-Type", "application/json".into())],
                    b.as_bytes(),
                )
                .await
            }
            None => {
                respond(
                    &mut sock,
                    "404 Not Found",
                    &[],
                    b"{\"message\":\"Not Found\"}",
                )
                .await
            }
        };
    }
    let Some(name) = path.strip_prefix("/dl/") else {
        return respond(&mut sock, "404 Not Found", &[], b"").await;
    };
    let found = {
        let mut s = st.lock().expect("lock");
        s.files.get(name).cloned().map(|mut data| {
            if s.corrupt_always.contains(name) || s.corrupt_once.remove(name) {
                let mid = data.len() / 2;
                data[mid] ^= 0xff;
            }
            (data, s.drop_once_at.remove(name))
        })
    };
    let Some((data, cut)) = found else {
        return respond(&mut sock, "404 Not Found", &[], b"").await;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, from, mut headers) = match start {
        Some(s) if s < data.len() => (
            "206 Partial Content",
            s,
            vec![(
                "Content-Range",
                format!("bytes {s}-{}/{}", data.len() - 1, data.len()),
            )],
        ),
        Some(_) => {
            return respond(&mut sock, "416 Range Not Satisfiable", &[], b"").await;
        }
        None => ("200 OK", 0, vec![]),
    };
    headers.push(("Accept-Ranges", "bytes".into()));
    let body = &data[from..];
    match cut {
        // Promise the whole body, send part of it, hang up.
        Some(at) if at > from => {
            let head = head(status, &headers, body.len());
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&data[from..at]).await?;
            sock.flush().await?;
            sock.shutdown().await?;
            Ok(())
        }
        _ => respond(&mut sock, status, &headers, body).await,
    }
}

fn head(status: &str, headers: &[(&str, String)], len: usize) -> String {
    let mut h = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    sock.write_all(head(status, headers, body.len()).as_bytes())
        .await?;
    sock.write_all(body).await?;
    sock.flush().await?;
    sock.shutdown().await
}

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const IMAGE: &str = "debian-13-pve.qcow2";

/// A 250 KB "image" split in 100 KB parts (aa, ab, ac), with SHA256SUMS.
fn split_image() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let image: Vec<u8> = (0..250_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = image
        .chunks(100_000)
        .enumerate()
        .map(|(i, c)| {
            (
                format!("{IMAGE}.parta{}", (b'a' + i as u8) as char),
                c.to_vec(),
            )
        })
        .collect();
    let mut sums = String::new();
    for (n, d) in &files {
        sums.push_str(&format!("{}  {n}\n", sha256(d)));
    }
    sums.push_str(&format!("{}  {IMAGE}\n", sha256(&image)));
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    files.push(("debian-12.qcow2".into(), b"another image".to_vec()));
    (image, files)
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != IMAGE)
        .collect()
}

#[tokio::test]
async fn split_parts_resume_after_a_dropped_connection_and_reassemble() {
    let server = Server::start().await;
    let (image, files) = split_image();
    server.publish("v0.8.0-rc1", files);
    server
        .state
        .lock()
        .expect("lock")
        .drop_once_at
        .insert(format!("{IMAGE}.partab"), 40_000);
    let dest = tempfile::tempdir().expect("tempdir");
    let tag = download::resolve_tag(Some("v0.8.0-rc1"), Some("v0.7.0"));
    let req = ImageDownload::new(server.source(), tag, IMAGE, dest.path());
    let mut events: Vec<Progress> = Vec::new();
    let out = download::download_image(&req, |p| events.push(p.clone()))
        .await
        .expect("download");

    assert!(!out.skipped);
    assert_eq!(out.parts, 3);
    assert_eq!(out.bytes, image.len() as u64);
    assert_eq!(out.tag, "v0.8.0-rc1");
    assert_eq!(
        std::fs::read(dest.path().join(IMAGE)).expect("image"),
        image
    );
    assert_eq!(
        out.verified,
        vec![
            format!("{IMAGE}.partaa"),
            format!("{IMAGE}.partab"),
            format!("{IMAGE}.partac"),
            IMAGE.to_string()
        ]
    );
    assert!(
        leftovers(dest.path()).is_empty(),
        "parts cleaned up: {:?}",
        leftovers(dest.path())
    );

    // partab: cut at 40 000 bytes, then resumed with a Range request.
    let reqs = server.requests();
    let ab: Vec<_> = reqs
        .iter()
        .filter(|(p, _)| p.ends_with(".partab"))
        .collect();
    assert_eq!(ab.len(), 2, "{reqs:?}");
    assert_eq!(ab[0].1, None);
    let resumed_at: usize = ab[1]
        .1
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("a Range request");
    assert!(resumed_at > 0 && resumed_at <= 40_000, "{resumed_at}");
    // The listing asked for the CLI's tag.
    assert!(reqs[0].0.ends_with("/releases/tags/v0.8.0-rc1"));
    // Nothing else was fetched (e.g. the other image).
    assert!(!reqs.iter().any(|(p, _)| p.contains("debian-12")));

    // Progress: parts in order, bytes reaching the total, then done.
    assert_eq!(events.first().map(|e| e.part), Some(1));
    assert!(events
        .iter()
        .all(|e| e.parts == 3 && e.bytes_total == image.len() as u64));
    let last = events.last().expect("events");
    assert_eq!(last.phase, Phase::Done);
    assert_eq!(last.bytes_done, image.len() as u64);
    assert!(events.iter().any(|e| e.phase == Phase::Verifying));
    assert!(events.iter().any(|e| e.phase == Phase::Assembling));

    // Present now: the next run skips, without a single request.
    let before = server.requests().len();
    let again = download::download_image(&req, |_| {}).await.expect("skip");
    assert!(again.skipped);
    assert_eq!(server.requests().len(), before);
}

#[tokio::test]
async fn corrupted_part_is_detected_by_checksum() {
    let server = Server::start().await;
    let (_image, files) = split_image();
    server.publish("latest", files);
    server
        .state
        .lock()
        .expect("lock")
        .corrupt_always
        .insert(format!("{IMAGE}.partab"));
    let dest = tempfile::tempdir().expect("tempdir");
    let req = ImageDownload::new(
        server.source(),
        download::resolve_tag(None, None),
        IMAGE,
        dest.path(),
    );
    let e = download::download_image(&req, |_| {})
        .await
        .expect_err("corrupt");
    match &e {
        DownloadError::ChecksumMismatch {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, &format!("{IMAGE}.partab"));
            assert_ne!(expected, actual);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("SHA-256 mismatch"));
    // No image, and the bad part is not kept for a later resume.
    assert!(!dest.path().join(IMAGE).exists());
    assert!(!dest
        .path()
        .join(format!("{IMAGE}.partab.download"))
        .exists());
    // It was fetched twice (one clean retry) before giving up.
    let n = server
        .requests()
        .iter()
        .filter(|(p, _)| p.ends_with(".partab"))
        .count();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn a_corrupted_transfer_is_fetched_again() {
    let server = Server::start().await;
    let (image, files) = split_image();
    server.publish("latest", files);
    server
        .state
        .lock()
        .expect("lock")
        .corrupt_once
        .insert(format!("{IMAGE}.partac"));
    let dest = tempfile::tempdir().expect("tempdir");
    let req = ImageDownload::new(server.source(), "latest", IMAGE, dest.path());
    let out = download::download_image(&req, |_| {})
        .await
        .expect("second try is good");
    assert_eq!(std::fs::read(&out.path).expect("image"), image);
    let ac: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".partac"))
        .collect();
    assert_eq!(ac.len(), 2);
    assert!(
        ac.iter().all(|(_, r)| r.is_none()),
        "the retry starts from scratch: {ac:?}"
    );
}

#[tokio::test]
async fn a_partial_part_from_an_earlier_run_is_resumed() {
    let server = Server::start().await;
    let (image, files) = split_image();
    server.publish("latest", files);
    let dest = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dest.path().join(format!("{IMAGE}.partaa.download")),
        &image[..10_000],
    )
    .expect("partial");
    let req = ImageDownload::new(server.source(), "latest", IMAGE, dest.path());
    download::download_image(&req, |_| {})
        .await
        .expect("download");
    assert_eq!(
        std::fs::read(dest.path().join(IMAGE)).expect("image"),
        image
    );
    let aa: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".partaa"))
        .collect();
    assert_eq!(
        aa,
        vec![(
            format!("/dl/{IMAGE}.partaa"),
            Some("bytes=10000-".to_string())
        )]
    );
}

#[tokio::test]
async fn single_asset_without_checksums_and_missing_things() {
    let server = Server::start().await;
    server.publish("v1", vec![("small.img".into(), b"tiny image".to_vec())]);
    let dest = tempfile::tempdir().expect("tempdir");
    let out = download::download_image(
        &ImageDownload::new(server.source(), "v1", "small.img", dest.path()),
        |_| {},
    )
    .await
    .expect("download");
    assert_eq!(out.parts, 1);
    assert!(
        out.verified.is_empty(),
        "nothing published to verify against"
    );
    assert_eq!(
        std::fs::read(dest.path().join("small.img")).expect("file"),
        b"tiny image"
    );
    assert!(!dest.path().join("small.img.download").exists());

    let e = download::download_image(
        &ImageDownload::new(server.source(), "v9", "small.img", dest.path().join("x")),
        |_| {},
    )
    .await
    .expect_err("no such release");
    assert!(
        matches!(e, DownloadError::ReleaseNotFound { ref tag, .. } if tag == "v9"),
        "{e:?}"
    );

    let e = download::download_image(
        &ImageDownload::new(server.source(), "v1", "other.img", dest.path()),
        |_| {},
    )
    .await
    .expect_err("no such asset");
    assert!(matches!(e, DownloadError::AssetNotFound { .. }), "{e:?}");
    assert!(
        e.to_string().contains("small.img"),
        "lists what exists: {e}"
    );
}
