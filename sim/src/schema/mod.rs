//! PVE-style parameter checks for the endpoints pvesim answers: types, ranges, enumerations
//! and the few formats the driver relies on, with PVE's wording
//! (`type check ('integer') failed - got 'banana'`, `property is missing and it is not
//! optional`, ...). All errors of a request are collected into one 400, as PVE does.
//! Property strings with rich formats (`net0`, `scsi0`, ...) get a light check only.
//!
//! Files: [`check`](mod@check) (one value against its type), [`props`] (guest config properties),
//! [`validate`](mod@validate) (a request against an endpoint's spec), [`specs`] (each endpoint's spec).

mod check;
mod props;
pub(crate) mod specs;
mod validate;

pub(crate) use check::{check, Ty};
pub(crate) use props::prop;
pub(crate) use validate::{validate, ParamSpec, MISSING, NOT_IN_SCHEMA};
