//! `actions`: everything in driver that touches the world. The PVE API
//! client and guest operations (`pve`), and the `NodeRunner` that the
//! engine's executor drives (`runner`).

pub mod preflight;
pub mod pve;
pub mod runner;
