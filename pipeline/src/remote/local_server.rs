//! A small HTTP/1.1 server on 127.0.0.1 (a free port) for tests and `kelp bench caption`: each
//! request (method, path, headers, body) goes to a handler that decides the reply — and when:
//! it may wait (a server's latency), wait past the client's timeout (a hang) or answer with any
//! status and headers. Keep-alive connections, `Content-Length` bodies; nothing more.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpReply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler =
    Arc<dyn Fn(HttpRequest) -> Pin<Box<dyn Future<Output = HttpReply> + Send>> + Send + Sync>;

/// A running server; stopped when dropped.
pub struct LocalServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LocalServer {
    /// Starts a server on its own runtime (`threads` worker threads); `answer` turns each
    /// request into its reply (and decides when to give it).
    pub fn start<F, Fut>(threads: usize, answer: F) -> std::io::Result<LocalServer>
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpReply> + Send + 'static,
    {
        let handler: Handler = Arc::new(
            move |r| -> Pin<Box<dyn Future<Output = HttpReply> + Send>> { Box::pin(answer(r)) },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kelp-local-server")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, handler.clone()));
            }
        });
        Ok(LocalServer {
            addr,
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves one connection until the client closes it (or sends garbage).
async fn serve(mut stream: TcpStream, handler: Handler) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let Some((request, keep_alive)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let reply = handler(request).await;
        let reason = match reply.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            408 => "Request Timeout",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !keep_alive {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&reply.body);
        if stream.write_all(&out).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request (head, then a `Content-Length` body); `None` at the end of the connection.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(HttpRequest, bool)> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("").to_string();
                let path = parsed.path.unwrap_or("").to_string();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let find = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                };
                let length: usize = find("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let keep_alive =
                    !find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                // The body is read straight into its own buffer (a request of eight pictures
                // is a megabyte).
                let have = (buf.len() - head_len).min(length);
                // (`vec!` of zeros is one calloc, with no per-byte loop even in a debug build.)
                let mut body = vec![0u8; length];
                body[..have].copy_from_slice(&buf[head_len..head_len + have]);
                buf.drain(..head_len + have);
                if have < length {
                    stream.read_exact(&mut body[have..]).await.ok()?;
                }
                return Some((
                    HttpRequest {
                        method,
                        path,
                        headers,
                        body,
                    },
                    keep_alive,
                ));
            }
            Ok(httparse::Status::Partial) => {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => return None,
        }
    }
}
