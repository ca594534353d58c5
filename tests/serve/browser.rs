//! The page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `infra/install-deps.sh`) driven over W3C WebDriver (`webdriver.rs`). Opens the page
//! over the fixture dataset, runs a query and counts its clip cards, opens a clip page, toggles
//! rejected clips, opens the near-duplicate groups and the stats, and takes screenshots
//! (written to `target/tmp/serve-*.png`); every check is on the DOM, not on pixels.
//!
//! Without Chromium or chromedriver the test fails with what is missing and how to install it
//! (like the S3 tests without moto): it never skips.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::fixture::{self, Server, FILTER_NODE, FILTER_WHERE};
use crate::webdriver::{Client, Locator};

const WAIT: Duration = Duration::from_secs(30);

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Chromium and its WebDriver, or why the test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("KELP_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]));
    let driver = std::env::var_os("KELP_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromedriver"]));
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "{}{}not found (Debian: apt-get install chromium chromium-driver, which bash infra/install-deps.sh does)",
            if c.is_none() { "chromium " } else { "" },
            if d.is_none() { "chromedriver " } else { "" },
        )),
    }
}

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(bin: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--hide-scrollbars", "--no-first-run",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    Client::connect(&driver.url, caps)
        .await
        .expect("a WebDriver session in headless Chromium")
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Waits until `script` returns true.
async fn until(c: &Client, what: &str, script: &str) {
    let start = Instant::now();
    loop {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        if start.elapsed() > WAIT {
            let page = js(c, "return document.body.innerText").await;
            panic!("timed out waiting for {what} ({script}); the page shows:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Marks the results stale, runs `act`, then waits for fresh results.
async fn results_after(c: &Client, act: impl std::future::Future<Output = ()>) {
    js(
        c,
        "document.querySelector('#results').dataset.state = 'stale'; return true",
    )
    .await;
    act.await;
    until(
        c,
        "query results",
        "return ['done', 'error'].includes(document.querySelector('#results').dataset.state)",
    )
    .await;
    let state = js(c, "return document.querySelector('#results').dataset.state").await;
    if state != "done" {
        let error = js(c, "return document.querySelector('#error').textContent").await;
        panic!("the query failed on the page: {error}");
    }
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG", "a PNG screenshot");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{name}.png"));
    std::fs::write(&path, &png).unwrap();
    path
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn drive(c: &Client, base: &str) {
    let url = |path: &str| format!("{base}{path}");
    c.goto(&url("/")).await.unwrap();
    until(
        c,
        "the first results",
        "return document.querySelector('#results').dataset.state === 'done'",
    )
    .await;
    assert_eq!(
        c.title().await.unwrap(),
        "kelp serve",
        "the page loaded with its script"
    );

    // A query of our own: its clips as cards, as many as kelp sql counts.
    let sql =
        "SELECT clip_id, uri, duration_s FROM clips WHERE duration_s >= 2.5 ORDER BY uri, start_s";
    let want = fixture::sql(sql);
    assert!(!want.is_empty());
    let editor = c.find(Locator::Css("#sql")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys(sql).await.unwrap();
    results_after(c, click(c, "#run")).await;
    assert_eq!(count(c, "#results .card").await, want.len());
    let first_id = text(&want[0], "clip_id").to_string();
    let shown_first = js(
        c,
        "return document.querySelector('#results .card').dataset.clipId",
    )
    .await;
    assert_eq!(shown_first, Value::from(first_id.clone()));
    assert_eq!(count(c, "#results .card.kept").await, want.len());
    // Its thumbnail is the dataset's preview, decoded by the browser.
    until(
        c,
        "the first thumbnail",
        "const i = document.querySelector('#results .card img'); return !!i && i.complete && i.naturalWidth > 0",
    )
    .await;

    // Its clip page: the clip, its timeline with this clip marked, a link to its media.
    click(c, "#results .card").await;
    until(
        c,
        "the clip page",
        "const v = document.querySelector('#clip-view'); return !v.hidden && v.dataset.state === 'done'",
    )
    .await;
    let page_id = js(
        c,
        "return document.querySelector('#clip-page').dataset.clipId",
    )
    .await;
    assert_eq!(page_id, Value::from(first_id.clone()));
    assert_eq!(count(c, "#timeline .seg.current").await, 1);
    assert!(
        count(c, "#timeline .seg").await >= 2,
        "the source's other clips"
    );
    assert!(
        count(c, "#timeline .bound").await >= 1,
        "its shot boundaries"
    );
    let media = c
        .find(Locator::Css("a.media-link[href$='clip.mp4']"))
        .await
        .unwrap();
    assert_eq!(
        media.attr("href").await.unwrap().unwrap(),
        format!("/media/{first_id}/clip.mp4")
    );
    let columns = c
        .find(Locator::Css("#clip-columns"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for col in ["clip_id", "sharpness", "luma_mean", "bucket"] {
        assert!(columns.contains(col), "{col} in\n{columns}");
    }
    until(
        c,
        "the clip's animated preview",
        "const i = document.querySelector('#clip-page .stage img'); return !!i && i.complete && i.naturalWidth > 0",
    )
    .await;
    screenshot(c, "clip-page").await;

    // Back to the results, then the rejected clips with the node and reason that dropped them.
    click(c, "#clip-page .back").await;
    until(
        c,
        "the results again",
        "return !document.querySelector('#browse-view').hidden",
    )
    .await;
    let rejected = fixture::sql_count(&format!(
        "SELECT count(*) AS n FROM rejections WHERE clip_id IS NOT NULL AND node = '{FILTER_NODE}'"
    ));
    let all_rejected =
        fixture::sql_count("SELECT count(*) AS n FROM rejections WHERE clip_id IS NOT NULL");
    assert!(rejected > 0);
    results_after(c, click(c, "#status-toggle button[data-preset='rejected']")).await;
    assert_eq!(
        count(c, "#results .card.rejected").await,
        all_rejected as usize
    );
    assert_eq!(count(c, "#results .card.kept").await, 0);
    let reasons = js(
        c,
        "return [...document.querySelectorAll('#results .card .reason')].map(r => r.textContent)",
    )
    .await;
    let ours = reasons
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.as_str().unwrap().contains(FILTER_NODE))
        .count();
    assert_eq!(ours, rejected as usize, "{reasons}");
    assert!(reasons.to_string().contains(FILTER_WHERE), "{reasons}");
    screenshot(c, "rejected").await;

    // Both, kept and rejected, on one page.
    let kept = fixture::sql_count("SELECT count(*) AS n FROM clips");
    results_after(c, click(c, "#status-toggle button[data-preset='all']")).await;
    assert_eq!(
        count(c, "#results .card").await,
        (kept + all_rejected) as usize
    );

    // Near-duplicate groups side by side.
    let groups = fixture::sql_count(
        "SELECT count(*) AS n FROM (SELECT group_id FROM duplicates GROUP BY group_id)",
    );
    assert!(groups > 0);
    results_after(c, click(c, "#presets button[data-preset='duplicates']")).await;
    assert_eq!(count(c, "#results .group").await, groups as usize);
    let sizes = js(
        c,
        "return [...document.querySelectorAll('#results .group')].map(g => g.querySelectorAll('.card').length)",
    )
    .await;
    assert!(
        sizes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.as_u64().unwrap() >= 2),
        "{sizes}"
    );
    assert_eq!(
        count(c, "#results .group .card.group-kept").await,
        groups as usize
    );
    screenshot(c, "duplicates").await;

    // The kept clips again (the page a curator starts from), for the record.
    results_after(c, click(c, "#status-toggle button[data-preset='kept']")).await;
    assert_eq!(count(c, "#results .card").await, kept as usize);
    let shot = screenshot(c, "browse").await;
    eprintln!("kelp serve page: {}", shot.display());

    // The stats, with their plots.
    c.goto(&url("/#/stats")).await.unwrap();
    until(
        c,
        "the stats",
        "const v = document.querySelector('#stats-view'); return !v.hidden && v.dataset.state === 'done'",
    )
    .await;
    assert!(count(c, "#stats-view .stat").await >= 5);
    until(
        c,
        "the stats plots",
        "const p = [...document.querySelectorAll('#stats-view .plot img')]; return p.length > 0 && p.every(i => i.complete && i.naturalWidth > 0)",
    )
    .await;
    screenshot(c, "stats").await;
}

#[test]
fn the_page_in_headless_chromium_shows_clips_a_clip_page_rejections_and_duplicates() {
    let (chromium, chromedriver) = browser().unwrap_or_else(|why| {
        panic!("the browser test of kelp serve needs Chromium: {why} (bash infra/install-deps.sh)")
    });
    let server = Server::start(&[]);
    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = connect(&driver, &chromium, profile.path()).await;
        // In a task, so a failed check still ends the browser session below.
        let outcome = tokio::spawn({
            let client = client.clone();
            let base = server.base.clone();
            async move { drive(&client, &base).await }
        })
        .await;
        let _ = client.close().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    });
}
