//! Metric handles kept per label set. A `counter!` or `histogram!` with labels that are not
//! literals builds a `metrics::Key` on every call (a vector and a copy of each label) and
//! searches the registry with it; on a read that costs about as much as the handler's own
//! work. The series of a hot path are finite (services, routes, methods, statuses, statement
//! kinds), so each is looked up in the registry once and its handle kept here, found again
//! by borrowed labels without allocating. Handles are made against the process's recorder
//! ([`crate::telemetry::metrics_handle`]), installed first if it is not yet; a thread-local
//! recorder (`metrics::set_default_local_recorder`) does not see these series.

use std::hash::Hash;
use std::sync::RwLock;

use hashbrown::{Equivalent, HashMap};

/// Handles `H` by label set `K`, filled on first use.
#[derive(Debug)]
pub struct Series<K, H> {
    handles: RwLock<HashMap<K, H>>,
}

impl<K, H> Default for Series<K, H> {
    fn default() -> Self {
        Self {
            handles: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, H> Series<K, H> {
    /// No series yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `record` on the handle of `labels`, made (with its owned key) by `register` the
    /// first time these labels are seen.
    pub fn with<Q: Hash + Equivalent<K> + ?Sized>(
        &self,
        labels: &Q,
        register: impl FnOnce() -> (K, H),
        record: impl FnOnce(&H),
    ) {
        // A poisoned lock holds a map that was never left half-written by an insert we made
        // (hashbrown's insert does not panic midway), so its handles are still good.
        {
            let handles = self
                .handles
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(handle) = handles.get(labels) {
                record(handle);
                return;
            }
        }
        // A handle made while no recorder is installed records nothing, ever: install ours
        // first, since a series can be used before the plumbing that installs it is built (a
        // projector loop's statements, a test's).
        let _ = crate::telemetry::metrics_handle();
        let mut handles = self
            .handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (key, handle) = register();
        record(handles.entry(key).or_insert(handle));
    }

    /// How many label sets have a handle.
    pub fn len(&self) -> usize {
        self.handles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no label set has a handle yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Hash, PartialEq, Eq)]
    struct Owned {
        route: Box<str>,
        status: u16,
    }

    #[derive(Hash)]
    struct Borrowed<'a> {
        route: &'a str,
        status: u16,
    }

    impl Equivalent<Owned> for Borrowed<'_> {
        fn equivalent(&self, key: &Owned) -> bool {
            *key.route == *self.route && key.status == self.status
        }
    }

    #[test]
    fn a_label_set_is_registered_once_and_found_again_by_borrowed_labels() {
        let series: Series<Owned, std::sync::atomic::AtomicU64> = Series::new();
        let registered = std::sync::atomic::AtomicU64::new(0);
        let record = |route: &str, status: u16| {
            series.with(
                &Borrowed { route, status },
                || {
                    registered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let key = Owned {
                        route: route.into(),
                        status,
                    };
                    (key, std::sync::atomic::AtomicU64::new(0))
                },
                |count| {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                },
            );
        };
        record("/a", 200);
        record("/a", 200);
        record("/a", 404);
        record("/b", 200);
        record("/a", 200);
        assert_eq!(registered.into_inner(), 3, "one registration per label set");
        assert_eq!(series.len(), 3);
        let counted = |route: &str, status: u16| {
            let mut count = 0;
            series.with(
                &Borrowed { route, status },
                || unreachable!("already registered"),
                |handle| count = handle.load(std::sync::atomic::Ordering::Relaxed),
            );
            count
        };
        assert_eq!(counted("/a", 200), 3);
        assert_eq!(counted("/a", 404), 1);
        assert_eq!(counted("/b", 200), 1);
    }
}
