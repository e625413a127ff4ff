//! Poison-tolerant locking for state shared between threads, and the one
//! way plain threads wait on async work.
//!
//! A lock is poisoned when a thread panics while holding it. The state sluice
//! keeps behind its locks is bookkeeping (maps of handles, sets of partitions,
//! job runs, the active transform chain) that each critical section leaves
//! whole, so a panic elsewhere does not make it wrong. Ignoring the poison keeps
//! one failed thread (a client library's callback, a job, a request handler)
//! from taking the pipeline and the admin API down with it.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The runtime that async work started from plain threads runs on: the
/// clients that only speak async (delta-rs, the AWS SDK, reqwest for
/// webhooks, rdkafka's admin client, DataFusion for report jobs) are driven
/// here by pipeline workers, which are plain threads doing CPU-bound work.
/// One runtime for the process: its threads and connection pools are shared,
/// and no connection outlives the runtime that opened it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-blocking")
            .enable_all()
            .build()
            .expect("starting the runtime for blocking calls")
    })
}

/// Run `fut` to completion, blocking the calling thread. Callable from any
/// thread: one that drives another runtime's tasks (pipeline start-up inside
/// the server, an admin request) may not block, so there a helper thread waits.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    off_runtime(|| runtime().block_on(fut))
}

/// Start `fut` on the blocking runtime and return at once; the handle says
/// when it is done ([`tokio::task::JoinHandle::is_finished`]) and yields its
/// output through [`block_on`].
pub(crate) fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut)
}

/// Run `f`, which blocks on a runtime, on a thread that may: a plain thread
/// when the caller drives another runtime's tasks.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
    f()
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

    #[test]
    fn block_on_works_inside_and_outside_a_runtime() {
        assert_eq!(block_on(async { 1 + 1 }), 2);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert_eq!(rt.block_on(async { block_on(async { 3 }) }), 3, "a helper thread waits where the caller may not block");
        let handle = spawn(async { 4 });
        assert_eq!(block_on(handle).expect("task"), 4);
    }
}
