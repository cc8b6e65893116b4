//! HTTP over TLS, the way pveproxy answers: accepts connections on the loopback listener,
//! decodes requests (path, query, form or JSON body), applies the slow-API and HTTP-error
//! faults, authenticates (API token or ticket + CSRF token; 401s delayed like PVE's by
//! `Timings::unauthorized_delay` times the time scale, with the reason in the status line and an
//! empty body), hands
//! `/api2/json/...` to [`crate::api`] and `/sim/...` to the admin endpoints, and writes PVE's
//! JSON envelope with the message's first line as the HTTP reason phrase.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::ApiRequest;
use crate::error::ApiError;
use crate::params::{percent_decode, Params};
use crate::state::Shared;

/// Largest request body read (PVE's own limit for API calls is 64 KiB of parameters;
/// uploads are streamed to a file instead, see `upload`).
const MAX_BODY: usize = 1 << 20;
const API_PREFIX: &str = "/api2/json";

pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    accept_loop(listener, stop, "pvesim", move |tcp, peer| {
        serve_conn(acceptor.clone(), shared.clone(), tcp, peer)
    })
    .await;
}

/// One API connection: TLS, then HTTP/1.1 requests until the client closes it.
pub(crate) async fn serve_conn(
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "pvesim: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, "pvesim: connection ended: {e}");
    }
}

