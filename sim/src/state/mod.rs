//! The simulated world behind its lock: [`State`] (guests, tokens, tickets, tasks, faults),
//! the lock and the saving around it, and [`Shared`], what every request handler and task
//! shares. One mutex guards the state (held only for short, non-async sections). With a state
//! folder the lasting part (guests, tokens, finished tasks) is saved after every change (a
//! journal of what changed, compacted into `state.json`: [`persist`]), so
//! `driver sim serve --state-dir D` survives restarts and kills.
//!
//! Files: [`world`] (the state and its task registry), [`tracked`] (maps that know what
//! changed), [`persist`] (snapshot + journal), [`cell`] (the lock, saving, and the narrow
//! handle guest SSH holds), [`shared`] (what handlers share), [`seed`](mod@seed) (template guests).

mod cell;
mod persist;
mod seed;
mod shared;
mod tracked;
mod world;

pub(crate) use persist::load;
pub(crate) use seed::{seed, templates_on};
pub(crate) use shared::Shared;
pub(crate) use world::State;
