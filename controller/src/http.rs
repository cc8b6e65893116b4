//! The HTTPS side: the accept loop (bounded connections, TLS handshake and header-read time
//! limits, bounded header size and count), routing, the access log, and draining on stop.
//! Only GET and HEAD exist; a request body is refused beyond a few KiB. Refusals say as
//! little as possible: `401 unauthorized`, `403 forbidden`, `404 not found`, `400 bad
//! request`, whatever the reason (the reason goes to the log).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::site_config::resolve::AuthMethod;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Digest, Verdict};
use crate::repos::{self, Repo};
use crate::specs::{Lookup, Specs};

/// Largest request body accepted (every endpoint is a GET; this only bounds a stray body).
const MAX_BODY: usize = 8 * 1024;
/// Largest request head (request line and headers), and most headers.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNS: usize = 1024;
const HANDSHAKE: Duration = Duration::from_secs(10);
const HEADER_READ: Duration = Duration::from_secs(30);

pub(crate) struct AppState {
    pub specs: RwLock<Arc<Specs>>,
    /// The snapshots served now; a reload replaces the list (`swap_repos`).
    pub repos: RwLock<Vec<Arc<Repo>>>,
    pub repo_token: Option<Digest>,
    /// The driver binary served at `/bin/driver`, if any.
    pub driver: Option<Bytes>,
}

impl AppState {
    pub fn current(&self) -> Arc<Specs> {
        match self.specs.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn swap(&self, fresh: Specs) {
        let fresh = Arc::new(fresh);
        match self.specs.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
    }

    /// The snapshot of repo `name` served now, held for as long as the caller keeps it.
    pub fn repo(&self, name: &str) -> Option<Arc<Repo>> {
        let find = |v: &Vec<Arc<Repo>>| v.iter().find(|r| r.name == name).cloned();
        match self.repos.read() {
            Ok(g) => find(&g),
            Err(p) => find(&p.into_inner()),
        }
    }

    /// Serves `fresh` from now on; the replaced snapshots go when their last request ends.
    pub fn swap_repos(&self, fresh: Vec<Arc<Repo>>) {
        match self.repos.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
    }
}

type Body = Full<Bytes>;

pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("controller: accept failed: {e}");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        conns.spawn(connection(
            tcp,
            peer,
            acceptor.clone(),
            state.clone(),
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "controller: drain time over; closing the rest"
        );
        conns.shutdown().await;
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "controller: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "controller: connection ended: {e}");
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refuse(status: StatusCode) -> Response<Body> {
    let mut r = match status {
        StatusCode::UNAUTHORIZED => text(status, "unauthorized\n"),
        StatusCode::FORBIDDEN => text(status, "forbidden\n"),
        StatusCode::NOT_FOUND => text(status, "not found\n"),
        StatusCode::METHOD_NOT_ALLOWED => text(status, "method not allowed\n"),
        StatusCode::PAYLOAD_TOO_LARGE => text(status, "request too large\n"),
        StatusCode::BAD_REQUEST => text(status, "bad request\n"),
        _ => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    };
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn bytes(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn handle(state: &AppState, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    // The path only: a query string is never logged (someone may put a token there).
    let path: String = req.uri().path().chars().take(200).collect();
    let mut resp = route(state, req).await;
    if method == Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    tracing::info!(
        target: "controller::access",
        %peer,
        %method,
        path,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
    );
    resp
}

async fn route(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    if !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return refuse(StatusCode::METHOD_NOT_ALLOWED);
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let segs = match crate::paths::segments(req.uri().path()) {
        Ok(s) => s,
        Err(why) => {
            tracing::info!(target: "controller::access", "refused a path: {}", why.0);
            return refuse(StatusCode::BAD_REQUEST);
        }
    };
    let (parts, body) = req.into_parts();
    // A stray body is read (bounded) so the connection can carry the next request.
    if Limited::new(body, MAX_BODY).collect().await.is_err() {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["health"] => bytes("application/json", &b"{\"status\":\"ok\"}\n"[..]),
        ["specs"] => {
            let specs = state.current();
            let body = serde_json::json!({"specs": specs.names(), "nodes": specs.nodes(),
                "configs": specs.configs()});
            bytes("application/json", format!("{body}\n"))
        }
        ["spec", identity] => {
            let found = state.current().lookup(identity);
            authenticated(found, &parts.headers, identity, "spec")
        }
        ["config", identity] => {
            let found = state.current().config(identity);
            authenticated(found, &parts.headers, identity, "config")
        }
        ["bin", "driver"] => match &state.driver {
            Some(b) => bytes("application/octet-stream", b.clone()),
            None => refuse(StatusCode::NOT_FOUND),
        },
        [first, rest @ ..] if first.ends_with(".git") && !rest.is_empty() => {
            repo(state, &parts.headers, first, &segs[1..]).await
        }
        _ => refuse(StatusCode::NOT_FOUND),
    }
}

/// A spec or config found for `identity`, answered when the request authenticates as its
/// posture wants (`what` names it in the log).
fn authenticated(
    found: Lookup,
    headers: &hyper::HeaderMap,
    identity: &str,
    what: &str,
) -> Response<Body> {
    let served = match found {
        Lookup::Found(s) => s,
        Lookup::Unknown => return refuse(StatusCode::NOT_FOUND),
        Lookup::Broken => return refuse(StatusCode::INTERNAL_SERVER_ERROR),
    };
    if served.auth != AuthMethod::Network {
        let verdict = match &served.token {
            Some(expected) => auth::check(headers, expected),
            // An empty token in the secrets: nothing authenticates (logged at resolution).
            None if auth::bearer(headers).is_none() => Verdict::Missing,
            None => Verdict::Wrong,
        };
        match verdict {
            Verdict::Allowed => {}
            Verdict::Missing => return refuse(StatusCode::UNAUTHORIZED),
            Verdict::Wrong => {
                tracing::warn!(identity, "{what} request with a wrong token");
                return refuse(StatusCode::FORBIDDEN);
            }
        }
    }
    bytes("application/json", served.body.clone())
}

async fn repo(
    state: &AppState,
    headers: &hyper::HeaderMap,
    first: &str,
    rest: &[String],
) -> Response<Body> {
    // Authenticate before saying whether the repo exists.
    let Some(expected) = &state.repo_token else {
        return refuse(StatusCode::NOT_FOUND);
    };
    match auth::check(headers, expected) {
        Verdict::Allowed => {}
        Verdict::Missing => return refuse(StatusCode::UNAUTHORIZED),
        Verdict::Wrong => {
            tracing::warn!("repo request with a wrong token");
            return refuse(StatusCode::FORBIDDEN);
        }
    }
    let name = first.trim_end_matches(".git");
    // Held until the answer is read: a reload meanwhile does not remove it under us.
    let Some(repo) = state.repo(name) else {
        return refuse(StatusCode::NOT_FOUND);
    };
    let found = if repos::is_protocol_file(rest) {
        repos::protocol_file(&repo, rest).await
    } else {
        repos::raw_file(&repo, rest).await
    };
    match found {
        Some(b) => bytes("application/octet-stream", b),
        None => refuse(StatusCode::NOT_FOUND),
    }
}
