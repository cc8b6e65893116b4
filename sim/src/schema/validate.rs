//! Checking a request's parameters against an endpoint's spec: every error collected into
//! one 400, unknown parameters refused, as PVE does.

use std::collections::BTreeMap;

use serde_json::Value;

use super::check::{check, Ty};
use super::props::prop;
use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::params::Params;

/// A parameter of an endpoint: name, type, required.
pub(crate) type ParamSpec = (&'static str, Ty, bool);

pub(crate) const NOT_IN_SCHEMA: &str =
    "property is not defined in schema and the schema does not allow additional properties";
pub(crate) const MISSING: &str = "property is missing and it is not optional";

/// Checks the request's parameters against `spec` (plus guest config properties of `kind`
/// when given). Unknown parameters are errors, as in PVE. Returns the checked values.
pub(crate) fn validate(
    params: &Params,
    spec: &[ParamSpec],
    config_of: Option<GuestKind>,
) -> ApiResult<BTreeMap<String, Value>> {
    let mut errors = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, value) in params.iter() {
        let ty = spec
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, _)| *t)
            .or_else(|| config_of.and_then(|k| prop(k, name)));
        match ty {
            None => {
                errors.insert(name.to_string(), NOT_IN_SCHEMA.to_string());
            }
            Some(ty) => match check(ty, name, value) {
                Ok(v) => {
                    out.insert(name.to_string(), v);
                }
                Err(e) => {
                    errors.insert(name.to_string(), e);
                }
            },
        }
    }
    for (name, _, required) in spec {
        if *required && params.get(name).is_none() {
            errors.insert(name.to_string(), MISSING.to_string());
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::params(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::super::props::qemu_prop;
    use super::*;

    #[test]
    fn pve_wording() {
        let e = check(qemu_prop("cores").unwrap(), "cores", "banana").unwrap_err();
        assert_eq!(e, "type check ('integer') failed - got 'banana'");
        let e = check(qemu_prop("cores").unwrap(), "cores", "0").unwrap_err();
        assert_eq!(e, "value must have a minimum value of 1");
        assert_eq!(
            check(qemu_prop("onboot").unwrap(), "onboot", "yes").unwrap(),
            Value::from(1)
        );
        assert!(check(qemu_prop("sshkeys").unwrap(), "sshkeys", "ssh-ed25519 AAAA").is_err());
        assert!(check(
            qemu_prop("sshkeys").unwrap(),
            "sshkeys",
            "ssh-ed25519%20AAAA"
        )
        .is_ok());
        assert!(qemu_prop("net32").is_none());
        assert!(qemu_prop("net31").is_some());
        assert!(qemu_prop("banana").is_none());
        assert!(check(Ty::DiskSize, "size", "+10G").is_ok());
        assert!(check(Ty::DiskSize, "size", "10X").is_err());
        assert!(check(qemu_prop("ipconfig0").unwrap(), "ipconfig0", "ip=dhcp").is_ok());
        assert!(check(
            qemu_prop("ipconfig0").unwrap(),
            "ipconfig0",
            "ip=10.0.0.5/24,gw=10.0.0.1"
        )
        .is_ok());
        assert!(check(qemu_prop("ipconfig0").unwrap(), "ipconfig0", "ip=banana").is_err());
    }
}