/// Accepts connections on `listener` until `stop` changes, each served by `conn` as a
/// task of its own; the ones still open are ended on the way out. `what` names the
/// server in logs.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    conn: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((tcp, peer)) => {
                        conns.spawn(conn(tcp, peer));
                    }
                    Err(e) => {
                        tracing::warn!("{what}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
    conns.shutdown().await;
}

/// PVE's JSON envelope. Errors carry `message` (newline-terminated, as PVE's `die` text)
/// and `errors` per parameter.
pub(crate) fn respond(result: Result<Value, ApiError>) -> Response<Full<Bytes>> {
    respond_with(result, serde_json::Map::new())
}

/// A request that did not authenticate: pveproxy answers before any API handler runs, with the
/// reason in the status line only and an empty body (pve-http-server
/// `PVE/APIServer/AnyEvent.pm` `authenticate_and_handle_request`: `HTTP::Response->new(401, $err)`
/// with no content), and closes the connection (`keep_alive = 0` for every code >= 400).
/// Delayed, as pveproxy delays every 401 by 3 s (`Timings::unauthorized_delay` times the
/// time scale: none at scale 0).
async fn refuse(shared: &Shared, e: ApiError) -> Response<Full<Bytes>> {
    if e.status == 401 {
        let d = shared.scaled(shared.timings.unauthorized_delay);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
    refuse_now(e)
}

/// [`refuse`] without the delay (pvesim's own `/sim` endpoints).
fn refuse_now(e: ApiError) -> Response<Full<Bytes>> {
    let mut resp = respond(Err(e));
    *resp.body_mut() = Full::new(Bytes::new());
    let h = resp.headers_mut();
    h.remove(hyper::header::CONTENT_TYPE);
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}

fn respond_with(
    result: Result<Value, ApiError>,
    extra: serde_json::Map<String, Value>,
) -> Response<Full<Bytes>> {
    let (status, reason, body) = match result {
        Ok(data) => {
            let mut body = extra;
            body.insert("data".into(), data);
            (200, None, Value::Object(body))
        }
        Err(e) => {
            let mut message = e.message.clone();
            if !message.ends_with('\n') {
                message.push('\n');
            }
            let mut body = json!({ "data": null, "message": message });
            if !e.errors.is_empty() {
                body["errors"] = json!(e.errors);
            }
            let reason = e.message.lines().next().unwrap_or("").to_string();
            (e.status, Some(reason), body)
        }
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"data\":null}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    h.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("max-age=0"),
    );
    h.insert(
        hyper::header::PRAGMA,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    if let Some(reason) = reason {
        // PVE's status line says what went wrong ("500 can't lock file ..."); keep only bytes
        // a status line may carry.
        let clean: String = reason
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(200)
            .collect();
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(clean.into_bytes()) {
            resp.extensions_mut().insert(r);
        }
    }
    resp
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_ascii_uppercase();
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();

    // An upload streams its body to a file: it is taken before the body limit below.
    if method == "POST" {
        let segs: Option<Vec<String>> = raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .skip(2)
            .map(|s| percent_decode(s, false))
            .collect();
        if let Some(segs) = segs.filter(|s| {
            raw_path.starts_with(&format!("{API_PREFIX}/")) && crate::api::upload::is_upload(s)
        }) {
            return upload(&shared, &method, &segs, &headers, req.into_body()).await;
        }
    }
    let mut params = Params::default();
    if let Err(e) = params.add_form(&query) {
        return respond(Err(e));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return respond(Err(ApiError::new(413, "request entity too large"))),
    };
    if !body.is_empty() {
        let ctype = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/x-www-form-urlencoded");
        let parsed = if ctype.starts_with("application/json") {
            params.add_json(&body)
        } else {
            match std::str::from_utf8(&body) {
                Ok(text) => params.add_form(text),
                Err(_) => Err(ApiError::new(400, "request body is not valid UTF-8")),
            }
        };
        if let Err(e) = parsed {
            return respond(Err(e));
        }
    }

    let Some(segs) = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect::<Option<Vec<String>>>()
    else {
        return respond(Err(ApiError::new(400, "malformed URL path")));
    };

    if segs.first().map(String::as_str) == Some("sim") {
        let auth = crate::api::access::authenticate(&shared, &method, &segs, &headers);
        return match auth {
            Ok(_) => respond(crate::api::admin::route(
                &shared,
                &method,
                &segs[1..],
                &body,
            )),
            Err(e) => refuse_now(e),
        };
    }
    if segs.len() < 2 || segs[0] != "api2" || segs[1] != "json" {
        return respond(Err(ApiError::new(
            501,
            format!("no such file '{raw_path}'"),
        )));
    }
    let segs: Vec<String> = segs[2..].to_vec();
    let rel = format!("/{}", segs.join("/"));
    shared.count_request(&method, &rel);

    // Faults that act like a slow or failing proxy come before anything else.
    let delay_ms = shared
        .lock()
        .faults
        .api_delay_ms(&method, &format!("{API_PREFIX}{rel}"));
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }

    let user = match crate::api::access::authenticate(&shared, &method, &segs, &headers) {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%method, %rel, "pvesim: {}", e.message);
            return refuse(&shared, e).await;
        }
    };

    let injected = shared
        .lock()
        .faults
        .http_error(&method, &format!("{API_PREFIX}{rel}"));
    if let Some((status, message)) = injected {
        let message = message.unwrap_or_else(|| default_http_message(status));
        return respond(Err(ApiError::new(status, message)));
    }

    let mut req = ApiRequest {
        method,
        rel,
        segs,
        params,
        user,
        extra: serde_json::Map::new(),
    };
    let result = crate::api::route(&shared, &mut req).await;
    match &result {
        Ok(_) => tracing::debug!(method = %req.method, path = %req.rel, "pvesim: 200"),
        Err(e) => {
            tracing::debug!(method = %req.method, path = %req.rel, "pvesim: {} {}", e.status, e.message)
        }
    }
    let extra = std::mem::take(&mut req.extra);
    respond_with(result, extra)
}

/// `POST .../storage/{storage}/upload`: authenticated and fault-checked like any call,
/// then streamed by [`crate::api::upload`].
async fn upload(
    shared: &Arc<Shared>,
    method: &str,
    segs: &[String],
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Response<Full<Bytes>> {
    let user = match crate::api::access::authenticate(shared, method, segs, headers) {
        Ok(u) => u,
        Err(e) => return refuse(shared, e).await,
    };
    shared.count_request(method, &format!("/{}", segs.join("/")));
    let rel = format!("{API_PREFIX}/{}", segs.join("/"));
    if let Some((status, message)) = shared.lock().faults.http_error(method, &rel) {
        let message = message.unwrap_or_else(|| default_http_message(status));
        return respond(Err(ApiError::new(status, message)));
    }
    let ctype = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    respond(crate::api::upload::upload(shared, segs, &user, ctype, body).await)
}

fn default_http_message(status: u16) -> String {
    match status {
        595 => "Connection refused".to_string(),
        596 => "Connection timed out".to_string(),
        502 => "Bad Gateway".to_string(),
        503 => "Service Unavailable".to_string(),
        500 => "Internal Server Error (injected by pvesim)".to_string(),
        s => StatusCode::from_u16(s)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("injected error")
            .to_string(),
    }
}
