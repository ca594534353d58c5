//! Work a node leaves for the pipeline to do over the network once a video's frames are decoded:
//! what such work is, never how it is sent.
//!
//! A node that calls a remote service (a VLM server for `caption`) builds every request body its
//! clips need on the decode thread, adds the rows they will fill to a table it brings, and leaves
//! one [`RemoteCall`] per row in the video's context. The pipeline then sends them — after the
//! decode, so no request in flight holds a decode thread — through one shared client per node and
//! run (its concurrency limit, timeouts, retries, budget and reply cache; see the pipeline's
//! `remote` module), and settles each call's cells into its row before the video's rows are
//! written. A call is a small state machine ([`RemoteJob`]): a first request, then as many
//! follow-ups as its replies call for (the detailed caption, then the short one made from it).
//!
//! What must not live here: sockets, HTTP, retries, timers or threads.

use std::sync::Arc;

use crate::context::VideoContext;
use crate::output::Value;

/// Where a node's requests go and how hard the service may be pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The URL each request body is POSTed to (JSON).
    pub url: String,
    /// Name of the environment variable holding the bearer token; the token itself is read when
    /// the run starts and goes nowhere but the `Authorization` header.
    pub api_key_env: Option<String>,
    /// Requests in flight at most (over every video of the run in this process).
    pub concurrency: usize,
    /// Seconds one attempt may take, reply included.
    pub timeout_s: f64,
    /// Attempts after the first for a request that failed in a way worth retrying (429, 5xx,
    /// connection lost, timeout, an unusable reply).
    pub retries: u32,
    /// Requests this process may send in one run (cache hits are free); beyond it calls fail.
    pub max_requests: Option<u64>,
    /// Tokens (prompt + completion, as replies report them) this process may spend in one run.
    pub max_tokens: Option<u64>,
    /// Where replies are cached (a URI); `None`: `cache/<cache_name>` inside the dataset.
    pub cache: Option<String>,
    /// Folder name of the default cache (`captions`).
    pub cache_name: &'static str,
}

/// A node's remote side: its endpoint, and the table whose rows its calls fill, so a later run
/// can find the rows whose calls failed and retry only those.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSpec {
    pub endpoint: Endpoint,
    /// The table the calls fill (`captions`).
    pub table: &'static str,
    /// Its column holding `ok`, `error` (the call failed: retried by `kelp run --resume`) or
    /// `pending` (never sent: the plan ran outside the pipeline).
    pub status_column: &'static str,
    /// Its column holding each call's content address ([`RemoteRequest::key`] of its first
    /// request), under which a failed call's [`RemoteJob::saved`] state is kept.
    pub key_column: &'static str,
    /// Its column holding the id of the node that made the row (several nodes may share it).
    pub node_column: &'static str,
}

/// Status values of a call's row.
pub const STATUS_OK: &str = "ok";
pub const STATUS_ERROR: &str = "error";
pub const STATUS_PENDING: &str = "pending";

/// One request a job wants sent.
#[derive(Debug, Clone)]
pub struct RemoteRequest {
    /// Content address (hex): a request with an equal key gets an equal reply, so a cached one
    /// is reused instead of paying again.
    pub key: String,
    /// The JSON body, POSTed as it is.
    pub body: Arc<[u8]>,
}

/// Tokens a reply says it used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

impl Tokens {
    pub fn total(self) -> u64 {
        self.prompt + self.completion
    }
}

/// What a job made of a usable reply.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The next request, when the job has more to ask.
    pub next: Option<RemoteRequest>,
    pub tokens: Tokens,
}

/// One row's remote work, driven by the pipeline: the first request, then a follow-up per usable
/// reply until none is left.
pub trait RemoteJob: Send {
    /// The request to send first (the call's content address is its key).
    fn first(&self) -> RemoteRequest;
    /// A reply (HTTP 2xx body) to the last request. An error says why it is unusable (not JSON,
    /// fields missing); the pipeline may send the request again.
    fn reply(&mut self, body: &[u8]) -> Result<Accepted, String>;
    /// The cells of its row once the job is over: what the replies said, or, with `failure`, why
    /// the call failed (what came back before it failed may be kept).
    fn cells(self: Box<Self>, failure: Option<&str>) -> Vec<(&'static str, Value)>;
    /// What a later run needs to retry the call without decoding the video again; the node's
    /// [`crate::Operator::resume_job`] turns it back into a job.
    fn saved(&self) -> Vec<u8>;
}

/// A job and the row it fills.
pub struct RemoteCall {
    /// The node that made it (its client sends the requests).
    pub node: String,
    pub table: String,
    /// Index of the row among the video's rows of `table`.
    pub row: usize,
    pub job: Box<dyn RemoteJob>,
}

impl std::fmt::Debug for RemoteCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCall")
            .field("node", &self.node)
            .field("table", &self.table)
            .field("row", &self.row)
            .field("key", &self.job.first().key)
            .finish()
    }
}

/// The calls a video's rows wait for. A call cannot be copied (its job is one state machine), so
/// a copy of a context — a benchmark timing a stage twice — has none.
#[derive(Debug, Default)]
pub struct RemoteCalls(pub Vec<RemoteCall>);

impl Clone for RemoteCalls {
    fn clone(&self) -> Self {
        RemoteCalls(Vec::new())
    }
}

impl std::ops::Deref for RemoteCalls {
    type Target = Vec<RemoteCall>;
    fn deref(&self) -> &Vec<RemoteCall> {
        &self.0
    }
}

impl std::ops::DerefMut for RemoteCalls {
    fn deref_mut(&mut self) -> &mut Vec<RemoteCall> {
        &mut self.0
    }
}

/// Writes a finished call's cells into its row.
pub fn settle(ctx: &mut VideoContext, table: &str, row: usize, cells: Vec<(&str, Value)>) {
    if let Some(rows) = ctx.tables.get_mut(table) {
        for (name, value) in cells {
            rows.set_cell(row, name, value);
        }
    }
}
