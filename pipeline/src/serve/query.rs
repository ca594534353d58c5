//! Read-only SQL, one page at a time.
//!
//! Every query is planned by DataFusion and checked with `SQLOptions` that refuse DDL
//! (`CREATE`, `DROP`), DML (`INSERT`, `COPY … TO`) and statements (`SET`, transactions) before
//! anything runs, so the shared session and the dataset never change. A page is the query with
//! `OFFSET`/`LIMIT` applied to its plan (DataFusion pushes the limit into scans and sorts), its
//! batches streamed and encoded until the page is full, then the stream dropped, which stops
//! the work: a query over 10M rows costs what its first pages cost, and the browser never holds
//! more than a page. A page asks for one row more than it shows, to know whether more follow.

use std::time::Instant;

use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::json::{self, Column};
use super::runtime::QueryRuntime;
use super::{Limits, ServeError};

/// What runs: queries only.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// One page of a result.
#[derive(Debug)]
pub struct Page {
    pub columns: Vec<Column>,
    /// The rows, a JSON array of arrays.
    pub rows_json: Vec<u8>,
    pub rows: usize,
    pub offset: usize,
    pub has_more: bool,
    pub elapsed_ms: f64,
}

impl Page {
    /// The page as the `/api/query` response body.
    pub fn to_json(&self) -> Result<String, ServeError> {
        let columns = serde_json::to_string(&self.columns)
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        let rows = std::str::from_utf8(&self.rows_json)
            .map_err(|e| ServeError::Internal(format!("encoding rows: {e}")))?;
        Ok(format!(
            "{{\"columns\":{columns},\"rows\":{rows},\"offset\":{},\"row_count\":{},\"has_more\":{},\"elapsed_ms\":{:.1}}}",
            self.offset, self.rows, self.has_more, self.elapsed_ms
        ))
    }
}

/// Plans `sql` and refuses it unless it only reads.
pub async fn plan(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::logical_expr::LogicalPlan, ServeError> {
    if sql.trim().is_empty() {
        return Err(ServeError::BadQuery("empty query".into()));
    }
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(ServeError::from_query)?;
    read_only().verify_plan(&plan).map_err(|e| {
        ServeError::ReadOnly(format!(
            "kelp serve is read-only: only queries run here (SELECT, WITH, VALUES, EXPLAIN, \
             SHOW, DESCRIBE); CREATE, DROP, INSERT, COPY … TO and SET are refused ({})",
            e.strip_backtrace()
        ))
    })?;
    Ok(plan)
}

/// Rows `offset..offset + limit` of `sql` (limit capped at `limits.max_rows`), within the
/// per-query timeout.
///
/// The query is planned and run on `runtime`, and waited for here, so the timeout fires on time
/// even while an operator computes long inside one poll; the query is then aborted, and stops
/// at its next yield (see [`super::runtime`]): a batch an operator is computing runs to its end
/// on the query runtime, and the request returns at once.
pub async fn page(
    runtime: &QueryRuntime,
    ctx: &SessionContext,
    sql: &str,
    offset: usize,
    limit: usize,
    limits: &Limits,
) -> Result<Page, ServeError> {
    let limit = limit.clamp(1, limits.max_rows.max(1));
    let start = Instant::now();
    let work = run_page(ctx.clone(), sql.to_owned(), offset, limit);
    let mut page = runtime.run(Some(limits.timeout), "the query", work).await?;
    page.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(page)
}

/// Plans and runs `sql`, streaming its batches until `limit` rows and the one after are seen.
async fn run_page(
    ctx: SessionContext,
    sql: String,
    offset: usize,
    limit: usize,
) -> Result<Page, ServeError> {
    let plan = plan(&ctx, &sql).await?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(ServeError::from_query)?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let df = df
        .limit(offset, Some(limit + 1))
        .map_err(ServeError::from_query)?;
    let mut stream = df.execute_stream().await.map_err(ServeError::from_query)?;
    let mut rows_json = vec![b'['];
    let mut first = true;
    let mut rows = 0usize;
    let mut has_more = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(ServeError::from_query)?;
        let take = (limit - rows).min(batch.num_rows());
        json::write_rows(&batch, 0, take, &mut first, &mut rows_json)?;
        rows += take;
        if batch.num_rows() > take {
            has_more = true;
        }
        if rows >= limit {
            // One more row may still come in a later batch.
            if !has_more {
                while let Some(next) = stream.next().await {
                    if next.map_err(ServeError::from_query)?.num_rows() > 0 {
                        has_more = true;
                        break;
                    }
                }
            }
            break;
        }
    }
    rows_json.push(b']');
    Ok(Page {
        columns: json::columns(&schema),
        rows_json,
        rows,
        offset,
        has_more,
        elapsed_ms: 0.0,
    })
}

