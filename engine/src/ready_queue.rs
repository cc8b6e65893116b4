//! A ready queue over items `0..len` that wait for one another: Kahn's
//! algorithm taken one step at a time. An item is ready once every item it
//! waits for is done; a blocked item (one that waits, directly or not, on
//! an item that will never be done) never becomes ready.
//!
//! The executor's phase walker, the graph's create order and the manifest's
//! `depends_on` cycle check all walk their dependencies with it, so the
//! three agree on what "ready" means. A leaf: it imports nothing from the
//! crate.
//!
//! Dependents are kept in one flat array (compressed rows), not a `Vec`
//! per item: a 100k-node manifest is planned in well under a second.

use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct ReadyQueue {
    /// The items that wait for item `i` are `after[starts[i]..starts[i + 1]]`,
    /// in ascending order (so ties keep the items' own order).
    starts: Vec<usize>,
    after: Vec<usize>,
    /// How many items each one still waits for.
    waiting: Vec<usize>,
    member: Vec<bool>,
    blocked: Vec<bool>,
    ready: VecDeque<usize>,
}

impl ReadyQueue {
    /// `len` items; each `(first, then)` edge makes `then` wait for `first`.
    /// Duplicate edges count once; edges naming items past `len` are ignored.
    pub fn new(len: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        Self::among(len, |_| true, edges)
    }

    /// Like [`new`](Self::new), but only the items `member` accepts take
    /// part: the others never become ready, and edges from or to them are
    /// ignored (e.g. steps another driver runs).
    pub fn among(
        len: usize,
        member: impl Fn(usize) -> bool,
        edges: impl IntoIterator<Item = (usize, usize)>,
    ) -> Self {
        let member: Vec<bool> = (0..len).map(member).collect();
        let mut pairs: Vec<(usize, usize)> = edges
            .into_iter()
            .filter(|&(a, b)| a < len && b < len && member[a] && member[b])
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut starts = vec![0usize; len + 1];
        let mut waiting = vec![0usize; len];
        for &(a, b) in &pairs {
            starts[a + 1] += 1;
            waiting[b] += 1;
        }
        for i in 0..len {
            starts[i + 1] += starts[i];
        }
        let after = pairs.into_iter().map(|(_, b)| b).collect();
        let ready = (0..len).filter(|&i| member[i] && waiting[i] == 0).collect();
        ReadyQueue {
            starts,
            after,
            waiting,
            blocked: vec![false; len],
            member,
            ready,
        }
    }

    /// The next ready item, first come first served.
    pub fn pop_ready(&mut self) -> Option<usize> {
        self.ready.pop_front()
    }

    /// Item `i` is done: what waited only for it becomes ready (queued in
    /// ascending order). Returns how many became ready.
    pub fn done(&mut self, i: usize) -> usize {
        let mut n = 0;
        for k in self.starts[i]..self.starts[i + 1] {
            let d = self.after[k];
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 && !self.blocked[d] {
                self.ready.push_back(d);
                n += 1;
            }
        }
        n
    }

    /// Item `i` will never be done: everything that waits on it, directly
    /// or not, is blocked. Returns the items this newly blocked, nearest
    /// first.
    pub fn block(&mut self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut queue: VecDeque<usize> = self.dependents(i).iter().copied().collect();
        while let Some(d) = queue.pop_front() {
            if self.blocked[d] {
                continue;
            }
            self.blocked[d] = true;
            out.push(d);
            queue.extend(self.dependents(d).iter().copied());
        }
        out
    }

    /// The items that wait for `i`, ascending.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.after[self.starts[i]..self.starts[i + 1]]
    }

    /// Members that still wait for something and are not blocked: once
    /// nothing is ready any more, these sit on (or behind) a cycle.
    pub fn stuck(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.waiting.len())
            .filter(|&i| self.member[i] && self.waiting[i] > 0 && !self.blocked[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut ReadyQueue) -> Vec<usize> {
        let mut order = Vec::new();
        while let Some(i) = q.pop_ready() {
            order.push(i);
            q.done(i);
        }
        order
    }

    #[test]
    fn orders_breadth_first_keeping_item_order_among_ties() {
        // 0 -> 3, 0 -> 1, 2 -> 1, 3 -> 4 (edges given out of order, one twice).
        let mut q = ReadyQueue::new(5, [(3, 4), (0, 3), (2, 1), (0, 1), (0, 3)]);
        assert_eq!(q.dependents(0), [1, 3]);
        assert_eq!(drain(&mut q), [0, 2, 3, 1, 4]);
        assert_eq!(q.stuck().count(), 0);
    }

    #[test]
    fn done_reports_what_became_ready() {
        let mut q = ReadyQueue::new(3, [(0, 2), (1, 2)]);
        assert_eq!(q.pop_ready(), Some(0));
        assert_eq!(q.done(0), 0, "2 still waits for 1");
        assert_eq!(q.pop_ready(), Some(1));
        assert_eq!(q.done(1), 1);
        assert_eq!(q.pop_ready(), Some(2));
        assert_eq!(q.pop_ready(), None);
    }

    #[test]
    fn a_blocked_item_and_what_waits_on_it_never_become_ready() {
        // 0 -> 1 -> 2, 0 -> 3, 4 alone.
        let mut q = ReadyQueue::new(5, [(0, 1), (1, 2), (0, 3)]);
        assert_eq!(q.pop_ready(), Some(0));
        assert_eq!(q.block(0), [1, 3, 2]);
        assert_eq!(q.block(0), Vec::<usize>::new(), "already blocked");
        assert_eq!(drain(&mut q), [4]);
        assert_eq!(q.stuck().count(), 0, "blocked items are not stuck");
    }

    #[test]
    fn items_left_out_never_become_ready_and_hold_nothing_up() {
        // 1 is left out; 2 waits for it and for 0, so only for 0.
        let mut q = ReadyQueue::among(3, |i| i != 1, [(1, 2), (0, 2)]);
        assert_eq!(drain(&mut q), [0, 2]);
    }

    #[test]
    fn a_cycle_is_what_is_left_stuck() {
        let mut q = ReadyQueue::new(4, [(0, 1), (1, 2), (2, 1), (2, 3)]);
        assert_eq!(drain(&mut q), [0]);
        assert_eq!(q.stuck().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_long_chain_needs_no_recursion() {
        let n = 200_000;
        let mut q = ReadyQueue::new(n, (1..n).map(|i| (i - 1, i)));
        let order = drain(&mut q);
        assert_eq!(order.len(), n);
        assert_eq!(order[n - 1], n - 1);
    }
}
