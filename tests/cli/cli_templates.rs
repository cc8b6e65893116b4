//! Templates made on a bare simulated host (`simulated: bare`, a fresh PVE 9) from the
//! site-config's images, served by a loopback HTTP server started here: a 2-part release
//! image with published checksums behind a GitHub-shaped release listing (downloaded by
//! the driver, uploaded to the host) and an upstream-style `url:` + `sha256:` image (fetched
//! by the host itself). The server counts every fetch.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::Driver;

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

#[test]
fn ten_nodes_waiting_for_one_missing_image_cause_one_fetch() {
    let server = Server::start();
    let d = site(&server, None);
    let nodes: Vec<(String, &str)> = (0..10).map(|i| (format!("n{i}"), "debian-13")).collect();
    let refs: Vec<(&str, &str)> = nodes.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    let m = write_manifest(&d, "ten", &refs);
    let r = d
        .run(&[
            "create",
            "--manifest-file",
            &m,
            "-H",
            "sim-bare",
            "--json-output",
        ])
        .ok();
    let _ = r;
    assert_eq!(server.hits(UPSTREAM), 1);
    assert_eq!(templates(d.state_path()), ["debian-13"]);
    d.run(&["destroy", "--manifest-file", &m, "-H", "sim-bare", "--yes"])
        .ok();
    // Templates are shared by every state: a destroy leaves them.
    assert_eq!(templates(d.state_path()), ["debian-13"]);
}

#[test]
fn a_wrong_checksum_names_image_url_and_both_sums_and_leaves_no_template() {
    let server = Server::start();
    let wrong = "ab".repeat(32);
    let d = site(&server, Some(&wrong));
    let m = write_manifest(&d, "bad", &[("a", "debian-13")]);
    let r = d
        .run(&["create", "--manifest-file", &m, "-H", "sim-bare"])
        .code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    let actual = sha256_hex(&qcow2(2 << 20, 9));
    assert!(all.contains("image 'debian-13'"), "{all}");
    assert!(all.contains(&format!("{}{UPSTREAM}", server.base)), "{all}");
    assert!(all.contains(&wrong) && all.contains(&actual), "{all}");
    assert!(templates(d.state_path()).is_empty());
    // Nothing half-made: no VM of that name, no file in the storage.
    let guests = sim::saved_guests(&d.state_path().join("pvesim-sim-bare")).unwrap();
    assert!(guests.iter().all(|g| g.name != "debian-13"), "{guests:?}");
    let stored = d.state_path().join("pvesim-sim-bare/storage/local/import");
    let left: Vec<_> = std::fs::read_dir(&stored)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn images_ensure_and_preflight_report_and_make_templates() {
    let server = Server::start();
    let d = site(&server, None);
    std::fs::create_dir_all(d.site_path().join("manifests")).unwrap();
    std::fs::write(
        d.site_path().join("manifests/pair.yaml"),
        "schema_version: 2\nname: pair\nnodes:\n\
         - {name: a, type: vm, preset: vm-small, image: debian-12}\n\
         - {name: b, type: vm, preset: vm-small, image: pve-9}\n",
    )
    .unwrap();
    // pve-9 has a release file but the server has no such release: it is still "known".
    let pre = d
        .run(&["preflight", "-H", "sim-bare", "-M", "pair", "--json-output"])
        .ok();
    let checks = pre.json();
    let tpl: Vec<&serde_json::Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "template")
        .collect();
    assert_eq!(tpl.len(), 2, "{checks}");
    assert!(
        tpl[0]["detail"]
            .as_str()
            .unwrap()
            .contains("`driver images ensure -H sim-bare debian-12`"),
        "{checks}"
    );
    let r = d
        .run(&[
            "images",
            "ensure",
            "-H",
            "sim-bare",
            "debian-12",
            "--json-output",
        ])
        .ok();
    let out = r.json();
    assert_eq!(out[0]["image"], "debian-12", "{out}");
    assert_eq!(out[0]["outcome"], "made", "{out}");
    let again = d
        .run(&[
            "images",
            "ensure",
            "-H",
            "sim-bare",
            "debian-12",
            "--json-output",
        ])
        .ok();
    assert_eq!(again.json()[0]["outcome"], "present");
    assert_eq!(server.hits(PART_A), 1);
    let pre = d.run(&["preflight", "-H", "sim-bare", "-M", "pair"]).ok();
    assert!(
        pre.stdout.contains("qemu template 'debian-12': vmid"),
        "{}",
        pre.stdout
    );
    // An image whose file says nothing usable: the one failing check, with why.
    std::fs::write(
        d.site_path().join("manifests/orphan.yaml"),
        "schema_version: 2\nname: orphan\nnodes:\n- {name: a, type: vm, preset: vm-small, image: debian-13}\n",
    )
    .unwrap();
    std::fs::write(
        d.site_path().join("images/debian-13.yaml"),
        format!("url: {}{UPSTREAM}\n", server.base),
    )
    .unwrap();
    let pre = d.run(&["preflight", "-H", "sim-bare", "-M", "orphan"]);
    assert_eq!(pre.code, 1, "{}{}", pre.stdout, pre.stderr);
    assert!(pre.stdout.contains("FAIL template"), "{}", pre.stdout);
    assert!(pre.stdout.contains("needs its checksum"), "{}", pre.stdout);
}

#[test]
fn unknown_keys_in_image_files_are_refused_with_a_hint() {
    let server = Server::start();
    let d = site(&server, None);
    std::fs::write(
        d.site_path().join("images/debian-12.yaml"),
        "file: debian-12.qcow2\nrelase: v1\n",
    )
    .unwrap();
    let r = d.run(&["validate", "--all"]);
    let all = crate::common::flat(&format!("{}{}", r.stdout, r.stderr));
    assert_ne!(r.code, 0, "{all}");
    assert!(
        all.contains("unknown key 'relase'") && all.contains("did you mean 'release'"),
        "{all}"
    );
    let r = d.run(&["config", "show"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("unknown key 'relase'"), "{all}");
}
