//! What the projectors have announced on [`event_store::wake::CHECKPOINTS_CHANNEL`], kept in
//! process: each projection's latest announced checkpoint (so a consistency wait is woken by
//! the move that reaches its token and needs no query to see it), and the versions of the rows
//! the announcements moved (so a revalidation of an item can be answered without a query).
//!
//! The version map only ever claims what it was told, and forgets whenever it may have missed
//! something: an entry `(id, v)` exists only if an announcement said the row reached `v`, and
//! every later announcement of that projection was received and applied (a newer version
//! replaces it). An incomplete announcement (too many changes for one payload), a bare wake-up
//! (a projector that does not say what changed), a generation change (a rebuild swap), a
//! [`Delivery::Gap`] (the listener reconnected) or a lagged receiver each clear what they may
//! have invalidated. So once the announcement of a move is applied, the old version is never
//! vouched for again.
//!
//! The map also learns from the query API's own reads ([`Announced::learn`]), so a row read
//! once is revalidated without a query even when no announcement named it since start. A read
//! is learned only if nothing was applied to its projection between the moment just before the
//! read was sent ([`Announced::mark`]) and the moment it is learned: an announcement applied
//! before the mark was committed before the read began, so the read saw its move; one applied
//! after it makes the mark stale and the read is dropped. Learning therefore never puts back a
//! version that an applied announcement has moved past. It is only sound when reads go to the
//! primary the projector writes to (a replica may not yet show what was announced), which the
//! state decides ([`crate::state::AppState::learns_from_reads`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use event_store::wake::{CheckpointMoved, Delivery};
use tokio::sync::Notify;

use crate::checkpoint::Checkpoint;

/// The most row versions kept per projection; past it the projection's entries are dropped
/// and refilled by later announcements, which bounds memory by this, not by the read model.
pub const MAX_VERSIONS_PER_PROJECTION: usize = 100_000;

#[derive(Debug, Default)]
struct View {
    /// The newest checkpoint announced since start, if any.
    seen: Option<Checkpoint>,
    /// Whether `seen` is current as far as the listener can tell: an announcement was applied
    /// and nothing since (a gap, a lag, a bare wake-up) may have hidden a later one.
    live: bool,
    /// Aggregate id -> the version an announcement (or a learned read) said the row reached.
    versions: HashMap<String, i64>,
    /// Deliveries applied to this view since start: a read learned with an older count may
    /// have missed a move.
    applied: u64,
}

/// What had been applied just before a read was sent ([`Announced::mark`]); a read is learned
/// only while it is still current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// [`Announced::forgotten`] at the time.
    forgotten: u64,
    /// The view's `applied` at the time (0 before its first delivery).
    applied: u64,
}

/// The in-process view of the announcements. Shared by every request; each method holds the
/// lock for a map operation only.
#[derive(Debug, Default)]
pub struct Announced {
    views: Mutex<HashMap<String, View>>,
    /// Woken (every registered waiter) after each delivery has been applied.
    changed: Notify,
    /// Counts deliveries that say "something moved" without saying what: a waiter that sees it
    /// change must read the checkpoint from the database.
    plain_wakes: AtomicU64,
    /// Counts the times every view was forgotten at once (a gap, a lag, a bare wake naming no
    /// known projection); read and compared under the views' lock.
    forgotten: AtomicU64,
}

