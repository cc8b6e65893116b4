//! The simulator's integration tests: its API over HTTPS and its guests' SSH.
//!
//! One binary for the crate's integration tests (each file a module): linking one
//! test binary instead of one per file shortens the build (see BENCHMARKS.md).

mod common;

mod api;
mod containers;
mod contention;
mod fidelity;
mod mirror;
mod ssh;
mod storage;
mod storage_content;
