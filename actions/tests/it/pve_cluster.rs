//! The client on a simulated 3-node cluster (pvesim `cluster_nodes: 3`): where each guest is
//! comes from a kept map, asked again when PVE answers that a guest is not on the node asked
//! (so a guest migrated behind the client's back is still found); and an upload cut off
//! partway is sent again whole, read from its file, through the next endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actions::pve::{GuestKind, PveClient, PveTarget, TlsTrust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    h: sim::SimHandle,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(bare: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let h = sim::PveSim::start(sim::SimConfig {
            cluster_nodes: 3,
            bare,
            guest_ssh_port: 0,
            state_dir: Some(dir.path().to_path_buf()),
            ..sim::SimConfig::default()
        })
        .await
        .expect("pvesim cluster starts");
        Cluster { h, _dir: dir }
    }

    fn url(&self, node: &str) -> String {
        let urls = self.h.node_urls();
        urls.into_iter().find(|(n, _)| n == node).unwrap().1
    }

    fn addr(&self, node: &str) -> SocketAddr {
        let addrs = self.h.node_addrs();
        addrs.into_iter().find(|(n, _)| n == node).unwrap().1
    }

    /// A client of node `pve` through `endpoint`, then `others` in turn.
    async fn client(&self, endpoint: &str, others: &[String]) -> PveClient {
        let token = self.h.token();
        let c = PveClient::new(&PveTarget {
            endpoint: endpoint.to_string(),
            node: "pve".into(),
            token_id: token.full_id(),
            token_secret: token.secret.clone(),
            trust: TlsTrust::Fingerprint(
                actions::pve::tls::parse_fingerprint(self.h.fingerprint()).unwrap(),
            ),
        })
        .unwrap()
        .with_fallbacks(others);
        assert!(c.detect_cluster().await.unwrap());
        c
    }

    /// How many `METHOD path` requests the simulator answered.
    fn asked(&self, what: &str) -> u64 {
        self.h.requests().get(what).copied().unwrap_or(0)
    }
}

/// Placement counts this run's guests whose node is fixed from the start (so a guest placed
/// before its pinned siblings are made does not take their room), and counts each once,
/// made or not, running or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_counts_the_runs_fixed_guests_once_whichever_is_made_first() {
    use engine::manifest::NodePolicy::Spread;
    let c = Cluster::start(false).await;
    let ours = c.client(&c.url("pve"), &[]).await;
    ours.clone_guest(GuestKind::Qemu, 9000, 151, "c", None, false, WAIT)
        .await
        .unwrap();
    ours.set_config(GuestKind::Qemu, 151, &[("memory", "2048".into())])
        .await
        .unwrap();
    // `c` stays on pve (the node file's), `a` is pinned to pve2 and `d` to pve3, each a
    // little bigger: pve has the most room left, before anything runs and once `c` runs.
    ours.reserve("c", "pve", 2048);
    ours.reserve("a", "pve2", 2048 + 512);
    ours.reserve("d", "pve3", 2048 + 1024);
    assert_eq!(ours.choose_node(Spread, "b", 256).await.unwrap(), "pve");
    ours.start(GuestKind::Qemu, 151, WAIT).await.unwrap();
    // Counted twice (its reservation and as a running guest), pve would have the least room.
    assert_eq!(ours.choose_node(Spread, "b2", 256).await.unwrap(), "pve");
    // Without the reservations, pve is the one node with a guest running.
    let fresh = c.client(&c.url("pve"), &[]).await;
    assert_ne!(fresh.choose_node(Spread, "b3", 256).await.unwrap(), "pve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_migrated_behind_the_clients_back_is_found_where_it_is_now() {
    let c = Cluster::start(false).await;
    let ours = c.client(&c.url("pve"), &[]).await;
    let theirs = c.client(&c.url("pve2"), &[]).await;
    // The seeded template 9000 is on the shared storage: a linked clone on pve.
    ours.clone_guest(GuestKind::Qemu, 9000, 150, "moved", None, false, WAIT)
        .await
        .unwrap();
    assert_eq!(c.h.guest(150).unwrap().node, "pve");
    let resources = "GET /cluster/resources";
    let asked = c.asked(resources);
    // The client put it there itself: asking about it needs no listing.
    assert_eq!(
        ours.status(GuestKind::Qemu, 150).await.unwrap().as_deref(),
        Some("stopped")
    );
    ours.config(GuestKind::Qemu, 150).await.unwrap();
    assert_eq!(c.asked(resources), asked, "{:?}", c.h.requests());

    // Someone else moves it to pve2.
    theirs
        .migrate_guest(GuestKind::Qemu, 150, "pve2", false, WAIT)
        .await
        .unwrap();
    assert_eq!(c.h.guest(150).unwrap().node, "pve2");
    let asked = c.asked(resources);
    let on_pve = "GET /nodes/pve/qemu/150/status/current";
    let before = c.asked(on_pve);
    // Our map still says pve: PVE answers that it is not there, the map is asked again, and
    // the call goes to pve2 (not "does not exist", which would read as gone).
    assert_eq!(
        ours.status(GuestKind::Qemu, 150).await.unwrap().as_deref(),
        Some("stopped")
    );
    assert_eq!(c.asked(on_pve), before + 1, "{:?}", c.h.requests());
    assert_eq!(c.asked(resources), asked + 1, "{:?}", c.h.requests());
    assert_eq!(ours.guest_node(150).await.unwrap(), "pve2");
    // From then on, straight to pve2.
    ours.start(GuestKind::Qemu, 150, WAIT).await.unwrap();
    ours.stop(GuestKind::Qemu, 150, WAIT).await.unwrap();
    assert_eq!(c.asked(resources), asked + 1, "{:?}", c.h.requests());
    ours.delete_guest(GuestKind::Qemu, 150, WAIT).await.unwrap();
    assert!(c.h.guest(150).is_none());
    // A guest that is nowhere is still nowhere (asked once, not twice).
    assert_eq!(ours.status(GuestKind::Qemu, 150).await.unwrap(), None);
    c.h.shutdown().await;
}

