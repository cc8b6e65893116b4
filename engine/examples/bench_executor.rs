//! Executor benchmark (run by scripts/bench-executor.sh; figures in BENCHMARKS.md).
//!
//! 1. Overhead per node: 10k sibling VMs, a runner that returns at once,
//!    parallelism 8, state journaled with and without fsync, next to a bare
//!    JoinSet spawning the same number of no-op tasks (the floor).
//! 2. Makespan of wide-50 with fixed action delays, at --parallelism 8 and 1,
//!    each divided by its ideal makespan.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::executor::{
    ActionCall, ActionError, ActionOutput, Executor, NodeRunner, RunOptions, StopToken,
};
use engine::manifest::{load, NodeSpec, Source};
use engine::plan::{Action, Plan, Verb};
use engine::state::StateStore;
use engine::ManifestGraph;

struct Fixed {
    delays: Vec<(Action, Duration)>,
}

impl NodeRunner for Fixed {
    async fn run(&self, call: ActionCall) -> Result<ActionOutput, ActionError> {
        if let Some((_, d)) = self.delays.iter().find(|(a, _)| *a == call.action) {
            tokio::time::sleep(*d).await;
        }
        Ok(ActionOutput::default())
    }
    async fn exists(
        &self,
        _: &NodeSpec,
        _: &str,
        _: Option<u32>,
        _: &engine::ownership::Owner,
    ) -> Result<bool, ActionError> {
        Ok(false)
    }
}

async fn run_once(
    yaml: &str,
    runner: Arc<Fixed>,
    parallelism: usize,
    fsync: bool,
    dir: &std::path::Path,
) -> Duration {
    let m = load(Source::new("bench", yaml.to_string()))
        .expect("valid manifest")
        .manifest;
    let g = ManifestGraph::new(&m);
    let plan = Plan::build(Verb::Create, &g, "bench");
    let _ = std::fs::remove_dir_all(dir);
    let (store, prev) = StateStore::open(dir, &m.name, "bench", fsync).expect("state dir");
    let opts = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    let start = Instant::now();
    let res = Executor::new(&g, runner, opts, None)
        .run(&plan, store, prev, StopToken::new())
        .await;
    let took = start.elapsed();
    assert!(res.success, "{:?}", res.error);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let disk = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "bench-out/state".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let n = 10_000;
    let mut flat = String::from("schema_version: 2\nname: flat10k\nnodes:\n");
    for i in 0..n {
        flat.push_str(&format!("  - {{name: v{i}, type: vm}}\n"));
    }
    let noop = Arc::new(Fixed { delays: vec![] });
    let disk_dir = std::path::PathBuf::from(&disk);
    let shm_dir = std::path::PathBuf::from("/dev/shm/driver-bench-state");
    let (mut fs_disk, mut nofs_disk, mut fs_shm, mut bare) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        fs_disk.push(rt.block_on(run_once(&flat, noop.clone(), 8, true, &disk_dir)));
        nofs_disk.push(rt.block_on(run_once(&flat, noop.clone(), 8, false, &disk_dir)));
        fs_shm.push(rt.block_on(run_once(&flat, noop.clone(), 8, true, &shm_dir)));
        bare.push(rt.block_on(async {
            let start = Instant::now();
            let sem = Arc::new(tokio::sync::Semaphore::new(8));
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n * 4 {
                let permit = sem.clone().acquire_owned().await.unwrap();
                set.spawn(async move { drop(permit) });
            }
            while set.join_next().await.is_some() {}
            start.elapsed()
        }));
    }
    let _ = std::fs::remove_dir_all(&shm_dir);
    println!("| overhead, 10k nodes x 4 no-op actions, parallelism 8 | runs | median total | per node | ratio to floor |");
    println!("|---|---|---|---|---|");
    let floor = median(bare.clone());
    for (label, v) in [
        ("executor, state journal fsynced, on disk", fs_disk),
        ("executor, state journal not fsynced, on disk", nofs_disk),
        ("executor, state journal fsynced, on tmpfs", fs_shm),
        ("floor: bare JoinSet of 40k no-op tasks", bare),
    ] {
        let m = median(v);
        println!(
            "| {label} | {runs} | {:.1} ms | {:.1} µs | {:.1} |",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() * 1e6 / n as f64,
            m.as_secs_f64() / floor.as_secs_f64()
        );
    }

    let wide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/wide-50.yaml"
    ))
    .unwrap();
    let ms = Duration::from_millis;
    let delays = vec![
        (Action::Provision, ms(200)),
        (Action::StartVm, ms(100)),
        (Action::WaitIp, ms(250)),
        (Action::WaitSsh, ms(100)),
    ];
    let per_node: Duration = delays.iter().map(|(_, d)| *d).sum();
    let fixed = Arc::new(Fixed { delays });
    println!();
    println!("| wide-50, 650 ms of fixed delays per node (4 actions) | runs | median makespan | ideal | makespan / ideal |");
    println!("|---|---|---|---|---|");
    let mut medians = vec![];
    for p in [8usize, 1] {
        let mut v = vec![];
        for _ in 0..runs {
            v.push(rt.block_on(run_once(&wide, fixed.clone(), p, true, &disk_dir)));
        }
        let m = median(v);
        let ideal = per_node * 50usize.div_ceil(p) as u32;
        medians.push(m);
        println!(
            "| --parallelism {p} | {runs} | {:.0} ms | {:.0} ms | {:.3} |",
            m.as_secs_f64() * 1e3,
            ideal.as_secs_f64() * 1e3,
            m.as_secs_f64() / ideal.as_secs_f64()
        );
    }
    println!();
    println!(
        "speed-up of --parallelism 8 over 1 (the sequential original's order): {:.2}x",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&disk_dir);
}
