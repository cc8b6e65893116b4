//! Tasks: `GET /nodes/{node}/tasks` (newest first), a task's status and its log.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::request::{data, ApiRequest};
use crate::error::{ApiError, ApiResult};
use crate::ids::parse_upid;
use crate::model::Task;
use crate::schema::{specs, validate};
use crate::state::Shared;

/// `GET .../tasks/{upid}/status`.
#[derive(Serialize)]
struct TaskStatus<'a> {
    upid: &'a str,
    node: &'a str,
    pid: u32,
    pstart: u32,
    starttime: u64,
    #[serde(rename = "type")]
    ty: &'a str,
    id: &'a str,
    user: &'a str,
    /// The token's name when a token started the task (`user` is then its owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenid: Option<&'a str>,
    /// `running` or `stopped`.
    status: &'static str,
    /// `OK` or the error, once stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    exitstatus: Option<&'a str>,
}

/// One task in `GET /nodes/{node}/tasks`.
#[derive(Serialize)]
struct TaskEntry<'a> {
    upid: &'a str,
    node: &'a str,
    pid: u32,
    pstart: u32,
    starttime: u64,
    #[serde(rename = "type")]
    ty: &'a str,
    id: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endtime: Option<u64>,
    /// The exit status (`OK` or the error), once stopped; absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

/// One line of `GET .../tasks/{upid}/log`.
#[derive(Serialize)]
struct LogLine<'a> {
    n: usize,
    t: &'a str,
}

/// `root@pam!driver` as PVE shows a task's owner: `user` `root@pam` and `tokenid` `driver`
/// (pve-manager `PVE/API2/Tasks.pm` `$convert_token_task`, for the list and the status).
fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once('!') {
        Some((u, t)) if u.contains('@') && !t.is_empty() => (u, Some(t)),
        _ => (user, None),
    }
}

fn find_task(shared: &Shared, upid: &str) -> ApiResult<Task> {
    if parse_upid(upid).is_none() {
        return Err(ApiError::param("upid", "unable to parse worker upid"));
    }
    shared
        .lock()
        .tasks
        .get(upid)
        .cloned()
        .ok_or_else(|| ApiError::param("upid", "no such task"))
}

pub(crate) fn status(shared: &Arc<Shared>, upid: &str) -> ApiResult<Value> {
    let t = find_task(shared, upid)?;
    let (user, tokenid) = split_user(&t.user);
    data(TaskStatus {
        upid: &t.upid,
        node: &t.node,
        pid: t.pid,
        pstart: t.pstart,
        starttime: t.starttime,
        ty: &t.ttype,
        id: &t.id,
        user,
        tokenid,
        status: if t.running { "running" } else { "stopped" },
        exitstatus: t.exitstatus.as_deref(),
    })
}

/// `GET /nodes/{node}/tasks/{upid}/log[?start=N][&limit=N]`: `[{"n":1,"t":"..."}]`, with
/// `total` beside `data` as PVE sends it.
pub(crate) fn log(shared: &Arc<Shared>, req: &mut ApiRequest, upid: &str) -> ApiResult<Value> {
    let mut params = req.params.clone();
    params.insert("upid", upid);
    params.insert("node", shared.node.clone());
    validate(&params, specs::TASK_LOG, None)?;
    let task = find_task(shared, upid)?;
    let start = params.int("start").unwrap_or(0).max(0) as usize;
    let limit = params.int("limit").unwrap_or(50).max(0) as usize;
    let lines: Vec<LogLine> = task
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|(i, t)| LogLine { n: i + 1, t })
        .collect();
    req.extra.insert("total".into(), json!(task.log.len()));
    data(lines)
}

/// `GET /nodes/{node}/tasks[?vmid=N][&limit=N][&source=active|archive|all]`, newest first.
pub(crate) fn list(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let st = shared.lock();
    let vmid = req.params.get("vmid");
    let limit = req.params.int("limit").unwrap_or(50).max(0) as usize;
    let source = req.params.get("source").unwrap_or("archive");
    data(
        st.task_order
            .iter()
            .rev()
            .filter_map(|u| st.tasks.get(u))
            .filter(|t| vmid.is_none_or(|v| t.id == v))
            .filter(|t| match source {
                "active" => t.running,
                "all" => true,
                _ => !t.running,
            })
            .take(limit)
            .map(|t| {
                let (user, tokenid) = split_user(&t.user);
                TaskEntry {
                    upid: &t.upid,
                    node: &t.node,
                    pid: t.pid,
                    pstart: t.pstart,
                    starttime: t.starttime,
                    ty: &t.ttype,
                    id: &t.id,
                    user,
                    tokenid,
                    endtime: t.endtime,
                    status: t.exitstatus.as_deref(),
                }
            })
            .collect::<Vec<_>>(),
    )
}
