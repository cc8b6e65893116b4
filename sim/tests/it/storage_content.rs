//! A bare pvesim (a fresh PVE 9 install) and file-based storage content: what `local`
//! holds, `download-url` fetching from a loopback HTTP server (checksums, redirects, task
//! log progress, nothing left after a failure), streamed multipart `upload` past the API's
//! body limit, a VM made from an imported disk (`import-from`) and made a template.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{start, Client};
use serde_json::Value;
use sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(30);

fn bare() -> SimConfig {
    SimConfig {
        bare: true,
        ..crate::common::config()
    }
}

/// A loopback HTTP/1.1 server for fixed files; counts the GETs of each path.
struct Files {
    base: String,
    hits: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

impl Files {
    async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> Files {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<HashMap<String, Vec<u8>>> =
            Arc::new(files.into_iter().map(|(p, b)| (p.to_string(), b)).collect());
        let hits = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let files = files.clone();
                let hits = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let resp = if let Some(to) = path.strip_prefix("/moved") {
                        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
                    } else if let Some(body) = files.get(&path) {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    } else {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    };
                    let _ = s.write_all(&resp).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Files { base, hits }
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

/// A qcow2 header claiming a 2 GiB virtual disk, then filler.
fn qcow2(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[..4].copy_from_slice(b"QFI\xfb");
    b[24..32].copy_from_slice(&(2u64 << 30).to_be_bytes());
    for (i, x) in b.iter_mut().enumerate().skip(32) {
        *x = (i % 251) as u8;
    }
    b
}

async fn content(c: &Client, kind: &str) -> Vec<Value> {
    c.get(&format!(
        "/nodes/{NODE}/storage/local/content?content={kind}"
    ))
    .await
    .ok()
    .as_array()
    .unwrap()
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_host_has_no_templates_and_empty_storages() {
    let (h, c) = start(bare()).await;
    let vms = c.get(&format!("/nodes/{NODE}/qemu")).await;
    assert_eq!(vms.ok().as_array().unwrap().len(), 0);
    let cts = c.get(&format!("/nodes/{NODE}/lxc")).await;
    assert_eq!(cts.ok().as_array().unwrap().len(), 0);
    let all = c.get(&format!("/nodes/{NODE}/storage/local/content")).await;
    assert_eq!(all.ok().as_array().unwrap().len(), 0, "{:?}", all.body);
    let st = c.get(&format!("/nodes/{NODE}/storage?storage=local")).await;
    assert_eq!(st.ok()[0]["content"], "backup,import,iso,vztmpl");
    // The seeded simulator is an older install: no `import` there.
    let (h2, c2) = start(crate::common::config()).await;
    let st = c2
        .get(&format!("/nodes/{NODE}/storage?storage=local"))
        .await;
    assert_eq!(st.ok()[0]["content"], "backup,iso,snippets,vztmpl");
    let r = c2
        .post(
            &format!("/nodes/{NODE}/storage/local/download-url"),
            &[
                ("url", "http://127.0.0.1:9/x.qcow2"),
                ("content", "import"),
                ("filename", "x.qcow2"),
            ],
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.message()
            .contains("not configured for content-type 'import'"),
        "{}",
        r.message()
    );
    h.shutdown().await;
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_url_fetches_checks_and_stores_then_a_vm_imports_it_and_becomes_a_template() {
    let image = qcow2(3 << 20);
    let sum = sha256_hex(&image);
    let files = Files::serve(vec![("/img/deb.qcow2", image.clone())]).await;
    let (h, c) = start(bare()).await;
    // Through a redirect, as mirrors answer.
    let url = format!("{}/moved/img/deb.qcow2", files.base);
    let r = c
        .post(
            &format!("/nodes/{NODE}/storage/local/download-url"),
            &[
                ("url", &url),
                ("content", "import"),
                ("filename", "deb.qcow2"),
                ("checksum", &sum),
                ("checksum-algorithm", "sha256"),
            ],
        )
        .await;
    let upid = r.upid();
    assert!(upid.contains(":download:deb.qcow2:"), "{upid}");
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let log = c.task_log(NODE, &upid).await;
    assert!(
        log[0].starts_with(&format!("downloading {url} to ")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("(100.00%)")), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("checksum verified")),
        "{log:?}"
    );
    assert_eq!(files.hits("/img/deb.qcow2"), 1);
    let vols = content(&c, "import").await;
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0]["volid"], "local:import/deb.qcow2");
    assert_eq!(vols[0]["format"], "qcow2");
    assert_eq!(vols[0]["size"], image.len() as u64);

    // A VM from it: the new disk has the image's virtual size, the option is not kept.
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu"),
            &[
                ("vmid", "9000"),
                ("name", "debian-12"),
                ("scsi0", "local-lvm:0,import-from=local:import/deb.qcow2"),
                ("ide2", "local-lvm:cloudinit"),
                ("serial0", "socket"),
                ("vga", "serial0"),
                ("agent", "1"),
                ("boot", "order=scsi0"),
            ],
        )
        .await;
    let st = c.wait_task(NODE, &r.upid(), WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let cfg = c.get(&format!("/nodes/{NODE}/qemu/9000/config")).await;
    let scsi0 = cfg.ok()["scsi0"].as_str().unwrap().to_string();
    assert_eq!(scsi0, "local-lvm:vm-9000-disk-0,size=2G");
    let r = c
        .post(&format!("/nodes/{NODE}/qemu/9000/template"), &[])
        .await;
    let upid = r.upid();
    assert!(upid.contains(":qmtemplate:9000:"), "{upid}");
    assert_eq!(c.wait_task(NODE, &upid, WAIT).await["exitstatus"], "OK");
    let cfg = c.get(&format!("/nodes/{NODE}/qemu/9000/config")).await;
    assert_eq!(cfg.ok()["template"], 1);
    assert_eq!(cfg.ok()["scsi0"], "local-lvm:base-9000-disk-0,size=2G");
    let again = c
        .post(&format!("/nodes/{NODE}/qemu/9000/template"), &[])
        .await;
    assert_eq!(
        again.message(),
        "you can't convert a template to a template\n"
    );
    // A linked clone builds on it.
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu/9000/clone"),
            &[("newid", "101"), ("name", "a")],
        )
        .await;
    assert_eq!(c.wait_task(NODE, &r.upid(), WAIT).await["exitstatus"], "OK");

