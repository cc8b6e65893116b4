//! A guest's address: its first usable IPv4, from the guest agent (VMs) or the container's
//! interfaces, polled for until it has one.

use std::time::Duration;

use serde_json::Value;

use super::client::{PveClient, PveError};
use super::guests::GuestKind;
use crate::poll::{self, Backoff, GaveUp, Poll};

/// Polls for a guest's address: 0.1 s doubling to 3 s.
const ADDRESS_POLL: Backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(3));

impl PveClient {
    /// The guest's first non-loopback IPv4, from the guest agent (VMs) or
    /// the container's interfaces; `None` while it has none (or the agent is
    /// not up yet).
    pub async fn guest_ipv4(&self, kind: GuestKind, vmid: u32) -> Result<Option<String>, PveError> {
        Ok(self.ipv4_answer(kind, vmid).await?.ok())
    }

    /// The guest's IPv4, or what PVE answered instead (for a wait's report).
    async fn ipv4_answer(
        &self,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<Result<String, String>, PveError> {
        let (tail, list_key) = match kind {
            GuestKind::Qemu => ("agent/network-get-interfaces", Some("result")),
            GuestKind::Lxc => ("interfaces", None),
        };
        let asked = self.on_guest(kind, vmid, |at| async move {
            self.get(&format!("{}/{tail}", at.path)).await
        });
        let v = match asked.await {
            Ok(v) => v,
            Err(PveError::Api { message, .. })
                if message.contains("guest agent is not running")
                    || message.contains("not running") =>
            {
                return Ok(Err(message))
            }
            Err(e) => return Err(e),
        };
        let ifaces = match list_key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v,
        };
        Ok(first_ipv4(&ifaces).ok_or_else(|| {
            let all = ifaces.to_string();
            let mut shown: String = all.chars().take(200).collect();
            if shown.len() < all.len() {
                shown.push_str("...");
            }
            format!("no usable IPv4 in {shown}")
        }))
    }

    /// Polls for the guest's IPv4 until `timeout` (a last time at it).
    pub async fn wait_ipv4(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<String, PveError> {
        let r = poll::until(timeout, ADDRESS_POLL, || async {
            match self.ipv4_answer(kind, vmid).await {
                Ok(Ok(ip)) => Poll::Ready(ip),
                Ok(Err(answer)) => Poll::Pending(Ok(answer)),
                Err(e) => Poll::Fail(Err(e)),
            }
        })
        .await;
        match r {
            Ok((ip, _)) => Ok(ip),
            Err(GaveUp { last: Err(e), .. }) => Err(e),
            Err(GaveUp {
                last: Ok(last),
                waited,
                ..
            }) => Err(PveError::NoAddress { vmid, waited, last }),
        }
    }
}

/// The first IPv4 of an interface other than `lo` that is not link-local
/// (a simulated guest's address is in 127.0.0.0/8 on its `eth0`), from either PVE shape:
/// agent `[{"ip-addresses": [{"ip-address-type": "ipv4", "ip-address": ..}]}]`
/// or lxc `[{"inet": "10.0.0.5/24"}]`.
fn first_ipv4(ifaces: &Value) -> Option<String> {
    let usable = |ip: &str| {
        let ip = ip.split('/').next().unwrap_or(ip);
        match ip.parse::<std::net::Ipv4Addr>() {
            Ok(a) if !a.is_link_local() && !a.is_unspecified() => Some(a.to_string()),
            _ => None,
        }
    };
    for iface in ifaces.as_array()? {
        if iface.get("name").and_then(Value::as_str) == Some("lo") {
            continue;
        }
        if let Some(addrs) = iface.get("ip-addresses").and_then(Value::as_array) {
            for a in addrs {
                if a.get("ip-address-type").and_then(Value::as_str) == Some("ipv4") {
                    if let Some(ip) = a.get("ip-address").and_then(Value::as_str).and_then(usable) {
                        return Some(ip);
                    }
                }
            }
        }
        if let Some(ip) = iface.get("inet").and_then(Value::as_str).and_then(usable) {
            return Some(ip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_from_agent_and_lxc_shapes() {
        let agent = serde_json::json!([
            {"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1"}]},
            {"name": "eth0", "ip-addresses": [
                {"ip-address-type": "ipv6", "ip-address": "fe80::1"},
                {"ip-address-type": "ipv4", "ip-address": "10.0.12.155", "prefix": 24}]}
        ]);
        assert_eq!(first_ipv4(&agent).as_deref(), Some("10.0.12.155"));
        let lxc = serde_json::json!([{"name": "lo", "inet": "127.0.0.1/8"}, {"name": "eth0", "inet": "10.0.0.5/24"}]);
        assert_eq!(first_ipv4(&lxc).as_deref(), Some("10.0.0.5"));
        assert_eq!(first_ipv4(&serde_json::json!([])), None);
    }
}
