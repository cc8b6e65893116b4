//! Serving a simulated cluster's other nodes: binding each node's own endpoint, and
//! serving it, closed while the node is down (a `node_down` fault).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{member_bind, node_names, ClusterInfo, Member};
use crate::state::Shared;

/// For a cluster ([`crate::SimConfig::cluster_nodes`] > 1) whose first node listens at
/// `first`: the membership, and the other nodes' listeners (name, listener).
pub(crate) async fn bind_members(
    config: &crate::SimConfig,
    first: SocketAddr,
) -> Result<(Option<ClusterInfo>, Vec<(String, TcpListener)>), crate::SimError> {
    if config.cluster_nodes <= 1 {
        return Ok((None, Vec::new()));
    }
    let names = node_names(&config.node_name, config.cluster_nodes);
    let mut members = vec![Member {
        name: names[0].clone(),
        nodeid: 1,
        addr: first,
    }];
    let mut listeners = Vec::new();
    for (i, name) in names.iter().enumerate().skip(1) {
        let at = member_bind(config.bind, i as u32);
        let l = TcpListener::bind(at)
            .await
            .map_err(|source| crate::SimError::Bind { addr: at, source })?;
        let addr = l
            .local_addr()
            .map_err(|source| crate::SimError::Bind { addr: at, source })?;
        members.push(Member {
            name: name.clone(),
            nodeid: i as u32 + 1,
            addr,
        });
        listeners.push((name.clone(), l));
    }
    Ok((Some(ClusterInfo { members }), listeners))
}

/// How often a node's server looks whether it went down or came back up.
const DOWN_CHECK: Duration = Duration::from_millis(50);

/// Serves one cluster node's API until `stop` changes. While the node is down (a
/// `node_down` fault) its port is closed, so connections are refused as by a dead host;
/// it is bound again once the fault is gone.
pub(crate) async fn serve_member(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let down = shared.node_down(&shared.node);
        if down && listener.is_some() {
            tracing::info!(node = %shared.node, "pvesim: node down, its API refuses connections");
            listener = None;
            conns.shutdown().await;
        } else if !down && listener.is_none() {
            if let Some(a) = addr {
                match TcpListener::bind(a).await {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(node = %shared.node, "pvesim: cannot listen again on {a}: {e}")
                    }
                }
            }
        }
        let accepted = async {
            match &listener {
                Some(l) => l.accept().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(DOWN_CHECK) => {}
            a = accepted => {
                if let Some((tcp, peer)) = a {
                    if shared.node_down(&shared.node) {
                        drop(tcp);
                    } else {
                        conns.spawn(crate::server::serve_conn(acceptor.clone(), shared.clone(), tcp, peer));
                    }
                }
            }
        }
    }
    conns.shutdown().await;
}