    // A volume that is not there, and the wrong syntax.
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu"),
            &[
                ("vmid", "9001"),
                ("scsi0", "local-lvm:0,import-from=local:import/nope.qcow2"),
            ],
        )
        .await;
    assert_eq!(
        r.message(),
        "volume 'local:import/nope.qcow2' does not exist\n"
    );
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu"),
            &[
                ("vmid", "9001"),
                ("scsi0", "local-lvm:4,import-from=local:import/deb.qcow2"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_fails_the_task_and_leaves_nothing() {
    let files = Files::serve(vec![("/a.qcow2", qcow2(1 << 20))]).await;
    let (h, c) = start(bare()).await;
    let wrong = "0".repeat(64);
    let r = c
        .post(
            &format!("/nodes/{NODE}/storage/local/download-url"),
            &[
                ("url", &format!("{}/a.qcow2", files.base)),
                ("content", "import"),
                ("filename", "a.qcow2"),
                ("checksum", &wrong),
                ("checksum-algorithm", "sha256"),
            ],
        )
        .await;
    let st = c.wait_task(NODE, &r.upid(), WAIT).await;
    let exit = st["exitstatus"].as_str().unwrap();
    assert!(exit.starts_with("checksum mismatch: got '"), "{st}");
    assert!(exit.contains(&format!("!= expect '{wrong}'")), "{st}");
    assert!(content(&c, "import").await.is_empty());
    let dir = std::fs::read_dir(std::env::temp_dir()).unwrap();
    // Nothing half-written left in the storage folder either (hidden temporaries included).
    let leftovers: Vec<_> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("pvesim-storage-")
        })
        .flat_map(|e| walk(&e.path()))
        .filter(|p| p.to_string_lossy().contains("a.qcow2"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Parameter checks before any task, in PVE's words.
    let bad_ext = c
        .post(
            &format!("/nodes/{NODE}/storage/local/download-url"),
            &[
                ("url", &format!("{}/a.qcow2", files.base)),
                ("content", "import"),
                ("filename", "a.img"),
            ],
        )
        .await;
    assert_eq!(bad_ext.status, 400);
    assert_eq!(
        bad_ext.body["errors"]["filename"],
        "invalid filename or wrong extension"
    );
    let lvm = c
        .post(
            &format!("/nodes/{NODE}/storage/local-lvm/download-url"),
            &[
                ("url", &format!("{}/a.qcow2", files.base)),
                ("content", "import"),
                ("filename", "a.qcow2"),
            ],
        )
        .await;
    assert!(
        lvm.message().contains("not a file based storage"),
        "{}",
        lvm.message()
    );
    h.shutdown().await;
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_body_limit_is_streamed_into_storage() {
    let (h, c) = start(bare()).await;
    // 3 MiB of text: beyond the 1 MiB the API reads for parameters.
    let data: String = (0..3 << 20)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let sum = sha256_hex(data.as_bytes());
    let boundary = "----pvesimtest7d1";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nimport\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"checksum-algorithm\"\r\n\r\nsha256\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"checksum\"\r\n\r\n{sum}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"up.raw\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{data}\r\n--{boundary}--\r\n"
    );
    let r = c
        .request(
            "POST",
            &format!("/nodes/{NODE}/storage/local/upload"),
            Some((&format!("multipart/form-data; boundary={boundary}"), body)),
        )
        .await;
    let upid = r.upid();
    assert!(upid.contains(":imgcopy:"), "{upid}");
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let vols = content(&c, "import").await;
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0]["volid"], "local:import/up.raw");
    assert_eq!(vols[0]["size"], data.len() as u64);
    let log = c.task_log(NODE, &upid).await;
    assert!(
        log.iter().any(|l| l.contains("checksum verified")),
        "{log:?}"
    );
    // The same name again: pve-storage's upload overwrites the file (only download-url
    // refuses to), so an upload sent twice ends as the second.
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nimport\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"up.raw\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nshorter\r\n--{boundary}--\r\n"
    );
    let r = c
        .request(
            "POST",
            &format!("/nodes/{NODE}/storage/local/upload"),
            Some((&format!("multipart/form-data; boundary={boundary}"), body)),
        )
        .await;
    let st = c.wait_task(NODE, &r.upid(), WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let vols = content(&c, "import").await;
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0]["size"], 7, "{vols:?}");
    // No content type given: refused, the temporary file removed.
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"b.raw\"\r\n\r\nxyz\r\n--{boundary}--\r\n"
    );
    let r = c
        .request(
            "POST",
            &format!("/nodes/{NODE}/storage/local/upload"),
            Some((&format!("multipart/form-data; boundary={boundary}"), body)),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    h.shutdown().await;
}
