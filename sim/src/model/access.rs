//! Who may use the API: stored API tokens and login tickets.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// An API token PVE knows (its secret is stored, like PVE's `token.cfg` shadow).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub secret: String,
    #[serde(default)]
    pub privsep: bool,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expire: u64,
}

/// A login ticket from `POST /access/ticket`.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub user: String,
    pub csrf: String,
    pub issued: Instant,
}
