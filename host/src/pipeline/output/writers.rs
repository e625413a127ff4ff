//! Which topics a pipeline of this process is about to write: a writer that
//! holds records it has read but not yet rolled into its output topic (an
//! open segment, pending output) makes that topic busy.
//!
//! Output topics are written once per roll, so a pipeline reading one sees it
//! quiet between the upstream's rolls; a router must not take that silence
//! for idleness (it would close windows and expire waiting join keys while
//! their records are still on their way). Only writers in this process are
//! seen; across processes the watermark settings must leave room for the
//! upstream's `roll.max_age_ms` (docs/aggregation.md).

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// topic → writer id → whether that writer holds records for it.
static WRITERS: LazyLock<Mutex<HashMap<String, HashMap<u64, bool>>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One writer of a topic, registered while it lives. Busy from the start: a
/// writer that has not looked at its input yet may hold anything.
pub struct TopicWriter {
    topic: String,
    id: u64,
}

impl TopicWriter {
    pub fn new(topic: &str) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock(&WRITERS).entry(topic.to_owned()).or_default().insert(id, true);
        TopicWriter { topic: topic.to_owned(), id }
    }

    /// Whether the writer holds records it has not written yet.
    pub fn set_busy(&self, busy: bool) {
        if let Some(w) = lock(&WRITERS).get_mut(&self.topic) {
            w.insert(self.id, busy);
        }
    }
}

impl Drop for TopicWriter {
    fn drop(&mut self) {
        let mut writers = lock(&WRITERS);
        if let Some(w) = writers.get_mut(&self.topic) {
            w.remove(&self.id);
            if w.is_empty() {
                writers.remove(&self.topic);
            }
        }
    }
}

/// Whether a writer of this process holds records for `topic` it has not written yet.
pub fn busy(topic: &str) -> bool {
    lock(&WRITERS).get(topic).is_some_and(|w| w.values().any(|b| *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_busy_while_one_of_its_writers_holds_records() {
        assert!(!busy("writers-test"));
        let a = TopicWriter::new("writers-test");
        assert!(busy("writers-test"), "busy until the writer has looked at its input");
        a.set_busy(false);
        assert!(!busy("writers-test"));
        let b = TopicWriter::new("writers-test");
        b.set_busy(false);
        a.set_busy(true);
        assert!(busy("writers-test"));
        drop(a);
        assert!(!busy("writers-test"), "a writer that went away holds nothing");
        drop(b);
        assert!(!busy("writers-test"));
    }
}
