//! Partitioned runs on a local disk: crashes at random points, injected store failures, worker
//! processes and lease take-over all end in the dataset an uninterrupted run writes, byte for
//! byte: same shards, same clip ids, no duplicates, nothing missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runs;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runs::*;

const VIDEOS: usize = 6;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    src: String,
    dag: String,
}

fn fixture(engine: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    tiny_videos(&root.join("src"), VIDEOS);
    let dag = tiny_dag(&root, engine);
    Fixture {
        src: root.join("src").display().to_string(),
        dag: dag.display().to_string(),
        root,
        _tmp: tmp,
    }
}

impl Fixture {
    fn out(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    fn run(&self, out: &str, extra: &[&str], env: &[(&str, String)]) -> std::process::Output {
        let mut args = vec![
            "run", &self.dag, "--source", &self.src, "--output", out, "--quiet",
        ];
        args.extend_from_slice(extra);
        kelp_env(&args, env)
    }

    /// The uninterrupted reference run.
    fn reference(&self, partitions: &str) -> String {
        let out = self.out("reference");
        let o = self.run(&out, &["--partitions", partitions], &[]);
        assert!(o.status.success(), "{}", show(&o));
        out
    }
}

fn assert_no_duplicates(out: &str) {
    let n = sql_int(
        out,
        "SELECT count(*) - count(DISTINCT clip_id) AS d FROM clips",
        &[],
        &[],
    );
    assert_eq!(n, 0, "{out}: duplicated clip ids");
    let v = sql_int(
        out,
        "SELECT count(*) - count(DISTINCT uri) AS d FROM videos",
        &[],
        &[],
    );
    assert_eq!(v, 0, "{out}: duplicated video rows");
}

#[test]
fn killed_at_twenty_random_points_and_resumed_the_dataset_equals_an_uninterrupted_run() {
    let f = fixture("");
    let reference = f.reference("3");
    let expected_clips = clip_ids(&reference, &[], &[]);
    assert!(expected_clips.len() >= VIDEOS, "the tiny videos give clips");
    let media = sql_int(&reference, "SELECT count(*) FROM media", &[], &[]);
    let previews = sql_int(&reference, "SELECT count(*) FROM previews", &[], &[]);
    assert_eq!(
        (media, previews),
        (expected_clips.len() as i64, expected_clips.len() as i64),
        "every kept clip has media and a preview, so crashes hit their shards too"
    );
    let mut crashes = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed);
        let out = f.out(&format!("crash-{seed}"));
        let mut done = false;
        for round in 0..12 {
            // Puts in an uninterrupted 3-partition run: plan, 3 leases, 21 shards (seven tables:
            // videos, boundaries, clips, rejections, rejected_clips, media, previews), 3 commits,
            // then the clip_index pass's lease, shard and commit, and the manifest (~33):
            // aborting after 1..=36 puts hits every step of the protocol, media and pass included.
            let after = 1 + rng.below(36);
            let o = f.run(
                &out,
                &["--partitions", "3", "--resume"],
                &[("KELP_FAULT_AFTER_PUTS", after.to_string())],
            );
            if o.status.success() {
                done = true;
                break;
            }
            crashes += 1;
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("injected crash"),
                "seed {seed} round {round}: failed without the injected crash: {}",
                show(&o)
            );
        }
        if !done {
            let o = f.run(&out, &["--partitions", "3", "--resume"], &[]);
            assert!(
                o.status.success(),
                "seed {seed}: final resume: {}",
                show(&o)
            );
        }
        assert_same_dataset(
            Path::new(&reference),
            Path::new(&out),
            &format!("seed {seed}"),
        );
        assert_eq!(clip_ids(&out, &[], &[]), expected_clips, "seed {seed}");
        assert_no_duplicates(&out);
    }
    assert!(crashes >= 20, "only {crashes} crashes were injected");
}

