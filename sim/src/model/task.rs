//! A task record: what `GET /nodes/{node}/tasks/{upid}/status` and `.../log` show, and what
//! the state folder keeps of finished tasks.

use serde::{Deserialize, Serialize};

/// One task as `GET /nodes/{node}/tasks/{upid}/status` and `.../log` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u64,
    #[serde(rename = "type")]
    pub ttype: String,
    pub id: String,
    pub user: String,
    pub running: bool,
    pub exitstatus: Option<String>,
    pub endtime: Option<u64>,
    pub log: Vec<String>,
}

impl Task {
    pub fn status_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.ttype,
            "id": self.id,
            "user": self.user,
            "status": if self.running { "running" } else { "stopped" },
        });
        if let (Some(exit), Some(obj)) = (&self.exitstatus, v.as_object_mut()) {
            obj.insert("exitstatus".into(), exit.clone().into());
        }
        v
    }

    pub fn list_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.ttype,
            "id": self.id,
            "user": self.user,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(end) = self.endtime {
                obj.insert("endtime".into(), end.into());
            }
            if let Some(exit) = &self.exitstatus {
                obj.insert("status".into(), exit.clone().into());
            }
        }
        v
    }
}
