//! List totals kept in process, each valid at exactly one checkpoint of its projection.
//!
//! Counting every row a list's filters match is the dearest part of a list page (a few
//! milliseconds at 50,000 projects, growing with the table), and it only changes when the
//! projection moves: a read-model table is written only by its projector, in the transaction
//! that moves the checkpoint. So a total counted in a statement that also read the checkpoint
//! (one statement, one snapshot) is the total for as long as the checkpoint reads the same,
//! position and generation. [`crate::read::page::fetch_page`] reads the checkpoint with every
//! page and counts only when no total is kept for the checkpoint it saw.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::checkpoint::Checkpoint;

/// (table, filter key) -> the checkpoint a total was counted at, and the total.
type Entries = HashMap<(&'static str, String), (Checkpoint, i64)>;

/// Totals by (table, filter key): the checkpoint each was counted at, and the count.
#[derive(Debug)]
pub struct Totals {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl Totals {
    /// Keeps at most `capacity` totals (0: none, every page counts). Past it, everything is
    /// dropped and refilled by later pages: memory is bounded by this, not by the filters
    /// clients send.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether totals are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The total of `key` in `table` counted at checkpoint `at`, if one is kept.
    pub fn get(&self, table: &'static str, key: &str, at: Checkpoint) -> Option<i64> {
        if !self.enabled() {
            return None;
        }
        let entries = self.lock();
        // The tuple key needs an owned String to look up; the clone is cheaper than the count.
        entries
            .get(&(table, key.to_owned()))
            .filter(|(counted_at, _)| *counted_at == at)
            .map(|(_, total)| *total)
    }

    /// Keeps `total` of `key` in `table`, counted in the same statement that read checkpoint
    /// `at`. A total of an older checkpoint than the one kept never replaces it.
    pub fn put(&self, table: &'static str, key: String, at: Checkpoint, total: i64) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&(table, key.clone())) {
            entries.clear();
        }
        let entry = entries.entry((table, key)).or_insert((at, total));
        let newer = entry.0.generation != at.generation || entry.0.position <= at.position;
        if newer {
            *entry = (at, total);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves at worst a stale-checkpoint entry, which is
        // never served for another checkpoint: recover rather than fail every list.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use events::LogPosition;

    use super::*;

    fn at(position: i64, generation: i64) -> Checkpoint {
        Checkpoint {
            position: LogPosition {
                tx_id: position,
                position,
            },
            generation,
        }
    }

    #[test]
    fn a_total_is_served_only_at_the_checkpoint_it_was_counted_at() {
        let totals = Totals::new(8);
        totals.put("projects", "a".into(), at(5, 0), 40);
        assert_eq!(totals.get("projects", "a", at(5, 0)), Some(40));
        assert_eq!(totals.get("projects", "a", at(6, 0)), None);
        assert_eq!(totals.get("projects", "a", at(5, 1)), None);
        assert_eq!(totals.get("projects", "b", at(5, 0)), None);
        assert_eq!(totals.get("tickets", "a", at(5, 0)), None);
    }

    #[test]
    fn an_older_count_does_not_replace_a_newer_one() {
        let totals = Totals::new(8);
        totals.put("projects", "a".into(), at(6, 0), 41);
        totals.put("projects", "a".into(), at(5, 0), 40);
        assert_eq!(totals.get("projects", "a", at(6, 0)), Some(41));
        totals.put("projects", "a".into(), at(1, 1), 3);
        assert_eq!(totals.get("projects", "a", at(1, 1)), Some(3));
    }

    #[test]
    fn a_full_cache_starts_over_and_a_zero_capacity_keeps_nothing() {
        let totals = Totals::new(2);
        totals.put("projects", "a".into(), at(1, 0), 1);
        totals.put("projects", "b".into(), at(1, 0), 2);
        totals.put("projects", "c".into(), at(1, 0), 3);
        assert_eq!(totals.get("projects", "a", at(1, 0)), None);
        assert_eq!(totals.get("projects", "c", at(1, 0)), Some(3));
        let off = Totals::new(0);
        off.put("projects", "a".into(), at(1, 0), 1);
        assert_eq!(off.get("projects", "a", at(1, 0)), None);
    }
}
