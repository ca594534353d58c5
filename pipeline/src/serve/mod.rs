//! `kelp serve`: a dataset browser on one local web page — a read-only SQL box over the same
//! DataFusion session `kelp sql` uses, clip cards with their previews, why each clip was kept or
//! dropped, near-duplicate groups side by side, the `kelp stats` plots, and a page per clip.
//!
//! What lives here: the HTTP server (axum) and what it answers — read-only query pages
//! ([`query`]) encoded as JSON ([`json`]), the dataset's summary and preset queries ([`info`]),
//! clip cards and the clip page ([`cards`], [`clip`]), previews and media read from the
//! dataset's own tables by ranged reads ([`blobs`]), the checks that keep every request inside
//! the dataset ([`paths`]), the stats ([`stats`]), the routes ([`routes`]), the runtime user
//! queries and the stats run on ([`runtime`]) and the page itself, compiled into the binary
//! ([`assets`]).
//!
//! What must not live here: anything that writes. The server opens the dataset once, plans every
//! query through DataFusion's `SQLOptions` with DDL, DML and statements refused, and reads
//! previews and media only through the dataset's object store, by clip id. Nothing is fetched
//! from the network at run time: the page works offline.

pub mod assets;
pub mod blobs;
pub mod cards;
pub mod clip;
pub mod error;
pub mod info;
pub mod json;
pub mod paths;
pub mod query;
pub mod routes;
pub mod runtime;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;

use crate::dataset::Dataset;
use crate::error::{PipelineError, Result};
use crate::store::StoreOptions;

pub use error::ServeError;

/// What `kelp serve` is asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The dataset URI (a folder, `file://`, `s3://`, ...).
    pub dataset: String,
    pub store: StoreOptions,
    /// Address to listen on; anything but a loopback address exposes the dataset to the network.
    pub bind: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
    /// Limits on every query.
    pub limits: Limits,
}

/// Limits on what one request may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A query (planning and execution) stops after this long.
    pub timeout: Duration,
    /// Most rows one request returns (one page).
    pub max_rows: usize,
    /// Queries running at once; later ones wait (within their timeout).
    pub concurrent_queries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            max_rows: 1000,
            concurrent_queries: 2,
        }
    }
}

/// Everything a request handler reads: the dataset, its session, the preview and media indexes.
pub struct AppState {
    pub dataset: Dataset,
    /// One session for every query, built as `kelp sql` builds it. Read-only requests never
    /// change it (no DDL, no `SET`).
    pub ctx: SessionContext,
    pub limits: Limits,
    /// Where user queries and the stats run, apart from the runtime answering requests.
    pub query_runtime: runtime::QueryRuntime,
    pub queries: tokio::sync::Semaphore,
    pub previews: blobs::BlobTable,
    pub media: blobs::BlobTable,
    pub stats: tokio::sync::OnceCell<std::result::Result<Arc<stats::StatsView>, String>>,
    /// Host headers a request may carry (DNS-rebinding guard); empty when bound to a
    /// non-loopback address, where the user has accepted that anyone may connect.
    pub allowed_hosts: Vec<String>,
}

impl AppState {
    /// Opens the dataset and its session.
    pub async fn open(uri: &str, store: &StoreOptions, limits: Limits) -> Result<AppState> {
        let dataset = Dataset::open(uri, store).await?;
        let ctx = dataset.session().await?;
        let query_runtime = runtime::QueryRuntime::per_core().map_err(|e| {
            PipelineError::Other(format!("kelp serve: starting the query runtime: {e}"))
        })?;
        Ok(AppState {
            query_runtime,
            previews: blobs::BlobTable::new("previews"),
            media: blobs::BlobTable::new("media"),
            queries: tokio::sync::Semaphore::new(limits.concurrent_queries.max(1)),
            limits,
            stats: tokio::sync::OnceCell::new(),
            allowed_hosts: Vec::new(),
            dataset,
            ctx,
        })
    }
}

/// True for addresses only this machine can reach.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// The Host values a browser sends for a loopback server on `port`.
fn loopback_hosts(port: u16) -> Vec<String> {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect()
}

/// A bound server, before it starts answering.
pub struct Bound {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
}

impl Bound {
    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Answers requests until the process ends.
    pub async fn run(self) -> Result<()> {
        let app = routes::router(self.state.clone());
        // Preview and media indexes are built in the background so the first cards are fast.
        blobs::warm(self.state.clone());
        axum::serve(self.listener, app)
            .await
            .map_err(|e| PipelineError::Other(format!("serving on {}: {e}", self.addr)))
    }
}

/// Opens the dataset and binds the listener (nothing is served until [`Bound::run`]).
pub async fn bind(opts: &ServeOptions) -> Result<Bound> {
    let mut state = AppState::open(&opts.dataset, &opts.store, opts.limits).await?;
    let listener = tokio::net::TcpListener::bind((opts.bind, opts.port))
        .await
        .map_err(|e| {
            PipelineError::Other(format!(
                "kelp serve: cannot listen on {}:{}: {e} (another server on that port? try --port 0)",
                opts.bind, opts.port
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| PipelineError::Other(format!("kelp serve: {e}")))?;
    if is_loopback(opts.bind) {
        state.allowed_hosts = loopback_hosts(addr.port());
    }
    Ok(Bound {
        addr,
        listener,
        state: Arc::new(state),
    })
}

/// The warning printed when the server is reachable from other machines.
pub fn exposure_warning(bind: IpAddr) -> Option<String> {
    (!is_loopback(bind)).then(|| {
        format!(
            "warning: kelp serve has no authentication: listening on {bind}, anyone who can reach \
             this address can read the whole dataset (use the default --bind 127.0.0.1 and an SSH \
             tunnel to browse a remote machine)"
        )
    })
}