impl Announced {
    /// Applies one delivery of the listener and wakes every waiter.
    pub fn apply(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Payload(payload) => match CheckpointMoved::from_payload(payload) {
                Some(moved) => self.moved(&moved),
                None => {
                    // An older projector's bare name (or anything else): rows of that
                    // projection (or of any, when it names none we know) moved unseen.
                    self.with_views(|views| match views.get_mut(payload.as_ref()) {
                        Some(view) => {
                            view.versions.clear();
                            view.live = false;
                            view.applied += 1;
                        }
                        None => self.clear_all(views),
                    });
                    self.plain_wakes.fetch_add(1, Ordering::SeqCst);
                }
            },
            Delivery::Gap => self.forget_all(),
        }
        self.changed.notify_waiters();
    }

    /// What a receiver that lagged behind the listener must do: announcements were dropped.
    pub fn lagged(&self) {
        self.forget_all();
        self.changed.notify_waiters();
    }

    fn forget_all(&self) {
        self.with_views(|views| self.clear_all(views));
        self.plain_wakes.fetch_add(1, Ordering::SeqCst);
    }

    /// Clears every view, and makes every outstanding [`Mark`] stale, including those of
    /// projections that have no view yet. Called with the views' lock held.
    fn clear_all(&self, views: &mut HashMap<String, View>) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        views.values_mut().for_each(|view| {
            view.versions.clear();
            view.live = false;
        });
    }

    fn moved(&self, moved: &CheckpointMoved) {
        let announced = Checkpoint {
            position: moved.checkpoint,
            generation: moved.generation,
        };
        self.with_views(|views| {
            let view = views.entry(moved.projection.clone()).or_default();
            view.applied += 1;
            let same_generation = view
                .seen
                .is_none_or(|seen| seen.generation == announced.generation);
            // An announcement older than one already applied (never expected: one projector
            // announces in commit order) cannot be placed among the others: forget instead.
            let stale = same_generation
                && view
                    .seen
                    .is_some_and(|seen| seen.position >= announced.position);
            if !same_generation || !moved.complete || stale {
                view.versions.clear();
            }
            if moved.complete && !stale {
                if view.versions.len() + moved.changed.len() > MAX_VERSIONS_PER_PROJECTION {
                    view.versions.clear();
                }
                for (id, version) in &moved.changed {
                    // Within a generation a row's version only grows.
                    let entry = view.versions.entry(id.clone()).or_insert(*version);
                    *entry = (*entry).max(*version);
                }
            }
            // A new generation replaces the checkpoint; within one, it only moves forward
            // (announcements of one projection can arrive out of order across reconnects).
            view.seen = match view.seen {
                Some(seen) if same_generation && seen.position >= announced.position => Some(seen),
                _ => Some(announced),
            };
            // Every move after this one is announced too: until a delivery says otherwise,
            // `seen` is where the checkpoint is, or behind it by announcements on their way.
            view.live = true;
        });
    }

    fn with_views<R>(&self, f: impl FnOnce(&mut HashMap<String, View>) -> R) -> R {
        // A panic while holding the lock cannot leave a view half-updated in a way that
        // matters more than forgetting it: recover the map rather than fail every request.
        let mut views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut views)
    }

    /// The newest checkpoint announced for `projection` since start.
    pub fn seen(&self, projection: &str) -> Option<Checkpoint> {
        self.with_views(|views| views.get(projection).and_then(|view| view.seen))
    }

    /// The newest checkpoint announced for `projection`, while no later move can have gone
    /// unannounced: one was applied and no gap, lag or bare wake-up came since. A waiter may
    /// then rely on the next announcement.
    pub fn live(&self, projection: &str) -> Option<Checkpoint> {
        self.with_views(|views| {
            views
                .get(projection)
                .filter(|view| view.live)
                .and_then(|view| view.seen)
        })
    }

    /// The version of row `id` of `projection` as last announced, while it is known to be
    /// current (see the module documentation).
    pub fn version(&self, projection: &str, id: &str) -> Option<i64> {
        self.with_views(|views| {
            views
                .get(projection)
                .and_then(|view| view.versions.get(id).copied())
        })
    }

    /// What has been applied to `projection` so far: take it just before sending a read whose
    /// versions are to be [`learn`](Self::learn)ed.
    pub fn mark(&self, projection: &str) -> Mark {
        self.with_views(|views| Mark {
            forgotten: self.forgotten.load(Ordering::SeqCst),
            applied: views.get(projection).map_or(0, |view| view.applied),
        })
    }

    /// Records that row `id` of `projection` was read at `version` by a read sent after `mark`
    /// was taken, unless a delivery was applied to the projection since (the read may then
    /// predate an announced move). Returns whether it was recorded. A full view records
    /// nothing rather than forget what it holds.
    pub fn learn(&self, projection: &str, mark: Mark, id: &str, version: i64) -> bool {
        self.with_views(|views| {
            if self.forgotten.load(Ordering::SeqCst) != mark.forgotten {
                return false;
            }
            // Looked up before it is made: a read learns on every 200, and `entry` would copy
            // the name each time.
            if !views.contains_key(projection) {
                views.insert(projection.to_owned(), View::default());
            }
            let Some(view) = views.get_mut(projection) else {
                return false;
            };
            if view.applied != mark.applied {
                return false;
            }
            let room = view.versions.len() < MAX_VERSIONS_PER_PROJECTION;
            match view.versions.get_mut(id) {
                Some(known) => *known = (*known).max(version),
                None if room => {
                    view.versions.insert(id.to_owned(), version);
                }
                None => return false,
            }
            true
        })
    }

    /// Woken after every delivery; register (`enable`) before checking, or a wake-up between
    /// the check and the wait is lost.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// How many deliveries so far said "something moved" without saying what.
    pub fn plain_wakes(&self) -> u64 {
        self.plain_wakes.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use events::LogPosition;

    use super::*;

    fn moved(position: i64, generation: i64, changed: &[(&str, i64)], complete: bool) -> Delivery {
        let moved = CheckpointMoved {
            projection: "projects".to_owned(),
            checkpoint: LogPosition {
                tx_id: position,
                position,
            },
            generation,
            changed: changed
                .iter()
                .map(|(id, version)| ((*id).to_owned(), *version))
                .collect(),
            complete,
        };
        Delivery::Payload(Arc::from(moved.to_payload()))
    }

    #[test]
    fn a_newer_announcement_replaces_the_version_it_moved() {
        let announced = Announced::default();
        announced.apply(&moved(1, 0, &[("a", 1), ("b", 1)], true));
        announced.apply(&moved(2, 0, &[("a", 2)], true));
        assert_eq!(announced.version("projects", "a"), Some(2));
        assert_eq!(announced.version("projects", "b"), Some(1));
        assert_eq!(
            announced
                .seen("projects")
                .map(|seen| seen.position.position),
            Some(2)
        );
    }

    #[test]
    fn whatever_may_hide_a_move_forgets_the_versions() {
        let forgetting: [&dyn Fn(&Announced); 5] = [
            &|a| a.apply(&moved(2, 0, &[], false)),
            &|a| a.apply(&moved(2, 1, &[], true)),
            &|a| a.apply(&Delivery::Gap),
            &|a| a.apply(&Delivery::Payload(Arc::from("projects"))),
            &|a| a.lagged(),
        ];
        for (n, forget) in forgetting.iter().enumerate() {
            let announced = Announced::default();
            announced.apply(&moved(1, 0, &[("a", 1)], true));
            forget(&announced);
            assert_eq!(announced.version("projects", "a"), None, "case {n}");
        }
    }

    #[test]
    fn whatever_may_hide_a_move_makes_the_checkpoint_not_live_until_the_next_announcement() {
        let hiding: [&dyn Fn(&Announced); 4] = [
            &|a| a.apply(&Delivery::Gap),
            &|a| a.apply(&Delivery::Payload(Arc::from("projects"))),
            &|a| a.apply(&Delivery::Payload(Arc::from("unknown"))),
            &|a| a.lagged(),
        ];
        for (n, hide) in hiding.iter().enumerate() {
            let announced = Announced::default();
            assert_eq!(
                announced.live("projects"),
                None,
                "case {n}: nothing announced yet"
            );
            announced.apply(&moved(1, 0, &[], true));
            assert!(announced.live("projects").is_some(), "case {n}");
            hide(&announced);
            assert_eq!(announced.live("projects"), None, "case {n}");
            assert!(announced.seen("projects").is_some(), "case {n}: still seen");
            announced.apply(&moved(2, 0, &[], false));
            assert_eq!(
                announced
                    .live("projects")
                    .map(|live| live.position.position),
                Some(2),
                "case {n}"
            );
        }
    }

    #[test]
    fn a_read_is_learned_only_when_nothing_was_applied_since_its_mark() {
        let announced = Announced::default();
        let mark = announced.mark("projects");
        assert!(announced.learn("projects", mark, "a", 3));
        assert_eq!(announced.version("projects", "a"), Some(3));

        // An announcement lands while the read is in flight: the read may predate it.
        let mark = announced.mark("projects");
        announced.apply(&moved(1, 0, &[("a", 4)], true));
        assert!(!announced.learn("projects", mark, "a", 3));
        assert_eq!(announced.version("projects", "a"), Some(4));

        // Another projection's announcement does not matter; a gap does.
        let mark = announced.mark("projects");
        announced.apply(&Delivery::Payload(Arc::from(
            CheckpointMoved {
                projection: "tickets".to_owned(),
                checkpoint: LogPosition::default(),
                generation: 0,
                changed: Vec::new(),
                complete: true,
            }
            .to_payload(),
        )));
        assert!(announced.learn("projects", mark, "b", 1));
        let mark = announced.mark("posts");
        announced.apply(&Delivery::Gap);
        assert!(!announced.learn("posts", mark, "c", 1));
        assert_eq!(announced.version("posts", "c"), None);
    }

    #[test]
    fn a_learned_read_never_lowers_a_version() {
        let announced = Announced::default();
        announced.apply(&moved(1, 0, &[("a", 5)], true));
        let mark = announced.mark("projects");
        assert!(announced.learn("projects", mark, "a", 4));
        assert_eq!(announced.version("projects", "a"), Some(5));
    }

    #[test]
    fn a_late_announcement_does_not_move_the_checkpoint_back() {
        let announced = Announced::default();
        announced.apply(&moved(5, 0, &[], true));
        announced.apply(&moved(3, 0, &[], true));
        assert_eq!(
            announced
                .seen("projects")
                .map(|seen| seen.position.position),
            Some(5)
        );
        // A rebuild swap may land anywhere: its generation wins.
        announced.apply(&moved(4, 1, &[], true));
        assert_eq!(
            announced
                .seen("projects")
                .map(|seen| (seen.position.position, seen.generation)),
            Some((4, 1))
        );
    }
}
