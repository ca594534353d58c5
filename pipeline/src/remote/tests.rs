//! The client and the driver against the local server: retries, `Retry-After`, timeouts,
//! budgets, the key's whereabouts, the cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kelp_operators::remote::{Accepted, Endpoint, RemoteJob, RemoteRequest, RemoteSpec, Tokens};
use kelp_operators::Value;

use super::cache::ReplyCache;
use super::client::Client;
use super::local_server::{HttpReply, HttpRequest, LocalServer};
use super::{drive, NodeRemote};

/// A server answering request `n` (from 0) with `script(n, request)`, after the delay it gives.
fn server(
    script: impl Fn(usize, &HttpRequest) -> (Duration, HttpReply) + Send + Sync + 'static,
) -> (LocalServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    let s = LocalServer::start(1, move |req| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let (wait, reply) = script(n, &req);
        async move {
            tokio::time::sleep(wait).await;
            reply
        }
    })
    .unwrap();
    (s, count)
}

fn endpoint(s: &LocalServer) -> Endpoint {
    Endpoint {
        url: s.url("/v1/chat/completions"),
        api_key_env: None,
        concurrency: 4,
        timeout_s: 5.0,
        retries: 3,
        max_requests: None,
        max_tokens: None,
        cache: None,
        cache_name: "test",
    }
}

fn ok() -> HttpReply {
    HttpReply::json(200, "{\"ok\": true}")
}