/// Runs an internal query (cards, the clip page) and collects it on the server's runtime; these
/// are built from checked clip ids and column names, and read little.
pub async fn collect(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>), ServeError> {
    let df = ctx
        .sql_with_options(sql, read_only())
        .await
        .map_err(|e| ServeError::Internal(format!("{sql}: {e}")))?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .map_err(|e| ServeError::Internal(format!("{sql}: {e}")))?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')) AS v(n, s)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        ctx
    }

    fn rt() -> QueryRuntime {
        QueryRuntime::new(1).unwrap()
    }

    fn limits(max_rows: usize) -> Limits {
        Limits {
            timeout: Duration::from_secs(10),
            max_rows,
            concurrent_queries: 1,
        }
    }

    fn values(p: &Page) -> Vec<i64> {
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&p.rows_json).unwrap();
        rows.iter().map(|r| r[0].as_i64().unwrap()).collect()
    }

    #[tokio::test]
    async fn pages_are_disjoint_and_say_whether_more_follow() {
        let ctx = ctx().await;
        let q = "SELECT n FROM t ORDER BY n";
        let a = page(&rt(), &ctx, q, 0, 2, &limits(100)).await.unwrap();
        let b = page(&rt(), &ctx, q, 2, 2, &limits(100)).await.unwrap();
        let c = page(&rt(), &ctx, q, 4, 2, &limits(100)).await.unwrap();
        assert_eq!((values(&a), a.has_more), (vec![1, 2], true));
        assert_eq!((values(&b), b.has_more), (vec![3, 4], true));
        assert_eq!((values(&c), c.has_more), (vec![5], false));
        // The row cap bounds a page whatever the request asks.
        let capped = page(&rt(), &ctx, q, 0, 1000, &limits(3)).await.unwrap();
        assert_eq!((values(&capped), capped.has_more), (vec![1, 2, 3], true));
    }

    #[tokio::test]
    async fn writes_and_session_changes_are_refused_before_they_run() {
        let ctx = ctx().await;
        for sql in [
            "DROP TABLE t",
            "CREATE TABLE u AS SELECT 1",
            "INSERT INTO t VALUES (6, 'f')",
            "COPY t TO '/tmp/kelp-serve-copy.csv'",
            "CREATE VIEW v AS SELECT * FROM t",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let e = page(&rt(), &ctx, sql, 0, 10, &limits(10))
                .await
                .unwrap_err();
            assert!(matches!(e, ServeError::ReadOnly(_)), "{sql}: {e:?}");
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        assert!(ctx.table_exist("t").unwrap());
        assert!(!std::path::Path::new("/tmp/kelp-serve-copy.csv").exists());
        let left = page(&rt(), &ctx, "SELECT count(*) FROM t", 0, 1, &limits(10))
            .await
            .unwrap();
        assert_eq!(values(&left), vec![5]);
    }

    #[tokio::test]
    async fn a_malformed_query_is_a_bad_query_with_datafusions_message() {
        let ctx = ctx().await;
        let e = page(&rt(), &ctx, "SELEC n FROM t", 0, 10, &limits(10))
            .await
            .unwrap_err();
        assert!(matches!(e, ServeError::BadQuery(_)), "{e:?}");
        assert!(e.to_string().contains("SELEC"), "{e}");
        let e = page(&rt(), &ctx, "SELECT nope FROM t", 0, 10, &limits(10))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_query_past_its_timeout_is_stopped_on_time() {
        let ctx = ctx().await;
        let slow = Limits {
            timeout: Duration::from_millis(200),
            max_rows: 10,
            concurrent_queries: 1,
        };
        // 10^12 rows counted: the series comes in batches between which the scan yields.
        // 1.6·10^9 pairs joined: DataFusion's join task computes for seconds inside one poll
        // (14 s in a debug build), which on the caller's own thread would hold off its timer
        // until the poll returned.
        for sql in [
            "SELECT count(*) FROM generate_series(1, 1000000000000)",
            "SELECT max(a.value * b.value) FROM generate_series(1, 40000) a, \
             generate_series(1, 40000) b",
        ] {
            let t = Instant::now();
            let e = page(&rt(), &ctx, sql, 0, 10, &slow).await.unwrap_err();
            assert!(matches!(e, ServeError::Timeout(_)), "{sql}: {e:?}");
            assert!(e.to_string().contains("200ms"), "{e}");
            // The bound is loose for a loaded 2-core machine.
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{sql}: {:?}",
                t.elapsed()
            );
        }
    }
}
