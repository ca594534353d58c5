//! `kelp serve` end to end, over one dataset built once for this test binary: the quickstart DAG
//! over the generated samples plus a mirrored copy of one of them, with a filter (so some clips
//! are rejected), previews of rejected clips, frame signatures and the `near_dedup` pass (so the
//! copy's clips form near-duplicate groups). HTTP-level tests (`serve/http.rs`) talk to the
//! server the way the page does (`serve/client.rs`); the browser test (`serve/browser.rs`)
//! drives the page in headless Chromium over WebDriver (`serve/webdriver.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "serve/browser.rs"]
mod browser;
#[path = "serve/client.rs"]
mod client;
#[path = "serve/fixture.rs"]
mod fixture;
#[path = "serve/http.rs"]
mod http;
#[path = "serve/webdriver.rs"]
mod webdriver;
