//! Remote calls of a run: the pipeline's side of [`kelp_operators::remote`].
//!
//! A node that calls a service (`caption` with a VLM server) leaves, per video, one call per row
//! it fills; each call is a job that asks for a first request and, per usable reply, maybe
//! another. The [`RemoteStage`] of a run holds one [`client::Client`] per such node (concurrency
//! limit, timeout, retries with backoff, budget; shared by every video of the run in this
//! process) and its [`cache::ReplyCache`]. The engine hands a video's calls over after the decode
//! thread is done with it ([`RemoteStage::settle`]), so requests in flight never hold a decode
//! thread, and writes the video's rows once every call has settled; at most
//! [`RemoteStage::queue_limit`] calls wait or fly at once, which bounds the memory their request
//! bodies hold and, when full, stops the decoders.
//!
//! A call that still fails gets `status = 'error'` and the reason in its row, its saved job goes
//! to the cache, and the run goes on; `kelp run --resume` retries exactly those rows
//! ([`repair`]).
//!
//! What must not live here: what a request says or what a reply means (the node's job decides),
//! and video types.

pub mod bench;
pub mod cache;
pub mod client;
pub mod local_server;
pub mod repair;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kelp_operators::plan::VideoPlan;
use kelp_operators::remote::{RemoteJob, RemoteSpec};
use kelp_operators::VideoContext;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::error::Result;
use crate::store::{self, Location, StoreOptions};
use cache::ReplyCache;
use client::Client;

/// One node's client, cache and declaration.
pub struct NodeRemote {
    pub node: String,
    pub spec: RemoteSpec,
    pub client: Client,
    pub cache: ReplyCache,
    /// Calls answered from the cache alone, calls that ended well, calls that failed.
    pub cached: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// The remote side of a run in this process.
pub struct RemoteStage {
    nodes: BTreeMap<String, Arc<NodeRemote>>,
    queue: Arc<Semaphore>,
    queue_limit: usize,
}

/// What one node's calls came to in this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteStats {
    pub node: String,
    pub url: String,
    pub calls_ok: u64,
    pub calls_failed: u64,
    /// Calls whose every reply came from the cache.
    pub calls_cached: u64,
    pub requests: u64,
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl std::fmt::Display for RemoteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {} calls ok ({} from the cache), {} failed; {} requests ({} retries), {} prompt + {} completion tokens",
            self.node,
            self.url,
            self.calls_ok,
            self.calls_cached,
            self.calls_failed,
            self.requests,
            self.retries,
            self.prompt_tokens,
            self.completion_tokens
        )?;
        if self.calls_failed > 0 {
            write!(f, "; kelp run --resume retries the failed ones")?;
        }
        Ok(())
    }
}

/// What became of one call: its row and cells, and whether it failed.
struct Settled {
    table: String,
    row: usize,
    cells: Vec<(&'static str, kelp_operators::Value)>,
}

impl RemoteStage {
    /// The stage of a plan whose nodes call services; `None` when none does. `out` is the
    /// dataset (the default cache lives under it); a node's own `cache` URI is resolved with
    /// `store`.
    pub fn for_plan(
        plan: &VideoPlan,
        out: &Location,
        store_opts: &StoreOptions,
    ) -> Result<Option<Arc<RemoteStage>>> {
        let mut nodes = BTreeMap::new();
        let mut in_flight = 0;
        for n in plan.nodes() {
            let Some(spec) = n.op.remote() else { continue };
            let client = Client::new(&n.id, &spec.endpoint)?;
            let cache_loc = match &spec.endpoint.cache {
                Some(uri) => store::resolve_with(uri, store_opts)?,
                None => out.at(&format!("cache/{}", spec.endpoint.cache_name)),
            };
            in_flight += spec.endpoint.concurrency;
            nodes.insert(
                n.id.clone(),
                Arc::new(NodeRemote {
                    node: n.id.clone(),
                    client,
                    cache: ReplyCache::at(cache_loc),
                    spec,
                    cached: AtomicU64::new(0),
                    ok: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                }),
            );
        }
        if nodes.is_empty() {
            return Ok(None);
        }
        // Enough waiting calls to keep every client busy while the decoders refill the queue.
        let queue_limit = (4 * in_flight).max(16);
        Ok(Some(Arc::new(RemoteStage {
            nodes,
            queue: Arc::new(Semaphore::new(queue_limit)),
            queue_limit,
        })))
    }

