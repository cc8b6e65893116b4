//! `driver images download` against a local HTTP server (Python's) serving
//! a release listing and an image split in parts with a SHA256SUMS file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::Driver;

#[test]
fn downloads_split_parts_checks_and_joins_them_then_skips() {
    let d = Driver::new();
    let root = d.site_path().join("srv");
    let part_a = vec![b'a'; 300_000];
    let part_b = vec![b'b'; 123_456];
    let whole: Vec<u8> = [part_a.clone(), part_b.clone()].concat();
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::write(root.join("files/img.qcow2.partaa"), &part_a).unwrap();
    std::fs::write(root.join("files/img.qcow2.partab"), &part_b).unwrap();
    let sum = Command::new("sha256sum")
        .arg(root.join("files/img.qcow2.partaa"))
        .output()
        .unwrap();
    let sum_a = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let sum = Command::new("sha256sum")
        .arg(root.join("files/img.qcow2.partab"))
        .output()
        .unwrap();
    let sum_b = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        root.join("files/SHA256SUMS"),
        format!("{sum_a}  img.qcow2.partaa\n{sum_b}  img.qcow2.partab\n"),
    )
    .unwrap();

    let mut server = Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 43215 (http://127.0.0.1:43215/) ..."
    let port: u16 = line
        .split_whitespace()
        .nth(5)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let base = format!("http://127.0.0.1:{port}");
    let asset = |name: &str, size: usize| serde_json::json!({"name": name, "size": size, "browser_download_url": format!("{base}/files/{name}")});
    let release = serde_json::json!({
        "tag_name": "v1",
        "assets": [asset("img.qcow2.partaa", part_a.len()), asset("img.qcow2.partab", part_b.len()), asset("SHA256SUMS", 200)]
    });
    std::fs::create_dir_all(root.join("repos/o/r/releases/tags")).unwrap();
    std::fs::write(root.join("repos/o/r/releases/tags/v1"), release.to_string()).unwrap();

    let dest = d.site_path().join("images");
    let args = [
        "images",
        "download",
        "img.qcow2",
        "--release",
        "v1",
        "--repo",
        "o/r",
        "--api-base",
        &base,
        "--dest",
        dest.to_str().unwrap(),
        "--json-output",
    ];
    let out = d.run(&args).ok().json();
    assert_eq!(out["parts"], 2, "{out}");
    assert_eq!(out["skipped"], false);
    assert_eq!(out["verified"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(std::fs::read(dest.join("img.qcow2")).unwrap(), whole);
    let leftovers: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "parts cleaned up: {leftovers:?}");
    let again = d.run(&args).ok().json();
    assert_eq!(again["skipped"], true);
    let _ = server.kill();
    let _ = server.wait();
}
