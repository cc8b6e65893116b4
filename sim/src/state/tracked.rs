//! [`Tracked`]: a map that knows what changed, so the journal saves only that.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

/// A map that remembers which keys were changed (through `get_mut`, `insert`, `remove`) since the journal last took them. Reading goes through `Deref`; there is
/// deliberately no `DerefMut`, so every change is seen.
#[derive(Debug)]
pub(crate) struct Tracked<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    /// Only touched under the state lock (the whole `State` is behind one mutex).
    dirty: RefCell<BTreeSet<K>>,
}

impl<K: Ord + Clone, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            map: BTreeMap::new(),
            dirty: RefCell::new(BTreeSet::new()),
        }
    }
}

impl<K: Ord + Clone, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<'a, K: Ord + Clone, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    pub(crate) fn from_map(map: BTreeMap<K, V>) -> Self {
        Tracked {
            map,
            dirty: RefCell::new(BTreeSet::new()),
        }
    }

    fn mark(&self, k: &K) {
        self.dirty.borrow_mut().insert(k.clone());
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if self.map.contains_key(k) {
            self.mark(k);
        }
        self.map.get_mut(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.mark(&k);
        self.map.insert(k, v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let old = self.map.remove(k);
        if old.is_some() {
            self.mark(k);
        }
        old
    }

    /// The keys changed since the last call.
    pub(crate) fn take_dirty(&self) -> BTreeSet<K> {
        std::mem::take(&mut *self.dirty.borrow_mut())
    }
}
