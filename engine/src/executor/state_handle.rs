//! Shared, durable run state for concurrent steps.
//!
//! Steps change the in-memory `RunState` under a mutex and send the changed
//! record to a writer thread, which appends everything that is waiting in one
//! write + fsync (group commit) and then acknowledges. A step awaits the
//! acknowledgement before the side effect the record describes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::state::{NodeState, Record, RunState, StateError, StateStore};

/// Why a change did not reach the disk.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no node #{0} in the state")]
    NoNode(usize),
    #[error("the state writer stopped")]
    WriterStopped,
    /// Shared: one failed write answers every change it carried.
    #[error(transparent)]
    Store(Arc<StateError>),
}

type Ack = oneshot::Sender<Result<(), RecordError>>;

enum Msg {
    Append(Vec<Record>, Ack),
    Snapshot(Box<RunState>, Ack),
}

struct Shared {
    state: Mutex<RunState>,
    tx: Mutex<mpsc::Sender<Msg>>,
}

#[derive(Clone)]
pub struct StateHandle {
    shared: Arc<Shared>,
}

/// The writer thread's end; `join` gives the store back.
pub struct Writer(JoinHandle<StateStore>);

impl Writer {
    pub fn join(self) -> Option<StateStore> {
        self.0.join().ok()
    }
}

impl StateHandle {
    pub fn start(mut store: StateStore, state: RunState) -> (StateHandle, Writer) {
        let (tx, rx) = mpsc::channel::<Msg>();
        let writer = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                // Consecutive appends go out as one write and one fsync.
                let mut records = Vec::new();
                let mut acks = Vec::new();
                for msg in batch {
                    match msg {
                        Msg::Append(r, ack) => {
                            records.extend(r);
                            acks.push(ack);
                        }
                        Msg::Snapshot(st, ack) => {
                            let r = flush(&mut store, &mut records, &mut acks);
                            let r = r.and_then(|()| {
                                store
                                    .snapshot(&st)
                                    .map_err(|e| RecordError::Store(Arc::new(e)))
                            });
                            let _ = ack.send(r);
                        }
                    }
                }
                let _ = flush(&mut store, &mut records, &mut acks);
            }
            store
        });
        (
            StateHandle {
                shared: Arc::new(Shared {
                    state: Mutex::new(state),
                    tx: Mutex::new(tx),
                }),
            },
            Writer(writer),
        )
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: Msg) {
        let tx = self.shared.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(msg);
    }

    /// Changes node `i` and returns once the change is durable.
    pub async fn update(
        &self,
        i: usize,
        f: impl FnOnce(&mut NodeState),
    ) -> Result<(), RecordError> {
        let (ack, done) = oneshot::channel();
        {
            let mut st = self.lock();
            let Some(node) = st.nodes.get_mut(i) else {
                return Err(RecordError::NoNode(i));
            };
            f(node);
            let record = Record::Node(node.clone());
            st.updated_at = crate::clock::now();
            // Sent under the lock, so the journal order is the change order.
            self.send(Msg::Append(vec![record], ack));
        }
        done.await.unwrap_or(Err(RecordError::WriterStopped))
    }

    pub async fn set_context(
        &self,
        key: String,
        value: serde_json::Value,
    ) -> Result<(), RecordError> {
        let (ack, done) = oneshot::channel();
        {
            let mut st = self.lock();
            st.context.insert(key.clone(), value.clone());
            self.send(Msg::Append(vec![Record::Context { key, value }], ack));
        }
        done.await.unwrap_or(Err(RecordError::WriterStopped))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.lock().nodes.iter().position(|n| n.name == name)
    }

    pub fn node(&self, i: usize) -> Option<NodeState> {
        self.lock().nodes.get(i).cloned()
    }

    pub fn read<T>(&self, f: impl FnOnce(&RunState) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the state in memory only: the next [`snapshot`](Self::snapshot) writes it.
    pub fn edit(&self, f: impl FnOnce(&mut RunState)) {
        f(&mut self.lock());
    }

    /// Writes a full snapshot (and empties the journal).
    pub async fn snapshot(&self) -> Result<(), RecordError> {
        let (ack, done) = oneshot::channel();
        {
            let st = self.lock().clone();
            self.send(Msg::Snapshot(Box::new(st), ack));
        }
        done.await.unwrap_or(Err(RecordError::WriterStopped))
    }

    /// Stops the writer once everything sent is written.
    pub fn close(self) {
        // Dropping the last sender ends the writer's loop.
        drop(self);
    }
}

fn flush(
    store: &mut StateStore,
    records: &mut Vec<Record>,
    acks: &mut Vec<Ack>,
) -> Result<(), RecordError> {
    if acks.is_empty() {
        return Ok(());
    }
    let r = store
        .append(records)
        .map_err(|e| RecordError::Store(Arc::new(e)));
    records.clear();
    for ack in acks.drain(..) {
        let _ = ack.send(r.clone());
    }
    r
}