fn body() -> Arc<[u8]> {
    b"{\"model\": \"m\"}".to_vec().into()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_429_waits_for_its_retry_after_and_then_succeeds() {
    let (s, count) = server(|n, _| match n {
        0 => (
            Duration::ZERO,
            HttpReply::json(429, "{}").with_header("retry-after", "1"),
        ),
        _ => (Duration::ZERO, ok()),
    });
    let client = Client::new("caption", &endpoint(&s)).unwrap();
    let t = Instant::now();
    let reply = rt().block_on(client.send(&body())).unwrap();
    assert_eq!(&reply[..], b"{\"ok\": true}");
    assert!(
        t.elapsed() >= Duration::from_millis(990),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn server_errors_are_retried_until_the_retries_run_out_and_bad_requests_never() {
    let (s, count) = server(|_, _| (Duration::ZERO, HttpReply::json(503, "overloaded")));
    let mut e = endpoint(&s);
    e.retries = 2;
    let client = Client::new("caption", &e).unwrap();
    let err = rt().block_on(client.send(&body())).unwrap_err();
    assert!(err.contains("HTTP 503: overloaded"), "{err}");
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (s, count) = server(|_, _| (Duration::ZERO, HttpReply::json(400, "bad image")));
    let client = Client::new("caption", &endpoint(&s)).unwrap();
    let err = rt().block_on(client.send(&body())).unwrap_err();
    assert!(err.contains("HTTP 400"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1, "a 400 is final");
}

#[test]
fn a_reply_that_hangs_past_the_timeout_is_abandoned_and_sent_again() {
    let (s, count) = server(|n, _| match n {
        0 => (Duration::from_secs(30), ok()),
        _ => (Duration::ZERO, ok()),
    });
    let mut e = endpoint(&s);
    e.timeout_s = 0.3;
    let client = Client::new("caption", &e).unwrap();
    let t = Instant::now();
    rt().block_on(client.send(&body())).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(count.load(Ordering::SeqCst), 2);

    let (s, _) = server(|_, _| (Duration::from_secs(30), ok()));
    let mut e = endpoint(&s);
    (e.timeout_s, e.retries) = (0.2, 1);
    let err = rt()
        .block_on(Client::new("caption", &e).unwrap().send(&body()))
        .unwrap_err();
    assert!(err.contains("no reply within 0.2 s"), "{err}");
}

#[test]
fn a_server_that_cannot_be_reached_is_an_error_naming_it() {
    let (s, _) = server(|_, _| (Duration::ZERO, ok()));
    let mut e = endpoint(&s);
    e.url = "http://127.0.0.1:9/v1/chat/completions".into();
    e.retries = 1;
    let err = rt()
        .block_on(Client::new("caption", &e).unwrap().send(&body()))
        .unwrap_err();
    assert!(
        err.starts_with("http://127.0.0.1:9/v1/chat/completions: cannot connect"),
        "{err}"
    );
}

#[test]
fn the_request_budget_stops_sending() {
    let (s, count) = server(|_, _| (Duration::ZERO, ok()));
    let mut e = endpoint(&s);
    e.max_requests = Some(2);
    let client = Client::new("caption", &e).unwrap();
    let rt = rt();
    rt.block_on(client.send(&body())).unwrap();
    rt.block_on(client.send(&body())).unwrap();
    let err = rt.block_on(client.send(&body())).unwrap_err();
    assert!(
        err.contains("request budget is spent (max_requests = 2)"),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn the_key_goes_in_the_authorization_header_and_never_into_a_reason() {
    const KEY: &str = "kelpUNITtestKEY0123456789";
    std::env::set_var("KELP_TEST_REMOTE_KEY", KEY);
    let headers = Arc::new(Mutex::new(Vec::new()));
    let seen = headers.clone();
    let (s, _) = server(move |_, req| {
        seen.lock()
            .unwrap()
            .push(req.header("authorization").unwrap_or("").to_string());
        // A careless server that echoes the header in its error.
        let echo = format!(
            "unauthorized: {}",
            req.header("authorization").unwrap_or("")
        );
        (Duration::ZERO, HttpReply::json(500, echo))
    });
    let mut e = endpoint(&s);
    e.api_key_env = Some("KELP_TEST_REMOTE_KEY".into());
    e.retries = 0;
    let client = Client::new("caption", &e).unwrap();
    let err = rt().block_on(client.send(&body())).unwrap_err();
    assert_eq!(headers.lock().unwrap()[0], format!("Bearer {KEY}"));
    assert!(!err.contains(KEY), "{err}");
    assert!(err.contains("[redacted]"), "{err}");
    assert!(!format!("{client:?}").contains(KEY));

    e.api_key_env = Some("KELP_TEST_REMOTE_KEY_UNSET".into());
    let err = Client::new("caption", &e).unwrap_err().to_string();
    assert!(
        err.contains("api_key_env = \"KELP_TEST_REMOTE_KEY_UNSET\", but that environment variable is not set"),
        "{err}"
    );
}

/// A job of two steps: "first", then "second"; a reply is usable when it is `{"n": ...}`.
struct TwoStep {
    first: RemoteRequest,
    got: Vec<i64>,
}

impl RemoteJob for TwoStep {
    fn first(&self) -> RemoteRequest {
        self.first.clone()
    }
    fn reply(&mut self, body: &[u8]) -> Result<Accepted, String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let n = v["n"].as_i64().ok_or("no n")?;
        self.got.push(n);
        let next = (self.got.len() == 1).then(|| RemoteRequest {
            key: format!("{}{}", &self.first.key[..30], "02"),
            body: b"{\"step\": 2}".to_vec().into(),
        });
        Ok(Accepted {
            next,
            tokens: Tokens {
                prompt: 10,
                completion: 1,
            },
        })
    }
    fn cells(self: Box<Self>, failure: Option<&str>) -> Vec<(&'static str, Value)> {
        vec![
            ("got", Value::from(format!("{:?}", self.got))),
            ("error", failure.map(str::to_string).into()),
        ]
    }
    fn saved(&self) -> Vec<u8> {
        self.first.key.clone().into_bytes()
    }
}

fn node(s: &LocalServer, cache: &std::path::Path, retries: u32) -> NodeRemote {
    let mut e = endpoint(s);
    e.retries = retries;
    NodeRemote {
        node: "caption".into(),
        spec: RemoteSpec {
            endpoint: e.clone(),
            table: "t",
            status_column: "status",
            key_column: "key",
            node_column: "node",
        },
        client: Client::new("caption", &e).unwrap(),
        cache: ReplyCache::at(crate::store::resolve(cache.to_str().unwrap()).unwrap()),
        cached: Default::default(),
        ok: Default::default(),
        failed: Default::default(),
    }
}

fn job(key: &str) -> Box<dyn RemoteJob> {
    Box::new(TwoStep {
        first: RemoteRequest {
            key: key.into(),
            body: b"{\"step\": 1}".to_vec().into(),
        },
        got: Vec::new(),
    })
}

#[test]
fn a_job_follows_its_replies_and_the_cache_answers_it_the_second_time() {
    let (s, count) = server(|n, _| match n {
        // An unusable reply first: sent again.
        0 => (Duration::ZERO, HttpReply::json(200, "{\"choices\": [")),
        n => (
            Duration::ZERO,
            HttpReply::json(200, format!("{{\"n\": {n}}}")),
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let n = node(&s, dir.path(), 2);
    let rt = rt();
    let key = "00112233445566778899aabbccddeeff";
    let cells = rt.block_on(drive(&n, job(key)));
    assert_eq!(cells[0].1, Value::from("[1, 2]"));
    assert_eq!(cells[1].1, Value::Null);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let c = &n.client.counters;
    assert_eq!(c.prompt_tokens.load(Ordering::Relaxed), 20);

    let again = rt.block_on(drive(&n, job(key)));
    assert_eq!(again[0].1, Value::from("[1, 2]"), "the cached replies");
    assert_eq!(count.load(Ordering::SeqCst), 3, "no request sent");
    assert_eq!(n.cached.load(Ordering::Relaxed), 1);
}

#[test]
fn a_failed_job_keeps_its_reason_and_its_saved_state() {
    let (s, _) = server(|_, _| (Duration::ZERO, HttpReply::json(200, "not json")));
    let dir = tempfile::tempdir().unwrap();
    let n = node(&s, dir.path(), 1);
    let key = "ffeeddccbbaa99887766554433221100";
    let cells = rt().block_on(drive(&n, job(key)));
    let Value::Str(reason) = &cells[1].1 else {
        panic!("{cells:?}")
    };
    assert!(reason.contains("the reply is unusable"), "{reason}");
    assert!(reason.contains("gave up after 2 attempts"), "{reason}");
    let saved = rt().block_on(n.cache.failed(key)).unwrap();
    assert_eq!(&saved[..], key.as_bytes());
}
