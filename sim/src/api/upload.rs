//! `POST /nodes/{node}/storage/{storage}/upload`: a file sent as `multipart/form-data`, as
//! pveproxy takes it: the body is streamed into a temporary file (never held in memory, not
//! bound by the API's body limit) while the form's other fields (`content`, `filename`'s
//! part, `checksum`, `checksum-algorithm`) are collected; then the call is checked as
//! pve-storage checks it and an `imgcopy` task verifies the checksum and moves the file
//! into the storage. The server hands this module the raw body before reading it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::content::{self, checksum_params, hex, human};
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Largest non-file form field (PVE's parameter limit).
const MAX_FIELD: usize = 64 * 1024;

/// Whether a request path (below `/api2/json`) is an upload.
pub(crate) fn is_upload(segs: &[String]) -> bool {
    matches!(segs, [n, _, s, _, u] if n == "nodes" && s == "storage" && u == "upload")
}

/// The upload (see the module docs). `segs` is the path below `/api2/json`.
pub(crate) async fn upload(
    shared: &Arc<Shared>,
    segs: &[String],
    user: &str,
    content_type: Option<&str>,
    body: hyper::body::Incoming,
) -> ApiResult<Value> {
    let (node, storage) = (&segs[1], &segs[3]);
    // As any call for a node: a call for another cluster member is that member's.
    let shared = &super::answering(shared, node)?;
    let boundary = content_type
        .filter(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"))
        .and_then(|c| {
            c.split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("boundary="))
                .map(|b| b.trim_matches('"').to_string())
        })
        .ok_or_else(|| {
            ApiError::new(
                501,
                "upload: expected a multipart/form-data body with a boundary",
            )
        })?;
    // PVE's temporary upload file (`/var/tmp/pveupload-HEX`).
    let tmp = shared
        .storage_root
        .join(format!(".pveupload-{}", crate::ids::random_uuid()));
    let parsed = receive(body, &boundary, &tmp).await;
    let (fields, file_name) = match parsed {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let checked = (|| {
        let file_name =
            file_name.ok_or_else(|| ApiError::param("filename", "no file part in the upload"))?;
        let target = content::target(
            shared,
            storage,
            fields.get("content").map(String::as_str),
            Some(file_name.as_str()),
            "upload",
        )?;
        let sum = checksum_params(
            fields.get("checksum").map(String::as_str),
            fields.get("checksum-algorithm").map(String::as_str),
        )?;
        for k in fields.keys() {
            if !["content", "checksum", "checksum-algorithm", "filename"].contains(&k.as_str()) {
                return Err(ApiError::param(k, "property is not defined in schema and the schema does not allow additional properties"));
            }
        }
        Ok((target, sum))
    })();
    let (target, sum) = match checked {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let upid = {
        let mut st = shared.lock();
        st.new_task(&shared.node, "imgcopy", "", user)
    };
    let shared2 = shared.clone();
    let u = upid.clone();
    tokio::spawn(async move {
        let r = import(&shared2, &u, &tmp, &target, sum).await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        let mut st = shared2.lock();
        match r {
            Ok(()) => st.finish_task(&u, "OK".to_string()),
            Err(e) => st.finish_task(&u, e),
        }
        shared2.persist(&st);
    });
    Ok(json!(upid))
}

fn log(shared: &Shared, upid: &str, line: impl Into<String>) {
    shared.lock().task_log(upid, line);
}

/// The `imgcopy` worker: checksum, then into the storage.
async fn import(
    shared: &Shared,
    upid: &str,
    tmp: &Path,
    target: &content::Target,
    sum: Option<(&'static ring::digest::Algorithm, String)>,
) -> Result<(), String> {
    log(
        shared,
        upid,
        format!("starting file import from: {}", tmp.display()),
    );
    if let Some((alg, expected)) = sum {
        let got = digest_file(tmp, alg)
            .await
            .map_err(|e| format!("reading {} failed: {e}", tmp.display()))?;
        if got != expected {
            return Err(format!(
                "checksum mismatch: got '{got}' != expect '{expected}'"
            ));
        }
        log(shared, upid, "calculating checksum...OK, checksum verified");
    }
    let size = tokio::fs::metadata(tmp).await.map(|m| m.len()).unwrap_or(0);
    log(shared, upid, format!("target node: {}", shared.node));
    log(
        shared,
        upid,
        format!("target file: {}", target.path.display()),
    );
    log(
        shared,
        upid,
        format!("file size is: {size} ({})", human(size)),
    );
    // pve-storage's upload overwrites a file of the same name ("we simply overwrite the
    // destination file if it already exists", `PVE/API2/Storage/Status.pm`); only
    // `download-url` refuses to.
    tokio::fs::create_dir_all(&target.dir)
        .await
        .map_err(|e| format!("unable to create {}: {e}", target.dir.display()))?;
    tokio::fs::rename(tmp, &target.path)
        .await
        .map_err(|e| format!("moving the upload into place failed: {e}"))?;
    log(shared, upid, "finished file import successfully");
    Ok(())
}

async fn digest_file(
    path: &Path,
    alg: &'static ring::digest::Algorithm,
) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut ctx = ring::digest::Context::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(&ctx.finish()))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(400, format!("upload: {}", msg.into()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The `name` and `filename` of a part's `Content-Disposition`.
fn disposition(headers: &str) -> (Option<String>, Option<String>) {
    let mut name = None;
    let mut filename = None;
    for line in headers.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for p in v.split(';').map(str::trim) {
            if let Some(x) = p.strip_prefix("name=") {
                name = Some(x.trim_matches('"').to_string());
            } else if let Some(x) = p.strip_prefix("filename=") {
                filename = Some(x.trim_matches('"').to_string());
            }
        }
    }
    (name, filename)
}

enum Part {
    Field(String, Vec<u8>),
    File(tokio::fs::File),
}

/// Streams the multipart body: fields collected, the file part written to `tmp`.
async fn receive(
    mut body: hyper::body::Incoming,
    boundary: &str,
    tmp: &PathBuf,
) -> ApiResult<(BTreeMap<String, String>, Option<String>)> {
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut fields = BTreeMap::new();
    let mut file_name = None;
    let mut part: Option<Part> = None;
    let mut started = false;
    let mut finished = false;
    let mut eof = false;
    loop {
        // Work through what is buffered; read more when stuck.
        let mut progressed = true;
        while progressed && !finished {
            progressed = false;
            if !started {
                if let Some(i) = find(&buf, first.as_bytes()) {
                    buf.drain(..i + first.len());
                    started = true;
                    progressed = true;
                }
                continue;
            }
            if part.is_none() {
                // After a boundary: `--` ends the body, else CRLF and the part's headers.
                if buf.len() < 2 {
                    continue;
                }
                if buf.starts_with(b"--") {
                    finished = true;
                    break;
                }
                let Some(end) = find(&buf, b"\r\n\r\n") else {
                    if buf.len() > MAX_FIELD {
                        return Err(bad("part headers too long"));
                    }
                    continue;
                };
                let headers = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                let (name, filename) = disposition(&headers);
                part = Some(match filename {
                    Some(f) => {
                        if file_name.is_some() {
                            return Err(bad("more than one file part"));
                        }
                        file_name = Some(f);
                        let file = tokio::fs::File::create(tmp).await.map_err(|e| {
                            ApiError::internal(format!("unable to create {}: {e}", tmp.display()))
                        })?;
                        Part::File(file)
                    }
                    None => Part::Field(name.unwrap_or_default(), Vec::new()),
                });
                progressed = true;
                continue;
            }
            // Inside a part: everything up to the next delimiter is its data.
            let (data_end, at_delim) = match find(&buf, delim.as_bytes()) {
                Some(i) => (i, true),
                None => (buf.len().saturating_sub(delim.len()), false),
            };
            if data_end > 0 || at_delim {
                match part.as_mut() {
                    Some(Part::File(f)) => f
                        .write_all(&buf[..data_end])
                        .await
                        .map_err(|e| ApiError::internal(format!("upload write failed: {e}")))?,
                    Some(Part::Field(_, v)) => {
                        v.extend_from_slice(&buf[..data_end]);
                        if v.len() > MAX_FIELD {
                            return Err(bad("form field too long"));
                        }
                    }
                    None => {}
                }
                buf.drain(..data_end);
                progressed = data_end > 0;
            }
            if at_delim {
                buf.drain(..delim.len());
                match part.take() {
                    Some(Part::File(mut f)) => f
                        .flush()
                        .await
                        .map_err(|e| ApiError::internal(format!("upload write failed: {e}")))?,
                    Some(Part::Field(name, v)) => {
                        let v = String::from_utf8(v).map_err(|_| bad("field is not UTF-8"))?;
                        fields.insert(name, v.trim_end_matches(['\r', '\n']).to_string());
                    }
                    None => {}
                }
                progressed = true;
            }
        }
        if finished {
            break;
        }
        if eof {
            return Err(bad("the body ended before the closing boundary"));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(d) = frame.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Some(Err(e)) => return Err(bad(format!("reading the body failed: {e}"))),
            None => eof = true,
        }
    }
    Ok((fields, file_name))
}