/// A TCP relay to `to` that cuts the first connection over which the client sends more than
/// `limit` bytes (an upload; API calls are small) and refuses connections from then on, as a
/// node that goes down in the middle of an upload. Says how many bytes it let through first.
struct CuttingProxy {
    addr: SocketAddr,
    cut_after: Arc<AtomicU64>,
}

impl CuttingProxy {
    async fn start(to: SocketAddr, limit: u64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut_after = Arc::new(AtomicU64::new(0));
        let (cutting, mut cut) = mpsc::channel::<oneshot::Sender<()>>(1);
        let seen = cut_after.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, _)) = accepted else { return };
                        tokio::spawn(relay(inbound, to, limit, seen.clone(), cutting.clone()));
                    }
                    // Closed before the cut connection is, so the client's next try is refused.
                    Some(closed) = cut.recv() => {
                        drop(listener);
                        let _ = closed.send(());
                        return;
                    }
                }
            }
        });
        CuttingProxy { addr, cut_after }
    }
}

async fn relay(
    inbound: TcpStream,
    to: SocketAddr,
    limit: u64,
    cut_after: Arc<AtomicU64>,
    cutting: mpsc::Sender<oneshot::Sender<()>>,
) {
    let Ok(outbound) = TcpStream::connect(to).await else {
        return;
    };
    let (mut from_client, mut to_client) = inbound.into_split();
    let (mut from_server, mut to_server) = outbound.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if sent + n as u64 > limit {
            cut_after.store(sent, Ordering::SeqCst);
            let (closed, listener_gone) = oneshot::channel();
            if cutting.send(closed).await.is_ok() {
                let _ = listener_gone.await;
            }
            back.abort();
            return;
        }
        if to_server.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to_server.shutdown().await;
    let _ = back.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_partway_is_sent_again_whole_through_the_next_endpoint() {
    let c = Cluster::start(true).await;
    let proxy = CuttingProxy::start(c.addr("pve"), 256 * 1024).await;
    let client = c
        .client(&format!("https://{}", proxy.addr), &[c.url("pve2")])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.raw");
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let sum: String = ring::digest::digest(&ring::digest::SHA256, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let upid = client
        .upload(
            "local",
            "import",
            &file,
            "cut.raw",
            Some(("sha256", &sum)),
            |_| {},
        )
        .await
        .unwrap();
    // The checksum holds: the second send had the whole file.
    client.wait_task(&upid, WAIT).await.unwrap();
    let cut = proxy.cut_after.load(Ordering::SeqCst);
    assert!(
        cut > 0 && cut < data.len() as u64,
        "the first send was cut after {cut} bytes"
    );
    // Sent again through pve2's endpoint (the proxy to pve's refuses connections since the
    // cut), and still pve's upload: pve2 passes a call for pve on to it, as pveproxy does.
    assert!(upid.starts_with("UPID:pve:"), "pve's task: {upid}");
    assert_eq!(
        c.asked("POST /nodes/pve/storage/local/upload"),
        2,
        "{:?}",
        c.h.requests()
    );
    let vols = client.volumes("local", "import").await.unwrap();
    let vol = vols.iter().find(|v| v.volid == "local:import/cut.raw");
    assert_eq!(vol.map(|v| v.size), Some(data.len() as u64), "{vols:?}");
    c.h.shutdown().await;
}
