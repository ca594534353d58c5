//! Captioning through a VLM server, end to end: `kelp run` against a chat-completions server
//! started here on 127.0.0.1. The server checks every request (the key in its header, N JPEGs of
//! the requested size, the prompt), answers in shuffled order and injects a 429 with
//! `Retry-After`, a 500, a hang past the timeout, a malformed body and a reply missing its
//! fields; one clip's requests always fail. Every caption must land in its own clip's row, the
//! failed clip must say why, `kelp run --resume` must ask again for that clip only, a second run
//! must pay nothing, a changed prompt everything, and the key must appear in no output file,
//! cache object, log line (debug) or error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelp_operators::caption::inspect::user_message;
use kelp_pipeline::remote::local_server::{HttpReply, HttpRequest, LocalServer};
use runs::*;

const KEY: &str = "sk-kelpPLANTEDvlmKEY0123456789";
const KEY_VAR: &str = "KELP_TEST_VLM_KEY";
const FRAMES: usize = 4;
const FRAME_SIZE: u32 = 64;

/// The colours of the generated shots, per video, in order.
const VIDEOS: [[(&str, [f64; 3]); 3]; 2] = [
    [
        ("red", [255.0, 0.0, 0.0]),
        ("lime", [0.0, 255.0, 0.0]),
        ("blue", [0.0, 0.0, 255.0]),
    ],
    [
        ("yellow", [255.0, 255.0, 0.0]),
        ("magenta", [255.0, 0.0, 255.0]),
        ("cyan", [0.0, 255.0, 255.0]),
    ],
];

/// Two videos of three 1 s shots of solid colour each (hard cuts between them), 160x90.
fn videos(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (v, shots) in VIDEOS.iter().enumerate() {
        let mut args: Vec<String> = vec![
            "-hide_banner".into(),
            "-loglevel".into(),
            "error".into(),
            "-y".into(),
        ];
        for (name, _) in shots {
            args.extend([
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("color=c={name}:s=160x90:r=25:d=1"),
            ]);
        }
        args.extend([
            "-filter_complex".into(),
            "[0][1][2]concat=n=3:v=1:a=0,format=yuv420p[v]".into(),
            "-map".into(),
            "[v]".into(),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            "ultrafast".into(),
            dir.join(format!("v{v}.mp4")).display().to_string(),
        ]);
        let o = std::process::Command::new("ffmpeg")
            .args(&args)
            .output()
            .expect("the ffmpeg CLI is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// The generated colour nearest a mean RGB.
fn colour_of(rgb: [f64; 3]) -> &'static str {
    let d = |c: [f64; 3]| (0..3).map(|i| (rgb[i] - c[i]).powi(2)).sum::<f64>();
    VIDEOS
        .iter()
        .flatten()
        .min_by(|a, b| d(a.1).total_cmp(&d(b.1)))
        .unwrap()
        .0
}

/// The fake VLM: what it checks, counts and injects.
#[derive(Default)]
struct Vlm {
    detailed: AtomicUsize,
    short: AtomicUsize,
    /// Inject the scripted faults into the first detailed requests.
    faults: AtomicBool,
    /// Requests showing this colour always get a 500.
    failing: Mutex<Option<&'static str>>,
    /// Whatever was wrong with a request (the handler cannot fail the test itself).
    problems: Mutex<Vec<String>>,
}

fn chat_reply(text: &str) -> HttpReply {
    let body = serde_json::json!({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    });
    HttpReply::json(200, body.to_string())
}

impl Vlm {
    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }

    async fn answer(&self, req: HttpRequest) -> HttpReply {
        if req.method != "POST" || req.path != "/v1/chat/completions" {
            self.problem(format!("{} {}", req.method, req.path));
        }
        if req.header("authorization") != Some(&format!("Bearer {KEY}")) {
            self.problem("the request lacks the bearer key".into());
        }
        let (text, pictures) = match user_message(&req.body) {
            Ok(m) => m,
            Err(e) => {
                self.problem(format!("unreadable request: {e}"));
                return HttpReply::json(400, "{}");
            }
        };
        if pictures.is_empty() {
            self.short.fetch_add(1, Ordering::SeqCst);
            let detailed = text.split("\n\n").nth(1).unwrap_or("").to_string();
            if !detailed.starts_with("A clip of solid") {
                self.problem(format!(
                    "the short prompt lacks the detailed caption: {text}"
                ));
            }
            return chat_reply(&format!("Short: {detailed}"));
        }
        let n = self.detailed.fetch_add(1, Ordering::SeqCst);
        if pictures.len() != FRAMES {
            self.problem(format!("{} pictures, not {FRAMES}", pictures.len()));
        }
        for p in &pictures {
            if (p.width, p.height) != (114, FRAME_SIZE) {
                self.problem(format!(
                    "a {}x{} picture, not 114x{FRAME_SIZE}",
                    p.width, p.height
                ));
            }
        }
        if !text.starts_with(&format!("These {FRAMES} frames are sampled evenly")) {
            self.problem(format!("unexpected prompt: {text}"));
        }
        let colour = colour_of(pictures[0].mean_rgb());
        if *self.failing.lock().unwrap() == Some(colour) {
            return HttpReply::json(500, "{\"error\": {\"message\": \"this one always fails\"}}");
        }
        if self.faults.load(Ordering::SeqCst) {
            match n {
                0 => return HttpReply::json(429, "{}").with_header("retry-after", "1"),
                1 => return HttpReply::json(500, "{}"),
                2 => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return chat_reply("too late");
                }
                3 => return HttpReply::json(200, "{\"choices\": [{\"message\""),
                4 => {
                    return HttpReply::json(
                        200,
                        "{\"choices\": [{\"message\": {\"role\": \"assistant\"}}]}",
                    )
                }
                _ => {}
            }
        }
        // Replies come back in another order than the requests went out.
        tokio::time::sleep(Duration::from_millis((n as u64 * 7919 % 5) * 60)).await;
        chat_reply(&format!("A clip of solid {colour}."))
    }
}

