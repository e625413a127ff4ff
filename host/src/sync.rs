//! Poison-tolerant locking for state shared between threads.
//!
//! A lock is poisoned when a thread panics while holding it. The state sluice
//! keeps behind its locks is bookkeeping (maps of handles, sets of partitions,
//! job runs, the active transform chain) that each critical section leaves
//! whole, so a panic elsewhere does not make it wrong. Ignoring the poison keeps
//! one failed thread (a client library's callback, a job, a request handler)
//! from taking the pipeline and the admin API down with it.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_while_holding_the_lock_does_not_spread() {
        let m = Arc::new(Mutex::new(vec![1]));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().expect("first lock");
            panic!("a thread fails while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(2);
        assert_eq!(*lock(&m), vec![1, 2]);

        let l = Arc::new(RwLock::new(0));
        let held = l.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.write().expect("first lock");
            panic!("a thread fails while holding the lock");
        })
        .join();
        *write(&l) += 1;
        assert_eq!(*read(&l), 1);
    }
}