#[test]
fn injected_store_failures_then_resume_give_the_uninterrupted_dataset() {
    let f = fixture("");
    let reference = f.reference("3");
    let mut failed_runs = 0;
    for seed in 1..=5u64 {
        let out = f.out(&format!("faults-{seed}"));
        let mut failures = 0;
        let mut ok = false;
        for round in 0..20u64 {
            let o = f.run(
                &out,
                &["--partitions", "3", "--resume"],
                // Each request fails with p = 0.35, before or after it lands; kelp retries a
                // request 4 times, so about one run in two fails somewhere and is resumed.
                &[(
                    "KELP_FAULT_STORE",
                    format!("rate=0.35,seed={}", seed * 100 + round),
                )],
            );
            if o.status.success() {
                ok = true;
                break;
            }
            failures += 1;
        }
        failed_runs += failures;
        assert!(ok, "seed {seed}: no successful run in 20 tries");
        assert_same_dataset(
            Path::new(&reference),
            Path::new(&out),
            &format!("faults seed {seed}"),
        );
        assert_no_duplicates(&out);
        // Failed attempts leave nothing behind once the run is complete.
        let left = walk(Path::new(&out).join("_kelp").as_path());
        assert!(
            left.iter()
                .all(|p| p.contains("/commits/") || p.ends_with("run.json")),
            "seed {seed} ({failures} failed runs): leftovers {left:?}"
        );
    }
    assert!(
        failed_runs > 0,
        "the injected failures never failed a run: the test tests nothing"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn three_worker_processes_give_the_same_dataset_as_one() {
    let f = fixture("");
    let reference = f.reference("4");
    let out = f.out("three");
    let trace = f.root.join("pass-trace.txt");
    let o = f.run(
        &out,
        &["--partitions", "4", "--workers", "3"],
        &[("KELP_PASS_TRACE", trace.display().to_string())],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_same_dataset(Path::new(&reference), Path::new(&out), "3 workers");
    assert_no_duplicates(&out);
    // The three workers finish together; the clip_index pass still ran once.
    let runs = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(
        runs.lines().count(),
        1,
        "the pass ran more than once: {runs}"
    );
    let st = kelp_env(&["status", &out, "--format", "json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let all = v["partitions"].as_array().unwrap();
    let parts: Vec<&serde_json::Value> = all.iter().filter(|p| p["pass"].is_null()).collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(all.len(), 5, "4 partitions and the clip_index pass: {v}");
    assert!(parts.iter().all(|p| p["state"] == "done"), "{v}");
    assert!(
        parts
            .iter()
            .all(|p| p["owner"].as_str().is_some_and(|o| o.contains("(worker "))),
        "worker processes committed every partition: {v}"
    );
}

#[test]
fn sigkill_at_random_moments_with_two_workers_then_resume() {
    let f = fixture("");
    let reference = f.reference("4");
    for seed in 1..=4u64 {
        let mut rng = Rng(seed * 7);
        let out = f.out(&format!("sigkill-{seed}"));
        let mut finished = false;
        for _ in 0..8 {
            let mut child = Command::new(kelp_bin())
                .args([
                    "run", &f.dag, "--source", &f.src, "--output", &out, "--quiet",
                ])
                .args(["--partitions", "4", "--workers", "2", "--resume"])
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let delay = Duration::from_millis(40 + rng.below(500));
            let t = Instant::now();
            loop {
                if let Some(st) = child.try_wait().unwrap() {
                    assert!(st.success(), "seed {seed}: the run failed on its own: {st}");
                    finished = true;
                    break;
                }
                if t.elapsed() >= delay {
                    child.kill().unwrap(); // SIGKILL; its workers die with it
                    child.wait().unwrap();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if finished {
                break;
            }
        }
        if !finished {
            let o = f.run(
                &out,
                &["--partitions", "4", "--workers", "2", "--resume"],
                &[],
            );
            assert!(o.status.success(), "seed {seed}: {}", show(&o));
        }
        assert_same_dataset(
            Path::new(&reference),
            Path::new(&out),
            &format!("sigkill seed {seed}"),
        );
        assert_no_duplicates(&out);
    }
}

#[test]
fn a_crashed_workers_lease_is_taken_over_after_it_expires() {
    let f = fixture("lease_s = 1.5");
    let reference = f.reference("2");
    let out = f.out("takeover");
    // Worker A on "node-a" dies after its plan, lease and first shard are written.
    let a = f.run(
        &out,
        &["--partitions", "2"],
        &[
            ("KELP_HOST", "node-a".into()),
            ("KELP_FAULT_AFTER_PUTS", "3".into()),
        ],
    );
    assert!(!a.status.success(), "A must crash: {}", show(&a));
    let st = kelp_env(
        &["status", &out, "--format", "json"],
        &[("KELP_HOST", "node-b".into())],
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        v["partitions"][0]["state"], "running",
        "A's lease is still live: {v}"
    );
    // B on another host cannot tell A is dead: it must wait for the lease to expire.
    let t = Instant::now();
    let b = kelp_env(
        &[
            "run",
            &f.dag,
            "--source",
            &f.src,
            "--output",
            &out,
            "--quiet",
            "--partitions",
            "2",
            "--resume",
        ],
        &[
            ("KELP_HOST", "node-b".into()),
            ("RUST_LOG", "kelp_pipeline=info".into()),
        ],
    );
    assert!(b.status.success(), "{}", show(&b));
    let log = String::from_utf8_lossy(&b.stderr);
    assert!(
        log.contains("taking over the lease of partition 0"),
        "{log}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "B waited for the expiry"
    );
    assert_same_dataset(Path::new(&reference), Path::new(&out), "take-over");
}

#[test]
fn a_pass_killed_mid_way_is_completed_by_resume_with_the_same_output() {
    let f = fixture("");
    let reference = f.reference("3");
    let out = f.out("pass-killed");
    let o = f.run(
        &out,
        &["--partitions", "3"],
        &[("KELP_FAULT_IN_PASS", "1".into())],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("aborting inside pass clip_index"),
        "{}",
        show(&o)
    );
    assert!(
        !Path::new(&out).join("_manifest.json").exists(),
        "no manifest before the pass commits"
    );
    let st = kelp_env(&["status", &out], &[]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("3 partitions and 1 pass: 3 done"), "{text}");
    let ok = f.run(&out, &["--resume"], &[]);
    assert!(ok.status.success(), "{}", show(&ok));
    assert_same_dataset(
        Path::new(&reference),
        Path::new(&out),
        "pass killed, then resumed",
    );
    assert!(
        walk(Path::new(&out)).iter().all(|p| !p.contains("staging")),
        "staging cleaned"
    );
}

#[test]
fn a_pass_runs_on_its_own_over_a_finished_dataset_exactly_once() {
    let f = fixture("");
    let reference = f.reference("2");
    let text = std::fs::read_to_string(&f.dag).unwrap();
    let without = text.replace("[[pass]]\nop = \"clip_index\"\n", "");
    assert_ne!(text, without);
    let dag = f.root.join("nopass.toml");
    std::fs::write(&dag, without).unwrap();
    let out = f.out("standalone");
    let dag_s = dag.display().to_string();
    let args = [
        "run",
        &dag_s,
        "--source",
        &f.src,
        "--output",
        &out,
        "--quiet",
        "--partitions",
        "2",
    ];
    let o = kelp_env(&args, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let none = kelp_env(&["sql", "SELECT * FROM clip_index", "--dataset", &out], &[]);
    assert!(!none.status.success(), "no clip_index before the pass");

    let first = kelp_env(&["pass", "clip_index", "--dataset", &out], &[]);
    assert!(first.status.success(), "{}", show(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("pass clip_index committed"));
    let index = |d: &str| -> Vec<String> {
        let o = kelp_env(
            &[
                "sql",
                "SELECT clip_id, \"row\", shard, shard_row FROM clip_index ORDER BY \"row\"",
                "--dataset",
                d,
                "--format",
                "csv",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let got = index(&out);
    let clips = sql_int(&out, "SELECT count(*) FROM clips", &[], &[]);
    assert_eq!(
        got.len() as i64,
        clips + 1,
        "one row per clip (plus the header)"
    );
    assert_eq!(
        got,
        index(&reference),
        "the same index as the pass run inside the DAG"
    );
    let rows = sql_int(
        &out,
        "SELECT count(DISTINCT \"row\") - max(\"row\") FROM clip_index",
        &[],
        &[],
    );
    assert_eq!(rows, 1, "rows are 0..n-1");

    let again = kelp_env(&["pass", "clip_index", "--dataset", &out], &[]);
    assert!(again.status.success(), "{}", show(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("was already committed"));
    assert_eq!(index(&out), got);
    let st = kelp_env(&["status", &out], &[]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("pass clip_index"));
}

#[test]
fn an_unfinished_run_needs_resume_and_status_shows_it() {
    let f = fixture("");
    let out = f.out("unfinished");
    let a = f.run(
        &out,
        &["--partitions", "3"],
        &[("KELP_FAULT_AFTER_PUTS", "9".into())],
    );
    assert!(!a.status.success());
    // Readers see the committed partitions only.
    let st = kelp_env(&["status", &out], &[]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("3 partitions and 1 pass:") && text.contains("pending"),
        "{text}"
    );
    let again = f.run(&out, &["--partitions", "3"], &[]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("--resume") && err.contains("unfinished run"),
        "{err}"
    );
    let other_m = f.run(&out, &["--partitions", "2", "--resume"], &[]);
    assert!(!other_m.status.success());
    assert!(String::from_utf8_lossy(&other_m.stderr).contains("not --partitions 2"));
    let ok = f.run(&out, &["--resume"], &[]);
    assert!(ok.status.success(), "{}", show(&ok));
    let st = kelp_env(&["status", &out], &[]);
    assert!(String::from_utf8_lossy(&st.stdout)
        .contains("3 partitions and 1 pass: 4 done, 0 running, 0 failed, 0 pending; complete"));
}

#[test]
fn partitions_on_separate_processes_commit_once_and_the_last_writes_the_manifest() {
    let f = fixture("");
    let reference = f.reference("3");
    let out = f.out("separate");
    for i in ["2", "0"] {
        let o = f.run(&out, &["--partitions", "3", "--partition", i], &[]);
        assert!(o.status.success(), "{}", show(&o));
        assert!(
            !Path::new(&out).join("_manifest.json").exists(),
            "not before the last partition"
        );
    }
    // Re-running a committed partition does nothing.
    let o = f.run(&out, &["--partitions", "3", "--partition", "0"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    let st = kelp_env(&["status", &out, "--format", "json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let committed_videos: i64 = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "done")
        .map(|p| p["videos"].as_i64().unwrap())
        .sum();
    let n = sql_int(&out, "SELECT count(*) FROM videos", &[], &[]);
    assert!(
        committed_videos > 0 && (committed_videos as usize) < VIDEOS,
        "{v}"
    );
    assert_eq!(
        n, committed_videos,
        "the view of an unfinished run shows committed partitions only"
    );
    let o = f.run(&out, &["--partitions", "3", "--partition", "1"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_same_dataset(
        Path::new(&reference),
        Path::new(&out),
        "one partition per process",
    );
}

#[test]
fn cluster_files_use_the_flags_kelp_has_and_agree_on_m() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let k8s = std::fs::read_to_string(root.join("infra/k8s/kelp-run.yaml")).unwrap();
    let field = |key: &str| -> String {
        k8s.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.split('#').next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in the Job"))
    };
    assert_eq!(field("completionMode:"), "Indexed");
    assert!(!field("backoffLimitPerIndex:").is_empty());
    let m = field("completions:");
    assert!(
        k8s.contains(&format!("--partitions={m}")),
        "completions ({m}) = --partitions"
    );
    assert!(k8s.contains("--partition=$(JOB_COMPLETION_INDEX)"));
    let sbatch = root.join("infra/slurm/kelp-run.sbatch");
    let text = std::fs::read_to_string(&sbatch).unwrap();
    assert!(text.contains("--partition \"$SLURM_ARRAY_TASK_ID\""));
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&sbatch)
        .status()
        .unwrap();
    assert!(syntax.success(), "infra/slurm/kelp-run.sbatch: bash syntax");
    let help = kelp_env(&["run", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--partitions",
        "--partition",
        "--threads",
        "--workers",
        "--resume",
        "--endpoint",
        "--allow-http",
        "--quiet",
    ] {
        assert!(help.contains(flag), "kelp run --help lacks {flag}");
    }
}
