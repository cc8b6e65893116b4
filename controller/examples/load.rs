//! A bounded load client for `driver serve` (scripts/bench-serve.sh): C connections, each a
//! keep-alive HTTP/1.1 over TLS (the controller's fingerprint pinned) sending GET PATH back to
//! back for SECS seconds. Prints one JSON line: requests, errors, req/s, p50 and p99 in ms.
//!
//!     load URL PATH FINGERPRINT CONCURRENCY SECS [TOKEN]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actions::pve::tls::{client_config, parse_fingerprint, TlsTrust};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;

type Err = Box<dyn std::error::Error + Send + Sync>;

async fn worker(
    addr: String,
    path: String,
    token: Option<String>,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    until: Instant,
) -> Result<(Vec<u32>, u64), Err> {
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?.to_owned();
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut lat = Vec::new();
    let mut errors = 0;
    while Instant::now() < until {
        let mut req = hyper::Request::get(path.as_str()).header("host", addr.as_str());
        if let Some(t) = &token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let t0 = Instant::now();
        let resp = send.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        lat.push(t0.elapsed().as_micros() as u32);
        errors += u64::from(!ok);
    }
    Ok((lat, errors))
}

fn main() -> Result<(), Err> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        return Err("usage: load URL PATH FINGERPRINT CONCURRENCY SECS [TOKEN]".into());
    }
    let addr = a[1].trim_start_matches("https://").to_string();
    let fp = parse_fingerprint(&a[3])?;
    let conc: usize = a[4].parse()?;
    let secs: u64 = a[5].parse()?;
    let token = a.get(6).cloned();
    let tls = Arc::new(client_config(&TlsTrust::Fingerprint(fp))?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut all, errors, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conc {
            set.spawn(worker(
                addr.clone(),
                a[2].clone(),
                token.clone(),
                tls.clone(),
                until,
            ));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok((l, e))) => {
                    all.extend(l);
                    errors += e;
                }
                _ => errors += 1,
            }
        }
        (all, errors, start.elapsed())
    });
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
