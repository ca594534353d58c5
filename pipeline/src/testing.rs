//! Test support shared by the unit tests here and the end-to-end tests of the `kelp` binary: a
//! real S3-compatible server (moto) on 127.0.0.1 with a bucket. Not for production use.
//!
//! moto is installed by `bash infra/install-deps.sh` into `~/.local/share/kelp/moto` (or found
//! on `PATH`, or named by `KELP_MOTO_SERVER`). Without it, [`MotoServer::start`] panics with
//! that instruction: the S3 tests are core behaviour and never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use url::Url;

use crate::store::{instrument::Instrumented, Location};

/// Where install-deps.sh puts moto.
pub fn moto_venv() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".local/share"))
        .join("kelp/moto")
}

fn find_moto() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KELP_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = moto_venv().join("bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
}

/// A moto S3 server on 127.0.0.1, killed on drop.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

pub const ACCESS_KEY: &str = "kelp-test";
pub const SECRET_KEY: &str = "kelp-test-secret";
pub const REGION: &str = "us-east-1";

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> MotoServer {
        let bin = find_moto().unwrap_or_else(|| {
            panic!(
                "moto_server (an S3-compatible test server) is not installed: run `bash infra/install-deps.sh`"
            )
        });
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free loopback port");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut server = MotoServer { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // port taken between our probe and its bind: try another
                }
                if server.request("GET", "/").is_some() {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server did not answer on 127.0.0.1 within 30 s");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP request; the status code, `None` when the server does not answer.
    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1)?.parse().ok()
    }

    /// Creates a bucket (a valid S3 name: lower case, digits, dashes).
    pub fn bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}"));
        assert_eq!(status, Some(200), "creating bucket {name} on moto");
    }

    /// Environment for a `kelp` process talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// A location in `bucket` under `prefix`, for in-process tests.
    pub fn location(&self, bucket: &str, prefix: &str) -> Location {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .expect("an S3 client for moto");
        Location {
            uri: format!("s3://{bucket}/{prefix}"),
            store: Instrumented::wrap(Arc::new(store)),
            prefix: ObjectPath::from(prefix),
            base_url: Url::parse(&format!("s3://{bucket}/")).expect("a bucket URL"),
            local_dir: None,
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
