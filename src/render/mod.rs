//! Renderers: turn plans, graphs and results into text for people or JSON
//! for programs. They only format; they decide nothing.

pub mod graph;
pub mod json;
pub mod plan;
pub mod progress;
pub mod summary;