    pub fn queue_limit(&self) -> usize {
        self.queue_limit
    }

    pub fn node(&self, id: &str) -> Option<&Arc<NodeRemote>> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeRemote>> {
        self.nodes.values()
    }

    /// Room in the queue for `calls` calls (at most the whole queue); blocks the calling thread
    /// — a decode thread — while the queue is full, which is the backpressure.
    pub fn hold_blocking(&self, calls: usize) -> Option<OwnedSemaphorePermit> {
        let n = calls.clamp(1, self.queue_limit) as u32;
        let handle = tokio::runtime::Handle::try_current().ok()?;
        handle
            .block_on(self.queue.clone().acquire_many_owned(n))
            .ok()
    }

    /// Sends every call `video` holds and writes what came back into its rows; failed calls get
    /// their reason, and their saved job goes to the cache for a later retry.
    pub async fn settle(&self, video: &mut VideoContext) {
        let calls = std::mem::take(&mut video.remote.0);
        let futures = calls.into_iter().map(|call| async move {
            let Some(node) = self.nodes.get(&call.node) else {
                let reason = format!("no client for node \"{}\"", call.node);
                return Settled {
                    table: call.table,
                    row: call.row,
                    cells: call.job.cells(Some(&reason)),
                };
            };
            let cells = drive(node, call.job).await;
            Settled {
                table: call.table,
                row: call.row,
                cells,
            }
        });
        for s in futures::future::join_all(futures).await {
            kelp_operators::remote::settle(video, &s.table, s.row, s.cells);
        }
    }

    /// What each node's calls came to so far.
    pub fn stats(&self) -> Vec<RemoteStats> {
        self.nodes
            .values()
            .map(|n| {
                let c = &n.client.counters;
                RemoteStats {
                    node: n.node.clone(),
                    url: n.client.shown_url().to_string(),
                    calls_ok: n.ok.load(Ordering::Relaxed),
                    calls_failed: n.failed.load(Ordering::Relaxed),
                    calls_cached: n.cached.load(Ordering::Relaxed),
                    requests: c.requests.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                    prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
                    completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Runs one job to its end: each request answered from the cache or sent (an unusable reply is
/// sent again, with backoff, as often as the client retries); returns its row's cells. A failed
/// job's saved state goes to the cache under its key.
pub async fn drive(
    node: &NodeRemote,
    mut job: Box<dyn RemoteJob>,
) -> Vec<(&'static str, kelp_operators::Value)> {
    let first = job.first();
    let mut request = first.clone();
    let mut all_cached = true;
    let failure: Option<String> = 'job: loop {
        let mut unusable = 0u32;
        let accepted = loop {
            let cached = node.cache.reply(&request.key).await;
            let from_cache = cached.is_some();
            let body = match cached {
                Some(body) => body,
                None => {
                    all_cached = false;
                    match node.client.send(&request.body).await {
                        Ok(body) => body,
                        Err(reason) => break 'job Some(reason),
                    }
                }
            };
            match job.reply(&body) {
                Ok(accepted) => {
                    if !from_cache {
                        node.client.spend(accepted.tokens);
                        node.cache.keep_reply(&request.key, body).await;
                    }
                    break accepted;
                }
                Err(why) if from_cache => {
                    warn!(node = %node.node, key = %request.key, "a cached reply is unusable, asking again: {why}");
                    node.cache.forget_reply(&request.key).await;
                }
                Err(why) => {
                    if unusable >= node.client.retries() {
                        break 'job Some(format!(
                            "{}: the reply is unusable: {why} (gave up after {} attempt{})",
                            node.client.shown_url(),
                            unusable + 1,
                            if unusable == 0 { "" } else { "s" }
                        ));
                    }
                    debug!(node = %node.node, "unusable reply, sending again: {why}");
                    tokio::time::sleep(node.client.backoff(unusable)).await;
                    unusable += 1;
                }
            }
        };
        match accepted.next {
            Some(next) => request = next,
            None => break None,
        }
    };
    match &failure {
        Some(reason) => {
            node.failed.fetch_add(1, Ordering::Relaxed);
            warn!(node = %node.node, key = %first.key, "call failed: {reason}");
            node.cache.keep_failed(&first.key, job.saved()).await;
        }
        None => {
            node.ok.fetch_add(1, Ordering::Relaxed);
            if all_cached {
                node.cached.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    job.cells(failure.as_deref())
}

#[cfg(test)]
mod tests;
