//! Templates made on a bare simulated host (`simulated: bare`, a fresh PVE 9) from the
//! site-config's images, served by a loopback HTTP server started here: a 2-part release
//! image with published checksums behind a GitHub-shaped release listing (downloaded by
//! the driver, uploaded to the host) and an upstream-style `url:` + `sha256:` image (fetched
//! by the host itself). The server counts every fetch.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::Driver;

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A loopback HTTP/1.1 server of fixed paths; counts the GETs of each.
struct Server {
    base: String,
    files: Files,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let files: Files = Arc::default();
        let (h, f) = (hits.clone(), files.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                let (files, hits) = (f.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let found = files.lock().unwrap().get(&path).cloned();
                    let (status, body) = match found {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", b"not found".to_vec()),
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body);
                });
            }
        });
        Server { base, files, hits }
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A qcow2 header (a 2 GiB virtual disk), then filler seeded by `seed`.
fn qcow2(len: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[..4].copy_from_slice(b"QFI\xfb");
    b[24..32].copy_from_slice(&(2u64 << 30).to_be_bytes());
    for (i, x) in b.iter_mut().enumerate().skip(32) {
        *x = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    b
}

const PART_A: &str = "/dl/debian-12.qcow2.partaa";
const PART_B: &str = "/dl/debian-12.qcow2.partab";
const UPSTREAM: &str = "/cloud/debian-13-genericcloud-amd64.qcow2";

/// The example site-config whose `debian-12` is a 2-part release on `server` and whose
/// `debian-13` is an upstream image there (`upstream_sum` its claimed SHA-256).
fn site(server: &Server, upstream_sum: Option<&str>) -> Driver {
    let whole = qcow2(3 << 20, 7);
    let (a, b) = whole.split_at(2 << 20);
    let up = qcow2(2 << 20, 9);
    let sums = format!(
        "{}  debian-12.qcow2.partaa\n{}  debian-12.qcow2.partab\n{}  debian-12.qcow2\n",
        sha256_hex(a),
        sha256_hex(b),
        sha256_hex(&whole)
    );
    let asset = |name: &str, size: usize| {
        serde_json::json!({
            "name": name, "size": size,
            "browser_download_url": format!("{}/dl/{name}", server.base),
        })
    };
    let listing = serde_json::json!({
        "tag_name": "v1",
        "assets": [
            asset("debian-12.qcow2.partaa", a.len()),
            asset("debian-12.qcow2.partab", b.len()),
            asset("SHA256SUMS", sums.len()),
        ],
    });
    server.put(
        "/repos/test/packer/releases/tags/v1",
        listing.to_string().into_bytes(),
    );
    server.put(PART_A, a.to_vec());
    server.put(PART_B, b.to_vec());
    server.put("/dl/SHA256SUMS", sums.into_bytes());
    server.put(UPSTREAM, up.clone());
    let d = Driver::example();
    let images = d.site_path().join("images");
    std::fs::write(
        images.join("debian-12.yaml"),
        format!(
            "file: debian-12.qcow2\nrelease: v1\nrepo: test/packer\napi_base: {}\n",
            server.base
        ),
    )
    .unwrap();
    std::fs::write(
        images.join("debian-13.yaml"),
        format!(
            "# Upstream cloud image, fetched by the host itself.\nurl: {}{UPSTREAM}\nfile: debian-13.qcow2\nsha256: {}\n",
            server.base,
            upstream_sum.map_or_else(|| sha256_hex(&up), str::to_string)
        ),
    )
    .unwrap();
    d
}

fn write_manifest(d: &Driver, name: &str, nodes: &[(&str, &str)]) -> String {
    let mut y = format!("schema_version: 2\nname: {name}\nnodes:\n");
    for (n, image) in nodes {
        y.push_str(&format!(
            "  - {{name: {n}, type: vm, preset: vm-small, image: {image}}}\n"
        ));
    }
    let path = d.site_path().join(format!("{name}.yaml"));
    std::fs::write(&path, y).unwrap();
    path.display().to_string()
}

/// Templates in the bare simulator's saved state, by name.
fn templates(state: &Path) -> Vec<String> {
    let mut t: Vec<String> = sim::saved_guests(&state.join("pvesim-sim-bare"))
        .unwrap()
        .into_iter()
        .filter(|g| g.template)
        .map(|g| g.name)
        .collect();
    t.sort();
    t
}

#[test]
fn a_bare_host_gets_its_templates_once_and_a_second_run_reuses_them() {
    let server = Server::start();
    let d = site(&server, None);
    let m = write_manifest(&d, "two-images", &[("a", "debian-12"), ("b", "debian-13")]);
    let r = d
        .run(&["test", "--manifest-file", &m, "-H", "sim-bare"])
        .ok();
    eprintln!("{}\n{}", r.stdout, r.stderr);
    assert_eq!(templates(d.state_path()), ["debian-12", "debian-13"]);
    assert_eq!(server.hits(PART_A), 1);
    assert_eq!(server.hits(PART_B), 1);
    assert_eq!(server.hits(UPSTREAM), 1);
    d.run(&["test", "--manifest-file", &m, "-H", "sim-bare"])
        .ok();
    assert_eq!(
        server.hits(PART_A) + server.hits(PART_B) + server.hits(UPSTREAM),
        3
    );
    assert_eq!(templates(d.state_path()), ["debian-12", "debian-13"]);
}