fn start(vlm: &Arc<Vlm>) -> LocalServer {
    let v = vlm.clone();
    LocalServer::start(2, move |req| {
        let v = v.clone();
        async move { v.answer(req).await }
    })
    .unwrap()
}

/// A DAG over `dir/videos` into `dir/<out>`: clips of the shots, `before` nodes, then `caption`.
fn dag(dir: &Path, name: &str, server: &LocalServer, before: &str, caption: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[source]\nuri = \"{src}\"\n[output]\nuri = \"{out}\"\n[engine]\nthreads = 2\n\
             [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
             [[node]]\nop = \"window\"\nmin_s = 0.5\nmax_s = 1.0\n{before}\n\
             [[node]]\nop = \"caption\"\nbackend = \"openai\"\nendpoint = \"{url}\"\nmodel = \"test-vlm\"\n\
             api_key_env = \"{KEY_VAR}\"\nframes = {FRAMES}\nframe_size = {FRAME_SIZE}\nconcurrency = 4\n\
             timeout_s = 1.0\nretries = 3\n{caption}\n",
            src = dir.join("videos").display(),
            out = dir.join(name).display(),
            url = server.url("/v1"),
        ),
    )
    .unwrap();
    path
}

fn env() -> Vec<(&'static str, String)> {
    vec![(KEY_VAR, KEY.to_string()), ("RUST_LOG", "debug".into())]
}

