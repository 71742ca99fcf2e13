//! [`GroupCommit`]: many small writes to the cache database, made durable
//! together in one redb transaction.
//!
//! Why it exists: a durable redb commit costs an `fsync` (milliseconds on
//! most disks), so one commit per `UpdateActionResult` caps a busy cache at
//! a few hundred updates per second. Here the first writer to arrive becomes
//! the leader: it takes every write queued so far, applies them all in one
//! write transaction and commits it with [`redb::Durability::Immediate`];
//! writes that arrive meanwhile queue up and go into the leader's next
//! transaction. A caller is answered only after the transaction holding its
//! write has committed, so an acknowledged write survives `kill -9` and a
//! power loss exactly as before; a single writer pays the same one commit.
//!
//! A batch succeeds or fails as a whole (the writes are plain inserts,
//! validated before they are queued, so the only failures are the
//! database's own, which would fail each of them alone too).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::CacheError;

/// One queued write: applied to the group's write transaction.
pub type Write = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), CacheError> + Send>;

type Reply = oneshot::Sender<Result<(), CacheError>>;

#[derive(Default)]
struct Queue {
    writes: Vec<(Write, Reply)>,
    /// Whether a leader is committing (and will look at the queue again).
    leading: bool,
}

/// The write side of a cache database (see the module doc).
pub struct GroupCommit {
    db: Arc<redb::Database>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
}

impl GroupCommit {
    /// Group commits on `db`.
    pub fn new(db: Arc<redb::Database>) -> Arc<Self> {
        Arc::new(GroupCommit { db, queue: Mutex::default(), commits: AtomicU64::new(0) })
    }

    /// Transactions committed so far (each holding one or more writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Applies `write` in a durable transaction, possibly shared with other
    /// writes; returns once that transaction has committed.
    pub async fn run(self: &Arc<Self>, write: Write) -> Result<(), CacheError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().map_err(|_| CacheError::database("commit queue lock poisoned"))?;
            queue.writes.push((write, reply));
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            let leader = self.clone();
            tokio::task::spawn_blocking(move || leader.lead());
        }
        answer.await.map_err(|_| CacheError::database("the commit was abandoned"))?
    }

    /// Commits queued writes in batches until the queue is empty.
    fn lead(self: Arc<Self>) {
        let mut batch = self.next_batch();
        while let Some(writes) = batch {
            let (applies, replies): (Vec<Write>, Vec<Reply>) = writes.into_iter().unzip();
            let outcome = self.commit(applies);
            batch = self.next_batch();
            if batch.is_none() {
                // Let go of the database before answering: a caller may drop
                // its last handle and reopen the file as soon as it is answered.
                drop(self);
                answer(replies, outcome);
                return;
            }
            answer(replies, outcome);
        }
    }

    /// Takes everything queued, or stops leading when nothing is.
    fn next_batch(&self) -> Option<Vec<(Write, Reply)>> {
        let mut queue = match self.queue.lock() {
            Ok(queue) => queue,
            // Poisoned: nothing can be committed any more; the queued
            // writers see their reply channel dropped.
            Err(poisoned) => poisoned.into_inner(),
        };
        if queue.writes.is_empty() {
            queue.leading = false;
            return None;
        }
        Some(std::mem::take(&mut queue.writes))
    }

    /// Applies `writes` in one transaction and commits it.
    fn commit(&self, writes: Vec<Write>) -> Result<(), String> {
        let run = || -> Result<(), CacheError> {
            let txn = self.db.begin_write().map_err(CacheError::database)?;
            for write in writes {
                write(&txn)?; // an error drops `txn`, which aborts it
            }
            txn.commit().map_err(CacheError::database)?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        match std::panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("a cache write panicked".into()),
        }
    }
}

fn answer(replies: Vec<Reply>, outcome: Result<(), String>) {
    for reply in replies {
        // A caller that went away no longer needs its answer.
        let _ = reply.send(outcome.clone().map_err(CacheError::Database));
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn insert(key: u64) -> Write {
        Box::new(move |txn| {
            let mut table = txn.open_table(T).map_err(CacheError::database)?;
            table.insert(key, key * 2).map_err(CacheError::database)?;
            Ok(())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_all_committed_in_fewer_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("g.redb"), false).unwrap();
        let group = GroupCommit::new(db.clone());
        let tasks: Vec<_> = (0..200u64)
            .map(|k| {
                let group = group.clone();
                tokio::spawn(async move { group.run(insert(k)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // 200 writers arriving while a commit is under way share transactions.
        assert!(group.commits() < 200, "{} transactions for 200 writes", group.commits());
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        for k in 0..200u64 {
            assert_eq!(table.get(k).unwrap().map(|v| v.value()), Some(k * 2));
        }
    }

    #[tokio::test]
    async fn a_failing_write_fails_its_batch_and_the_next_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("g.redb"), false).unwrap();
        let group = GroupCommit::new(db.clone());
        let failing: Write = Box::new(|_| Err(CacheError::InvalidArgument("no".into())));
        assert!(matches!(group.run(failing).await, Err(CacheError::Database(_))));
        group.run(insert(7)).await.unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(T).unwrap().get(7).unwrap().map(|v| v.value()), Some(14));
    }
}
