//! A local file sent to a storage (`POST .../storage/{storage}/upload`): multipart, streamed
//! from the file with a `Content-Length` (pveproxy reads uploads by their length), through
//! the same endpoint failover and retries as every call. Each attempt opens the file again,
//! so a body cut off partway is sent again whole, never held in memory. Sending it twice is
//! safe: pve-storage overwrites a file of the same name (`PVE/API2/Storage/Status.pm`: "we
//! simply overwrite the destination file if it already exists").

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::client::Failure;
use super::storage::shape;
use super::{PveClient, PveError};

/// The multipart form around the file: the parts before it (with the file part's header)
/// and the closing boundary after it.
struct Form {
    boundary: String,
    head: String,
    tail: String,
}

impl Form {
    fn new(content: &str, filename: &str, checksum: Option<(&str, &str)>) -> Form {
        // Unlikely in any file's bytes, and different per call.
        let boundary = format!(
            "----driver{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let mut head = String::new();
        let mut field = |name: &str, value: &str| {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        };
        field("content", content);
        if let Some((alg, sum)) = checksum {
            field("checksum-algorithm", alg);
            field("checksum", sum);
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; \
             filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        Form {
            boundary,
            head,
            tail,
        }
    }
}

impl PveClient {
    /// `POST .../storage/{storage}/upload` of the local file `file` as `filename`,
    /// streamed; `on_bytes` gets the bytes sent so far (from 0 again when the file is sent
    /// again). Returns the UPID.
    pub async fn upload(
        &self,
        storage: &str,
        content: &str,
        file: &Path,
        filename: &str,
        checksum: Option<(&str, &str)>,
        on_bytes: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<String, PveError> {
        let rel = format!("/nodes/{}/storage/{storage}/upload", self.node());
        // A file that cannot be read is said before anything is sent.
        tokio::fs::metadata(file)
            .await
            .map_err(|e| shape(&rel, format!("{}: {e}", file.display())))?;
        let form = Form::new(content, filename, checksum);
        let on_bytes: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(on_bytes);
        let (rel_ref, form_ref) = (&rel, &form);
        let data = self
            .across_endpoints(&Method::POST, &rel, true, |base| {
                let on_bytes = on_bytes.clone();
                async move {
                    self.upload_once(&base, rel_ref, file, form_ref, on_bytes)
                        .await
                }
            })
            .await?;
        data.as_str()
            .map(str::to_string)
            .ok_or_else(|| shape(&rel, format!("no UPID: {data}")))
    }

    /// One attempt: the file opened, streamed to endpoint `base`, PVE's answer read.
    async fn upload_once(
        &self,
        base: &str,
        rel: &str,
        file: &Path,
        form: &Form,
        on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Value, Failure> {
        let io = |e: std::io::Error| Failure::Local(format!("{}: {e}", file.display()));
        let f = tokio::fs::File::open(file).await.map_err(io)?;
        let size = f.metadata().await.map_err(io)?.len();
        let length = form.head.len() as u64 + size + form.tail.len() as u64;
        let mut sent = 0u64;
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            form.head.clone(),
        ))])
        .chain(
            tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |chunk| {
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                    on_bytes(sent);
                }
                chunk
            }),
        )
        .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(
            form.tail.clone(),
        ))]));
        let req = self
            .http
            .post(format!("{base}/api2/json{rel}"))
            .header("Authorization", &self.auth)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={}", form.boundary),
            )
            // pveproxy reads uploads by their length.
            .header("Content-Length", length.to_string())
            // The client's 60 s limit is for API calls, not for gigabytes.
            .timeout(Duration::from_secs(24 * 3600))
            .body(reqwest::Body::wrap_stream(body));
        self.send(req).await
    }
}
