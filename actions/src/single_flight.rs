//! One shared entry per key, made on first use: what lets concurrent steps of a run wait
//! for the same work (a template download, a template made) instead of each doing it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Entries by key; each is made with `Default` the first time its key is asked for and
/// shared by every later caller.
pub struct SingleFlight<K, T> {
    entries: Mutex<HashMap<K, Arc<T>>>,
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        SingleFlight {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, T: Default> SingleFlight<K, T> {
    /// The entry of `key`, shared by everyone who asks for it.
    pub fn entry(&self, key: K) -> Arc<T> {
        // A holder that panicked left the map whole: entries are only ever added.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.entry(key).or_default().clone()
    }
}
