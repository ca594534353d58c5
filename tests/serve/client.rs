//! A client for `kelp serve` as the page talks to it: JSON requests and their replies, and raw
//! requests sent byte for byte.

use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::fixture::Server;

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP client that gives up on a request after a minute (a hung server fails the test).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.expect("the server answers");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.bytes().await.unwrap().to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

pub fn get(server: &Server, path: &str) -> Reply {
    rt().block_on(send(client().get(server.url(path))))
}

pub fn post(server: &Server, path: &str, body: Value) -> Reply {
    rt().block_on(send(
        client()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body.to_string()),
    ))
}

pub fn query(server: &Server, sql: &str, offset: usize, limit: usize) -> Reply {
    post(
        server,
        "/api/query",
        json!({ "sql": sql, "offset": offset, "limit": limit }),
    )
}

/// A request with its path sent byte for byte (HTTP clients normalise `..` away).
pub fn raw_get(server: &Server, path: &str, host: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let host = host.map_or_else(|| format!("127.0.0.1:{}", server.port), str::to_string);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}
