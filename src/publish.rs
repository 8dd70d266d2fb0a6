//! Publication of the current state to readers, lock-free, and the
//! reclamation of the states readers have let go of.
//!
//! The current [`SnapshotState`] sits behind a crossbeam-epoch atomic
//! pointer: a reader pins the epoch only long enough to clone the `Arc`, so a
//! search never holds a guard and never waits for the writer. Every state
//! ever published is also held in a *graveyard* until only the graveyard
//! holds it; [`Published::reclaim`], called by the writer and the merger,
//! then drops it. So the last reference to an old state, and with it the
//! last reference to a retired segment (whose drop unmaps and unlinks its
//! files) and to a redb read transaction, is never dropped by a reader. A
//! read-only handle retires no segment, so what its reclaim drops only
//! unmaps: files on disk are the writer's to remove.

use crate::state::SnapshotState;
use crossbeam_epoch::{self as epoch, Atomic, Owned};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// The current state, swapped atomically by the writer and the merger.
#[derive(Debug)]
pub(crate) struct Published {
    current: Atomic<Arc<SnapshotState>>,
    /// Every state published and not yet reclaimed, the current one included.
    graveyard: Mutex<Vec<Arc<SnapshotState>>>,
}

impl Published {
    pub(crate) fn new(state: Arc<SnapshotState>) -> Self {
        Published {
            graveyard: Mutex::new(vec![state.clone()]),
            current: Atomic::new(state),
        }
    }

    /// The current state. Pins the epoch only while cloning the `Arc`.
    #[allow(unsafe_code)]
    pub(crate) fn load(&self) -> Arc<SnapshotState> {
        let guard = epoch::pin();
        let shared = self.current.load(Ordering::Acquire, &guard);
        // `current` is set in `new` and only ever swapped for another non-null
        // pointer; `publish` retires old ones with `defer_destroy`.
        // SAFETY: non-null, and not destroyed while `guard` is pinned.
        let state = unsafe { shared.deref() };
        Arc::clone(state)
    }

    /// Makes `state` current. Readers that already loaded the old state keep it
    /// (their `Arc`); the old pointer is freed once no pinned reader can see
    /// it, and the old state once [`Published::reclaim`] finds it unused.
    #[allow(unsafe_code)]
    pub(crate) fn publish(&self, state: Arc<SnapshotState>) {
        self.graveyard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state.clone());
        let guard = epoch::pin();
        let old = self
            .current
            .swap(Owned::new(state), Ordering::AcqRel, &guard);
        // The swap unlinked `old`; readers that loaded it before are pinned.
        // What it drops is an `Arc` the graveyard also holds: no state is freed.
        // SAFETY: unlinked, so never loaded again; freed after pinned readers unpin.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
        self.reclaim();
    }

    /// Drops the states that nobody but the graveyard holds any more: called
    /// on the writer's and the merger's threads, never on a reader's.
    pub(crate) fn reclaim(&self) {
        let unused: Vec<Arc<SnapshotState>> = {
            let mut graveyard = self
                .graveyard
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (unused, kept) = std::mem::take(&mut *graveyard)
                .into_iter()
                .partition(|s| Arc::strong_count(s) == 1);
            *graveyard = kept;
            unused
        };
        // Dropped outside the lock: unlinking files takes a while.
        drop(unused);
    }
}

impl Drop for Published {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no thread can be loading `current` any more,
        // so the pointer can be taken back without a guard; it is non-null.
        unsafe {
            let current = self.current.load(Ordering::Acquire, epoch::unprotected());
            drop(current.into_owned());
        }
    }
}
