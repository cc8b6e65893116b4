//! `engine`: the pure logic of driver. Manifests and their validation, the
//! node graph, plans, and site-config discovery. Reads local files; never
//! touches the network (that is `actions`' job).

#![forbid(unsafe_code)]

pub mod action;
pub mod catalog;
pub mod clock;
pub mod clone_limit;
pub mod delegation;
pub mod executor;
pub mod files;
pub mod graph;
pub mod manifest;
pub mod node_config;
pub mod outcome;
pub mod output;
pub mod ownership;
pub mod placement;
pub mod plan;
pub mod ready_queue;
pub mod report;
pub mod secrets;
pub mod site_config;
pub mod state;
pub mod yaml;

pub use graph::ManifestGraph;
pub use manifest::{InvalidManifest, Manifest};
pub use plan::{Plan, Verb};
