//! The runtime query work runs on, apart from the one that answers HTTP.
//!
//! DataFusion computes inside its streams' polls: an operator may hold a worker thread for a
//! long time before it yields (a large join's batch, an unoptimised build). On the server's own
//! runtime that starves everything else that runtime drives: other requests, and the timer that
//! enforces the query timeout. So, as DataFusion's documentation recommends for servers, the
//! work whose cost the dataset or the user decides (the SQL box's queries, the stats over every
//! table) runs on a runtime of its own ([`QueryRuntime`]), and the request waits for it with the
//! timeout on the server's runtime, where the timer always fires on time. The queries behind
//! cards, the clip page and the summary stay on the server's runtime: they look clips up by id
//! through scans that yield between batches, and must answer while a user's query computes.
//!
//! A query past its timeout, or whose request went away, is aborted ([`QueryTask`]); its task
//! stops at its next yield, which DataFusion's cooperative scans reach between batches.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{JoinError, JoinHandle};

use super::ServeError;

/// A multi-threaded tokio runtime for query execution, shut down without waiting when dropped
/// (a runtime must not block on its workers inside another runtime's task).
pub struct QueryRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    /// A runtime with `threads` workers (at least one).
    pub fn new(threads: usize) -> std::io::Result<QueryRuntime> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kelp-query")
            .enable_all()
            .build()?;
        Ok(QueryRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// A runtime with one worker per available core.
    pub fn per_core() -> std::io::Result<QueryRuntime> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        QueryRuntime::new(cores)
    }

    /// Runs `work` here and waits for it on the caller's runtime, at most `timeout` when one is
    /// given; past it the work is aborted and `what` is named in the timeout error.
    pub async fn run<T>(
        &self,
        timeout: Option<Duration>,
        what: &str,
        work: impl Future<Output = Result<T, ServeError>> + Send + 'static,
    ) -> Result<T, ServeError>
    where
        T: Send + 'static,
    {
        let task = self.spawn(work).output();
        let finished = match timeout {
            Some(limit) => tokio::time::timeout(limit, task).await.map_err(|_| {
                ServeError::Timeout(format!(
                    "{what} ran past {limit:?} and was stopped (kelp serve --timeout-s sets the \
                     limit)"
                ))
            })?,
            None => task.await,
        };
        finished.map_err(|e| ServeError::Internal(format!("{what}: its task failed: {e}")))?
    }

    /// Runs `work` on this runtime; the returned task aborts it when dropped.
    pub fn spawn<F>(&self, work: F) -> QueryTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        QueryTask {
            handle: self.handle.spawn(work),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Query work running on a [`QueryRuntime`]: awaiting it gives its output; dropping it (a
/// timeout, a request that went away) aborts the work.
pub struct QueryTask<T> {
    handle: JoinHandle<T>,
}

impl<T> QueryTask<T> {
    /// Waits for the work's output.
    pub async fn output(mut self) -> Result<T, JoinError> {
        (&mut self.handle).await
    }
}

impl<T> Drop for QueryTask<T> {
    fn drop(&mut self) {
        // A no-op once the work has finished.
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "current_thread")]
    async fn the_callers_timer_fires_while_query_work_holds_its_thread() {
        let runtime = QueryRuntime::new(1).unwrap();
        // Work that never yields for 2 s, the way a long operator's poll does.
        let task = runtime.spawn(async {
            std::thread::sleep(Duration::from_secs(2));
            7
        });
        let t = Instant::now();
        let waited = tokio::time::timeout(Duration::from_millis(100), task.output()).await;
        assert!(waited.is_err(), "the work should still be running");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_task_aborts_the_work_at_its_next_yield() {
        let runtime = QueryRuntime::new(1).unwrap();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let task = runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::SeqCst);
        });
        drop(task);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!finished.load(Ordering::SeqCst), "aborted work ran on");
        // Work that is awaited runs to its end.
        let done = runtime.spawn(async { 3 }).output().await.unwrap();
        assert_eq!(done, 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn run_names_what_ran_past_its_timeout_and_waits_without_one() {
        let runtime = QueryRuntime::new(1).unwrap();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(1)
        };
        let e = runtime
            .run(Some(Duration::from_millis(50)), "the cards' queries", slow)
            .await
            .unwrap_err();
        assert!(matches!(e, ServeError::Timeout(_)), "{e:?}");
        assert!(
            e.to_string().contains("the cards' queries ran past 50ms"),
            "{e}"
        );
        let waited = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(2)
        };
        assert_eq!(runtime.run(None, "kelp stats", waited).await.unwrap(), 2);
        let failed = async { Err::<i32, _>(ServeError::BadQuery("no".into())) };
        let e = runtime.run(None, "x", failed).await.unwrap_err();
        assert!(matches!(e, ServeError::BadQuery(_)), "{e:?}");
    }
}
