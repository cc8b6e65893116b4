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
