//! Authentication and access: API tokens (`Authorization: PVEAPIToken=USER@REALM!ID=SECRET`),
//! tickets (`POST /access/ticket`, cookie `PVEAuthCookie`, header `CSRFPreventionToken` for
//! writes), `GET /access/permissions`, and token management under `/access/users/{userid}/token`.
//! Wording follows PVE 9.1.5 and later: a request without credentials is refused with
//! `No ticket`, a wrong token or ticket with `Authentication failed!` whatever the cause (the
//! cause, `invalid token value!`, `no such token ...`, goes to the log only; pve-manager
//! `PVE/HTTPServer.pm` `auth_handler`, commit 26c10a2e). pveproxy sends these reasons in the
//! status line with an empty body (see `crate::server`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::request::{data, ApiRequest};
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::ids::{random_hex, random_uuid};
use crate::model::{Ticket, TokenEntry};
use crate::schema::{specs, validate};
use crate::state::Shared;

/// PVE tickets live two hours.
const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// Privileges of `root@pam` (and of its tokens without privilege separation) on `/`.
const PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// `POST /access/ticket`.
#[derive(Serialize)]
struct TicketAnswer {
    ticket: String,
    #[serde(rename = "CSRFPreventionToken")]
    csrf: String,
    username: String,
    cap: Cap,
}

/// The capabilities a ticket answer summarises (what the web UI shows or hides).
#[derive(Serialize)]
struct Cap {
    vms: BTreeMap<&'static str, u8>,
    storage: BTreeMap<&'static str, u8>,
}

/// One user of `GET /access/users`.
#[derive(Serialize)]
struct User {
    userid: String,
    enable: u8,
    expire: u64,
}

/// A token in `GET .../token` (with `tokenid`) and `GET .../token/{tokenid}` (without).
#[derive(Serialize)]
struct TokenInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenid: Option<&'a str>,
    privsep: u8,
    expire: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
}

/// `POST .../token/{tokenid}`: the secret, shown this once.
#[derive(Serialize)]
struct NewToken<'a> {
    #[serde(rename = "full-tokenid")]
    full_tokenid: &'a str,
    info: NewTokenInfo<'a>,
    value: &'a str,
}

#[derive(Serialize)]
struct NewTokenInfo<'a> {
    privsep: u8,
    /// Only when it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    expire: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::unauthorized(msg)
}

/// The users the simulator knows: `root@pam` and the users of stored tokens.
fn user_exists(shared: &Shared, user: &str) -> bool {
    user == "root@pam"
        || shared
            .lock()
            .tokens
            .keys()
            .any(|t| t.split_once('!').is_some_and(|(u, _)| u == user))
}

/// Who the request is from, or PVE's 401. `/access/ticket` needs no authentication.
pub(crate) fn authenticate(
    shared: &Shared,
    method: &str,
    segs: &[String],
    headers: &HeaderMap,
) -> ApiResult<String> {
    if segs.len() == 2 && segs[0] == "access" && segs[1] == "ticket" {
        return Ok(String::new());
    }
    if let Some(auth) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth
            .strip_prefix("PVEAPIToken=")
            .or_else(|| auth.strip_prefix("PVEAPIToken "))
            .map(str::trim);
        if let Some(token) = token {
            return verify_token(shared, token).map_err(auth_failed);
        }
    }
    let ticket = headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("PVEAuthCookie="))
        .map(|t| crate::params::percent_decode(t, false).unwrap_or_else(|| t.to_string()));
    let Some(ticket) = ticket else {
        return Err(unauthorized("No ticket"));
    };
    let session = {
        let st = shared.lock();
        st.tickets.get(&ticket).cloned()
    };
    let Some(session) = session.filter(|s| s.issued.elapsed() < TICKET_LIFETIME) else {
        return Err(auth_failed(unauthorized(
            "permission denied - invalid PVE ticket",
        )));
    };
    if method != "GET" && method != "HEAD" {
        let csrf = headers
            .get("CSRFPreventionToken")
            .and_then(|v| v.to_str().ok());
        if csrf != Some(session.csrf.as_str()) {
            return Err(unauthorized("Permission denied - invalid csrf token"));
        }
    }
    Ok(session.user)
}

