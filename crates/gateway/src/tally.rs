//! How many of something each key holds (connections per client network, webhook deliveries
//! per endpoint), each given back by a guard however its holder ends: a panic or a dropped
//! task cannot leak a count.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// Counts per key. Cheap to clone: clones share the counts.
#[derive(Debug)]
pub struct Tally<K>(Arc<Mutex<HashMap<K, usize>>>);

impl<K> Clone for Tally<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: Eq + Hash + Clone> Tally<K> {
    fn counts(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more for `key`, unless it holds `limit` already.
    pub fn take(&self, key: K, limit: Option<usize>) -> Option<Held<K>> {
        let mut counts = self.counts();
        let count = counts.entry(key.clone()).or_default();
        if limit.is_some_and(|limit| *count >= limit) {
            return None;
        }
        *count += 1;
        Some(Held { tally: self.clone(), key })
    }

    /// The keys holding `n` or more.
    pub fn holding_at_least(&self, n: usize) -> Vec<K> {
        self.counts().iter().filter(|(_, held)| **held >= n).map(|(key, _)| key.clone()).collect()
    }

    /// How many are held, all keys together.
    pub fn total(&self) -> usize {
        self.counts().values().sum()
    }
}

/// One counted for a key, given back when dropped.
#[derive(Debug)]
pub struct Held<K: Eq + Hash + Clone> {
    tally: Tally<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = self.tally.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_limited_and_given_back_when_dropped() {
        let tally = Tally::default();
        let a1 = tally.take("a", Some(2)).unwrap();
        let _a2 = tally.take("a", Some(2)).unwrap();
        assert!(tally.take("a", Some(2)).is_none(), "the limit holds");
        let _b = tally.take("b", None).unwrap();
        assert_eq!((tally.total(), tally.holding_at_least(2)), (3, vec!["a"]));
        drop(a1);
        assert!(tally.take("a", Some(2)).is_some(), "given back");
    }
}