/// Runs kelp, insists on success, keeps its output for the secret scan.
fn kelp_run(args: &[&str], outputs: &mut Vec<(String, std::process::Output)>) -> String {
    let o = kelp_env(args, &env());
    assert!(o.status.success(), "kelp {args:?}: {}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    outputs.push((format!("kelp {args:?}"), o));
    stdout
}

/// (video index, shot index, caption, short, status, error) of every clip, in source order.
fn captions(dataset: &Path) -> Vec<(usize, usize, String, String, String, String)> {
    let o = kelp_env(
        &[
            "sql",
            "SELECT c.uri, c.start_s, k.caption, k.caption_short, k.caption_status, k.caption_error \
             FROM clips c LEFT JOIN captions k USING (clip_id) ORDER BY c.uri, c.start_s",
            "--dataset",
            dataset.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let uri = s(r, "uri");
            let video = if uri.ends_with("v0.mp4") { 0 } else { 1 };
            let shot = r["start_s"].as_f64().unwrap().floor() as usize;
            (
                video,
                shot,
                s(r, "caption"),
                s(r, "caption_short"),
                s(r, "caption_status"),
                s(r, "caption_error"),
            )
        })
        .collect()
}

fn scan_for_the_key(outputs: &[(String, std::process::Output)], dirs: &[PathBuf]) {
    for (what, o) in outputs {
        assert_secret_absent(&format!("{what} stdout"), &o.stdout, KEY);
        assert_secret_absent(&format!("{what} stderr"), &o.stderr, KEY);
    }
    let stderr: String = outputs
        .iter()
        .map(|(_, o)| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(stderr.contains("DEBUG"), "debug logging was on");
    for d in dirs {
        for f in files_under(d) {
            assert_secret_absent(&f.display().to_string(), &std::fs::read(&f).unwrap(), KEY);
        }
    }
}

#[test]
fn captions_survive_a_flaky_server_land_in_their_rows_and_are_never_paid_twice() {
    let tmp = tempfile::tempdir().unwrap();
    videos(&tmp.path().join("videos"));
    let vlm = Arc::new(Vlm::default());
    vlm.faults.store(true, Ordering::SeqCst);
    *vlm.failing.lock().unwrap() = Some("blue");
    let server = start(&vlm);
    let dag_path = dag(tmp.path(), "out", &server, "", "");
    let dag_arg = dag_path.to_str().unwrap();
    let out = tmp.path().join("out");
    let mut outputs = Vec::new();

    // 1. A flaky server: five faults recovered, blue's clip fails for good; the run goes on.
    let stdout = kelp_run(&["run", dag_arg, "-vv"], &mut outputs);
    assert!(stdout.contains("5 calls ok"), "{stdout}");
    assert!(stdout.contains("1 failed"), "{stdout}");
    let rows = captions(&out);
    assert_eq!(rows.len(), 6, "no clip lost: {rows:?}");
    for (video, shot, caption, short, status, error) in &rows {
        let colour = VIDEOS[*video][*shot].0;
        if colour == "blue" {
            assert_eq!(status, "error");
            assert!(
                error.contains("HTTP 500") && error.contains("gave up after 4 attempts"),
                "{error}"
            );
            assert!(caption.is_empty());
        } else {
            assert_eq!(status, "ok", "{colour}: {error}");
            assert_eq!(
                caption,
                &format!("A clip of solid {colour}."),
                "its own clip's caption"
            );
            assert_eq!(short, &format!("Short: A clip of solid {colour}."));
        }
    }
    assert!(
        vlm.problems.lock().unwrap().is_empty(),
        "{:?}",
        vlm.problems.lock().unwrap()
    );
    let tokens = sql_int(
        out.to_str().unwrap(),
        "SELECT CAST(SUM(prompt_tokens) AS BIGINT) FROM captions",
        &[],
        &[],
    );
    assert_eq!(
        tokens,
        5 * 200,
        "two requests of 100 prompt tokens per captioned clip"
    );

    // 2. --resume asks again for the failed clip only, and rewrites only its captions shard.
    *vlm.failing.lock().unwrap() = None;
    vlm.faults.store(false, Ordering::SeqCst);
    let clips_before = shards(&out)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("captions/"))
        .collect::<Vec<_>>();
    let (d0, s0) = (
        vlm.detailed.load(Ordering::SeqCst),
        vlm.short.load(Ordering::SeqCst),
    );
    let stdout = kelp_run(&["run", dag_arg, "--resume", "-vv"], &mut outputs);
    assert!(
        stdout.contains("retried 1 failed remote call(s): 1 now ok"),
        "{stdout}"
    );
    assert_eq!(
        vlm.detailed.load(Ordering::SeqCst) - d0,
        1,
        "only the failed clip"
    );
    assert_eq!(vlm.short.load(Ordering::SeqCst) - s0, 1);
    let rows = captions(&out);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.4 == "ok"), "{rows:?}");
    let blue = rows.iter().find(|r| VIDEOS[r.0][r.1].0 == "blue").unwrap();
    assert_eq!(blue.2, "A clip of solid blue.");
    let clips_after = shards(&out)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("captions/"))
        .collect::<Vec<_>>();
    assert!(clips_before == clips_after, "no other table was touched");
    let stdout = kelp_run(&["run", dag_arg, "--resume"], &mut outputs);
    assert!(
        !stdout.contains("retried"),
        "nothing left to retry: {stdout}"
    );

    // 3. A second run over the same clips pays nothing: every reply comes from the cache.
    let sent = vlm.detailed.load(Ordering::SeqCst) + vlm.short.load(Ordering::SeqCst);
    let stdout = kelp_run(&["run", dag_arg, "--overwrite"], &mut outputs);
    assert!(
        stdout.contains("6 calls ok (6 from the cache)") && stdout.contains("0 requests"),
        "{stdout}"
    );
    assert_eq!(
        vlm.detailed.load(Ordering::SeqCst) + vlm.short.load(Ordering::SeqCst),
        sent
    );
    assert!(captions(&out).iter().all(|r| r.4 == "ok"));

    // 4. A changed prompt is a new request for every clip (the short requests, made from the
    // same detailed captions with the same short prompt, are still the same requests).
    let (d0, s0) = (
        vlm.detailed.load(Ordering::SeqCst),
        vlm.short.load(Ordering::SeqCst),
    );
    let changed = dag(
        tmp.path(),
        "out",
        &server,
        "",
        "prompt = \"These {frames} frames are sampled evenly from a clip; what is in it?\"",
    );
    kelp_run(
        &["run", changed.to_str().unwrap(), "--overwrite"],
        &mut outputs,
    );
    assert_eq!(vlm.detailed.load(Ordering::SeqCst) - d0, 6);
    assert_eq!(vlm.short.load(Ordering::SeqCst) - s0, 0);
    assert!(
        vlm.problems.lock().unwrap().is_empty(),
        "{:?}",
        vlm.problems.lock().unwrap()
    );

    scan_for_the_key(&outputs, &[out]);
}

#[test]
fn only_the_clips_a_filter_keeps_are_sent() {
    let tmp = tempfile::tempdir().unwrap();
    videos(&tmp.path().join("videos"));
    let vlm = Arc::new(Vlm::default());
    let server = start(&vlm);
    let d = dag(
        tmp.path(),
        "filtered",
        &server,
        "[[node]]\nop = \"filter\"\nwhere = \"start_s < 1.5\"",
        "",
    );
    let mut outputs = Vec::new();
    kelp_run(&["run", d.to_str().unwrap(), "-vv"], &mut outputs);
    let out = tmp.path().join("filtered");
    assert_eq!(
        vlm.detailed.load(Ordering::SeqCst),
        4,
        "two kept clips per video"
    );
    let rows = captions(&out);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.1 < 2 && r.4 == "ok"), "{rows:?}");
    let ds = out.to_str().unwrap();
    assert_eq!(sql_int(ds, "SELECT COUNT(*) FROM captions", &[], &[]), 4);
    assert_eq!(
        sql_int(ds, "SELECT COUNT(*) FROM rejected_clips", &[], &[]),
        2
    );
    scan_for_the_key(&outputs, &[out]);
}
