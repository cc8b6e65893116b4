//! `POST /nodes/{node}/storage/{storage}/download-url`: the host fetches a file itself. The
//! request is checked as pve-storage checks it (url pattern, content enum, file-based
//! storage configured for the content, file name extension, checksum with its algorithm),
//! then a `download` task really fetches the URL over HTTP (following redirects), logging
//! its progress, checks the checksum, and moves the file into the storage; a failed or
//! mismatching download leaves nothing behind. Content types are generic (`iso`, `vztmpl`,
//! `import`).
//!
//! Only plain HTTP from loopback servers: the simulator runs where there is no internet,
//! and a simulated run must never pull gigabytes from a real mirror.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::content::{self, checksum_params, encode_text, hex, human};
use super::request::ApiRequest;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Redirects followed before giving up (wget's default is 20; mirrors use one or two).
const MAX_REDIRECTS: usize = 5;

/// `POST .../storage/{storage}/download-url`.
pub(crate) async fn download_url(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    storage: &str,
) -> ApiResult<Value> {
    let p = &req.params;
    let url = p
        .get("url")
        .ok_or_else(|| ApiError::param("url", "property is missing and it is not optional"))?
        .to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::param(
            "url",
            "value does not match the regex pattern",
        ));
    }
    let target = content::target(
        shared,
        storage,
        p.get("content"),
        p.get("filename"),
        "upload",
    )?;
    let sum = checksum_params(p.get("checksum"), p.get("checksum-algorithm"))?;
    let compression = p.get("compression").map(str::to_string);
    if let Some(v) = p.get("verify-certificates") {
        if !matches!(
            v,
            "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off"
        ) {
            return Err(ApiError::param(
                "verify-certificates",
                format!("type check ('boolean') failed - got '{v}'"),
            ));
        }
    }
    let upid = {
        let mut st = shared.lock();
        st.new_task(
            &shared.node,
            "download",
            &encode_text(&target.filename),
            &req.user,
        )
    };
    let shared2 = shared.clone();
    let u = upid.clone();
    tokio::spawn(async move {
        let result = match compression {
            Some(_) if target.content != content::FileContent::Iso => Err(format!(
                "decompression not supported for {}",
                target.content.name()
            )),
            Some(c) => Err(format!("pvesim does not decompress downloads ({c})")),
            None => fetch_into(&shared2, &u, &url, &target.dir, &target.path, sum).await,
        };
        let mut st = shared2.lock();
        match result {
            Ok(()) => st.finish_task(&u, "OK".to_string()),
            Err(e) => {
                tracing::info!(upid = %u, error = %e, "download failed");
                st.finish_task(&u, e);
            }
        }
        shared2.persist(&st);
    });
    Ok(json!(upid))
}

fn log(shared: &Shared, upid: &str, line: impl Into<String>) {
    shared.lock().task_log(upid, line);
}

/// Fetches `url` into `dest` through a hidden temporary file beside it.
async fn fetch_into(
    shared: &Shared,
    upid: &str,
    url: &str,
    dir: &std::path::Path,
    dest: &std::path::Path,
    sum: Option<(&'static ring::digest::Algorithm, String)>,
) -> Result<(), String> {
    if dest.exists() {
        return Err(format!(
            "refusing to override existing file '{}'",
            dest.display()
        ));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("unable to create {}: {e}", dir.display()))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp.{}",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download"),
        crate::ids::random_uuid()
    ));
    log(
        shared,
        upid,
        format!("downloading {url} to {}", dest.display()),
    );
    let r = fetch(shared, upid, url, &tmp, sum).await;
    match r {
        Ok(()) => {
            tokio::fs::rename(&tmp, dest)
                .await
                .map_err(|e| format!("rename {} failed: {e}", tmp.display()))?;
            log(
                shared,
                upid,
                format!("download of '{url}' to '{}' finished", dest.display()),
            );
            Ok(())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

async fn fetch(
    shared: &Shared,
    upid: &str,
    url: &str,
    tmp: &std::path::Path,
    sum: Option<(&'static ring::digest::Algorithm, String)>,
) -> Result<(), String> {
    let mut url = url.to_string();
    let mut hops = 0;
    let resp = loop {
        let resp = get(&url).await?;
        let status = resp.status();
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{url}: redirect without a Location"))?;
            url = absolute(&url, next);
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(format!("{url}: too many redirects"));
            }
            log(shared, upid, format!("redirected to {url}"));
            continue;
        }
        if !status.is_success() {
            return Err(format!(
                "download failed: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ));
        }
        break resp;
    };
    let total = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| format!("unable to create {}: {e}", tmp.display()))?;
    let mut ctx = sum.as_ref().map(|(a, _)| ring::digest::Context::new(a));
    let mut body = resp.into_body();
    let mut done: u64 = 0;
    // About ten progress lines per download (and one per 256 MiB of an unknown size).
    let step = total.map_or(256 << 20, |t| (t / 10).max(1));
    let mut next_report = step;
    let mut logged = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("download failed: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(c) = ctx.as_mut() {
            c.update(&data);
        }
        file.write_all(&data)
            .await
            .map_err(|e| format!("write {} failed: {e}", tmp.display()))?;
        done += data.len() as u64;
        if done >= next_report {
            next_report = done + step;
            log(shared, upid, progress(done, total));
            logged = done;
        }
    }
    if logged != done {
        log(shared, upid, progress(done, total));
    }
    file.flush()
        .await
        .map_err(|e| format!("write {} failed: {e}", tmp.display()))?;
    if let Some(t) = total {
        if done != t {
            return Err(format!(
                "download failed: got {done} of {t} bytes (connection closed)"
            ));
        }
    }
    if let (Some(c), Some((_, expected))) = (ctx, sum) {
        let got = hex(&c.finish());
        if got != expected {
            return Err(format!(
                "checksum mismatch: got '{got}' != expect '{expected}'"
            ));
        }
        log(shared, upid, "calculating checksum...OK, checksum verified");
    }
    Ok(())
}

fn progress(done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) => format!(
            "{} of {} ({:.2}%)",
            human(done),
            human(t),
            done as f64 * 100.0 / t.max(1) as f64
        ),
        None => format!("{} received", human(done)),
    }
}

/// `Location` made absolute against the URL it answered.
fn absolute(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    if loc.starts_with('/') {
        format!("{}{loc}", &base[..origin_end])
    } else {
        let dir = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{loc}", &base[..dir])
    }
}

/// One HTTP GET to a loopback server.
async fn get(url: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("pvesim fetches plain http:// from loopback servers only, not '{url}'")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in '{url}'"))?,
        ),
        _ => (authority, 80),
    };
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| {
            format!("pvesim fetches from loopback addresses only, not '{host}' (no internet here)")
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "pvesim fetches from loopback addresses only, not {ip} (no internet here)"
        ));
    }
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("download failed: {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("download failed: {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "pvesim (Wget-like)")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("download failed: {url}: {e}"))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("download failed: {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn redirects_are_made_absolute() {
        assert_eq!(absolute("http://a:1/x/y", "/z"), "http://a:1/z");
        assert_eq!(absolute("http://a:1/x/y", "z"), "http://a:1/x/z");
        assert_eq!(absolute("http://a:1/x/y", "http://b/q"), "http://b/q");
    }
}