/// What pveproxy answers when a token or ticket does not verify: one reason for every cause
/// (pve-manager `PVE/HTTPServer.pm` `auth_handler` since 9.1.5); the cause is logged, as PVE
/// `warn`s it to the journal.
fn auth_failed(cause: ApiError) -> ApiError {
    tracing::info!("pvesim: authentication failure: {}", cause.message);
    unauthorized(AUTH_FAILED)
}

/// The 401 reason for a token or ticket that does not verify.
pub(crate) const AUTH_FAILED: &str = "Authentication failed!";

fn split_tokenid(tokenid: &str) -> ApiResult<(&str, &str)> {
    let bad = || {
        unauthorized(format!(
            "'{tokenid}' is not a valid token ID - not able to split into user and token parts"
        ))
    };
    let (user, name) = tokenid.split_once('!').ok_or_else(bad)?;
    if !user.contains('@') || name.is_empty() {
        return Err(bad());
    }
    Ok((user, name))
}

fn verify_token(shared: &Shared, value: &str) -> ApiResult<String> {
    // PVE splits `tokenid=secret` at the last `=`.
    let (tokenid, secret) = value
        .rsplit_once('=')
        .ok_or_else(|| unauthorized("no tokenid specified"))?;
    let (user, name) = split_tokenid(tokenid)?;
    if !user_exists(shared, user) {
        return Err(unauthorized(format!("no such user ('{user}')")));
    }
    let entry = shared.lock().tokens.get(tokenid).cloned();
    let Some(entry) = entry else {
        return Err(unauthorized(format!(
            "no such token '{name}' for user '{user}'"
        )));
    };
    if entry.expire != 0 && entry.expire < now_unix() {
        return Err(unauthorized("token expired"));
    }
    if !constant_time_eq(entry.secret.as_bytes(), secret.as_bytes()) {
        return Err(unauthorized("invalid token value!"));
    }
    Ok(tokenid.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /access/ticket`: username + password of `root@pam` (when a password is configured).
pub(crate) fn ticket(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let mut user = req.params.get("username").unwrap_or("").to_string();
    if user.is_empty() {
        return Err(ApiError::param("username", crate::schema::MISSING));
    }
    if !user.contains('@') {
        // PVE takes a bare name for the realm given separately, else pam.
        let realm = req.params.get("realm").unwrap_or("pam");
        user = format!("{user}@{realm}");
    }
    let password = req.params.get("password").unwrap_or("");
    let ok = user == "root@pam"
        && shared
            .root_password
            .as_deref()
            .is_some_and(|p| constant_time_eq(p.as_bytes(), password.as_bytes()));
    if !ok {
        return Err(ApiError::unauthorized("authentication failure"));
    }
    let stamp = format!("{:08X}", now_unix());
    let ticket = format!("PVE:{user}:{stamp}::{}", random_hex(64));
    let csrf = format!("{stamp}:{}", random_hex(43));
    shared.lock().tickets.insert(
        ticket.clone(),
        Ticket {
            user: user.clone(),
            csrf: csrf.clone(),
            issued: Instant::now(),
        },
    );
    let held = |privs: &[&'static str]| privs.iter().map(|p| (*p, 1)).collect();
    data(TicketAnswer {
        ticket,
        csrf,
        username: user,
        cap: Cap {
            vms: held(&["VM.Allocate", "VM.PowerMgmt", "VM.Config.Disk"]),
            storage: held(&["Datastore.Allocate", "Datastore.AllocateSpace"]),
        },
    })
}

/// `{path: {privilege: 1}}`.
type Privileges = BTreeMap<String, BTreeMap<&'static str, u8>>;

fn privileges_of(shared: &Shared, who: &str) -> Privileges {
    let full: BTreeMap<&'static str, u8> = PRIVILEGES.iter().map(|p| (*p, 1)).collect();
    match who.split_once('!') {
        None if who == "root@pam" => BTreeMap::from([("/".to_string(), full)]),
        None => BTreeMap::new(),
        Some((user, _)) => {
            let privsep = shared.lock().tokens.get(who).is_none_or(|t| t.privsep);
            if user == "root@pam" && !privsep {
                BTreeMap::from([("/".to_string(), full)])
            } else {
                // A privilege-separated token holds only what ACLs grant it: none here.
                BTreeMap::new()
            }
        }
    }
}

/// `GET /access/permissions[?userid=...][&path=...]`: `{path: {privilege: 1}}`.
pub(crate) fn permissions(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let who = req.params.get("userid").unwrap_or(&req.user).to_string();
    let mut held = privileges_of(shared, &who);
    if let Some(path) = req.params.get("path") {
        held.retain(|p, _| p == "/" || p == path || path.starts_with(&format!("{p}/")));
    }
    data(held)
}

pub(crate) fn users(shared: &Arc<Shared>) -> ApiResult<Value> {
    let mut users = vec!["root@pam".to_string()];
    for t in shared.lock().tokens.keys() {
        if let Some((u, _)) = t.split_once('!') {
            if !users.iter().any(|x| x == u) {
                users.push(u.to_string());
            }
        }
    }
    data(
        users
            .into_iter()
            .map(|userid| User {
                userid,
                enable: 1,
                expire: 0,
            })
            .collect::<Vec<_>>(),
    )
}

/// A token as listed (`tokenid` given) or read on its own (without).
fn token_info<'a>(tokenid: Option<&'a str>, t: &'a TokenEntry) -> TokenInfo<'a> {
    TokenInfo {
        tokenid,
        privsep: u8::from(t.privsep),
        expire: t.expire,
        comment: t.comment.as_deref(),
    }
}

pub(crate) fn list_tokens(shared: &Arc<Shared>, user: &str) -> ApiResult<Value> {
    if !user_exists(shared, user) {
        return Err(ApiError::internal(format!("no such user ('{user}')")));
    }
    let st = shared.lock();
    let prefix = format!("{user}!");
    data(
        st.tokens
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|id| token_info(Some(id), t)))
            .collect::<Vec<_>>(),
    )
}

pub(crate) fn get_token(shared: &Arc<Shared>, user: &str, id: &str) -> ApiResult<Value> {
    let st = shared.lock();
    let t = st
        .tokens
        .get(&format!("{user}!{id}"))
        .ok_or_else(|| ApiError::internal(format!("no such token '{id}' for user '{user}'")))?;
    data(token_info(None, t))
}

fn valid_token_name(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `POST /access/users/{userid}/token/{tokenid}`: stores a new token, returns its secret once.
pub(crate) fn add_token(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    user: &str,
    id: &str,
) -> ApiResult<Value> {
    let mut params = req.params.clone();
    params.insert("userid", user);
    params.insert("tokenid", id);
    validate(&params, specs::TOKEN_ADD, None)?;
    if !valid_token_name(id) {
        return Err(ApiError::param(
            "tokenid",
            "value does not match the regex pattern",
        ));
    }
    if !user.contains('@') || user.contains('!') {
        return Err(ApiError::internal(format!(
            "value '{user}' does not look like a valid user name"
        )));
    }
    if !user_exists(shared, user) {
        return Err(ApiError::internal(format!("no such user ('{user}')")));
    }
    let full = format!("{user}!{id}");
    let entry = TokenEntry {
        secret: random_uuid(),
        privsep: req
            .params
            .get("privsep")
            .is_none_or(|_| params.flag("privsep")),
        comment: req.params.get("comment").map(str::to_string),
        expire: params.int("expire").unwrap_or(0).max(0) as u64,
    };
    let mut st = shared.lock();
    if st.tokens.contains_key(&full) {
        return Err(ApiError::internal("Token already exists."));
    }
    st.tokens.insert(full.clone(), entry.clone());
    shared.persist(&st);
    data(NewToken {
        full_tokenid: &full,
        info: NewTokenInfo {
            privsep: u8::from(entry.privsep),
            expire: (entry.expire != 0).then_some(entry.expire),
            comment: entry.comment.as_deref(),
        },
        value: &entry.secret,
    })
}

pub(crate) fn delete_token(shared: &Arc<Shared>, user: &str, id: &str) -> ApiResult<Value> {
    let mut st = shared.lock();
    if st.tokens.remove(&format!("{user}!{id}")).is_none() {
        return Err(ApiError::internal(format!(
            "no such token '{id}' for user '{user}'"
        )));
    }
    shared.persist(&st);
    Ok(Value::Null)
}
