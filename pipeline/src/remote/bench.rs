//! `kelp bench caption`, the client half: requests per second through a node's client at
//! several concurrency limits against a local chat-completions server that answers every request
//! after a fixed latency. A server of latency L can answer at most concurrency ÷ L requests per
//! second; the share of that bound kelp reaches says whether kelp or the server limits a fleet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kelp_operators::remote::Endpoint;

use super::client::Client;
use super::local_server::{HttpReply, LocalServer};
use crate::error::{PipelineError, Result};

/// One concurrency level's result.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    pub concurrency: usize,
    pub requests: usize,
    pub seconds: f64,
    /// Requests per second kelp reached.
    pub per_second: f64,
    /// concurrency ÷ latency: what the server allows.
    pub bound: f64,
    /// CPU time of the client's threads per request (HTTP, body copies, scheduling), ms; the
    /// server's is not counted.
    pub cpu_ms_per_request: f64,
}

impl ThroughputRow {
    pub fn share(&self) -> f64 {
        self.per_second / self.bound
    }
}

/// A canned chat-completions reply.
const REPLY: &str = r#"{"id":"bench","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"A short test caption of a generated clip."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":12,"total_tokens":1212}}"#;

/// Sends `requests(c)` copies of `body` through a client limited to `c` in flight, for each `c`
/// in `levels`, against a server answering after `latency`.
pub fn throughput(
    latency: Duration,
    levels: &[usize],
    requests: impl Fn(usize) -> usize,
    body: Arc<[u8]>,
) -> Result<Vec<ThroughputRow>> {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let server = LocalServer::start(2, move |_request| {
        counter.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(latency).await;
            HttpReply::json(200, REPLY)
        }
    })
    .map_err(|e| PipelineError::Other(format!("starting the local server: {e}")))?;
    let threads = Arc::new(ClientThreads::default());
    let (started, stopped) = (threads.clone(), threads.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || started.register())
        .on_thread_stop(move || stopped.unregister())
        .build()
        .map_err(|e| PipelineError::Other(format!("starting the async runtime: {e}")))?;
    let mut rows = Vec::new();
    for &c in levels {
        let endpoint = Endpoint {
            url: server.url("/v1/chat/completions"),
            api_key_env: None,
            concurrency: c,
            timeout_s: 60.0 + latency.as_secs_f64(),
            retries: 0,
            max_requests: None,
            max_tokens: None,
            cache: None,
            cache_name: "bench",
        };
        let client = Arc::new(Client::new("bench", &endpoint)?);
        let n = requests(c);
        // Warm the connection pool so the level measures steady state, not connection set-up.
        runtime.block_on(send_all(&client, c, &body))?;
        let cpu = threads.cpu_seconds();
        let t = Instant::now();
        runtime.block_on(send_all(&client, n, &body))?;
        let seconds = t.elapsed().as_secs_f64();
        let cpu = threads.cpu_seconds() - cpu;
        rows.push(ThroughputRow {
            concurrency: c,
            requests: n,
            seconds,
            per_second: n as f64 / seconds,
            bound: c as f64 / latency.as_secs_f64(),
            cpu_ms_per_request: 1000.0 * cpu / n as f64,
        });
    }
    Ok(rows)
}

async fn send_all(client: &Arc<Client>, n: usize, body: &Arc<[u8]>) -> Result<()> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move { client.send(&body).await })
        })
        .collect();
    for t in tasks {
        t.await
            .map_err(|e| PipelineError::Other(format!("a request task stopped: {e}")))?
            .map_err(PipelineError::Other)?;
    }
    Ok(())
}

/// The threads of the client's runtime, so their CPU time can be told from the server's (which
/// runs in this process too).
#[derive(Default)]
struct ClientThreads {
    live: std::sync::Mutex<Vec<libc::pthread_t>>,
}

impl ClientThreads {
    fn register(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Ok(mut live) = self.live.lock() {
            live.push(me);
        }
    }

    fn unregister(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Ok(mut live) = self.live.lock() {
            live.retain(|t| *t != me);
        }
    }

    /// CPU seconds the live client threads have used.
    fn cpu_seconds(&self) -> f64 {
        let Ok(live) = self.live.lock() else {
            return 0.0;
        };
        let mut total = 0.0;
        for &thread in live.iter() {
            let mut clock: libc::clockid_t = 0;
            // SAFETY: `thread` is alive: a thread removes itself (under this lock) before it
            // exits, and it cannot while the lock is held here.
            if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
                continue;
            }
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid clock id and a timespec to fill.
            if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
                total += ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
            }
        }
        total
    }
}

/// The throughput table, with the server's bound from the same run.
pub fn throughput_table(rows: &[ThroughputRow], latency: Duration, body_bytes: usize) -> String {
    let mut out = format!(
        "local chat-completions server answering after {:.0} ms; request bodies of {:.0} KB\n",
        latency.as_secs_f64() * 1000.0,
        body_bytes as f64 / 1024.0
    );
    out.push_str("| in flight | requests | seconds | requests/s | server bound (c ÷ latency) | share | client CPU ms/request |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {:.1}% | {:.2} |\n",
            r.concurrency,
            r.requests,
            r.seconds,
            r.per_second,
            r.bound,
            100.0 * r.share(),
            r.cpu_ms_per_request
        ));
    }
    out
}
