//! Locking that outlives a panic: every mutex here guards state that stays consistent between
//! operations (counters, LRU lists, buffers), so a holder that panicked must not take the
//! server down with it.

use std::sync::{Mutex, MutexGuard};

/// The guard of `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
