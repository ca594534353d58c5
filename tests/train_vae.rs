//! End to end on the quickstart dataset: `kelp train vae` (the tiny preset, stopped and
//! resumed), `kelp eval vae` on the held-out clips with side-by-side videos, `kelp encode` into a
//! committed `latents` dataset that `kelp sql` reads, `kelp train dit` on those latents and
//! their captions, `kelp sample` to an MP4, and `kelp plot`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "train_vae/dit.rs"]
mod dit;

use common::*;

const CONFIG: &str = r#"
[model]
preset = "tiny"
[train]
steps = 8
lr = 2e-3
warmup_steps = 2
seed = 1
device = "cpu"
[checkpoint]
every = 4
[log]
every = 1
[eval]
holdout = 0.25
[data]
batch_size = 2
frames = 5
size = [32, 20]
"#;

pub fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_resume_eval_encode_and_plot_on_the_quickstart_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = quickstart_dataset(tmp.path());
    let clips = sql_json(&data, "SELECT count(*) AS n FROM media");
    let clips = int(&clips[0], "n");
    assert!(clips >= 10, "{clips} clips with media");

    let config = tmp.path().join("vae.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = tmp.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "vae",
            "--dataset",
            s(&data),
            "--config",
            s(&config),
            "--run",
            s(&run),
            "--quiet",
        ];
        args.extend(extra);
        kelp(&args)
    };
    let first = train(&["--until-step", "4"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("step 4 (8 clips)"),
        "{}",
        stdout(&first)
    );
    let again = train(&[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    let resumed = train(&["--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stdout(&resumed).contains("step 8 (16 clips)"),
        "{}",
        stdout(&resumed)
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>(), "each step logged once");

    let recon = tmp.path().join("recon");
    let eval = kelp_ok(&[
        "eval",
        "vae",
        "--checkpoint",
        s(&run),
        "--write-recon",
        s(&recon),
    ]);
    let all = eval
        .lines()
        .find(|l| l.starts_with("all "))
        .unwrap_or_else(|| panic!("no `all` row:\n{eval}"));
    let fields: Vec<&str> = all.split_whitespace().collect();
    let held_out: i64 = fields[1].parse().unwrap();
    let psnr: f64 = fields[2].parse().unwrap();
    assert!(held_out >= 1 && held_out < clips, "{eval}");
    assert!(psnr.is_finite() && psnr > 0.0, "{eval}");
    let videos = std::fs::read_dir(&recon).unwrap().count() as i64;
    assert_eq!(videos, held_out, "one side-by-side video per held-out clip");

    let latents = tmp.path().join("latents");
    let out = kelp_ok(&["encode", "--checkpoint", s(&run), "--output", s(&latents)]);
    assert!(out.contains(&format!("latents of {clips} clips")), "{out}");
    let rows = sql_json(
        &latents,
        "SELECT count(*) AS n, min(channels) AS c, min(latent_frames) AS t, min(latent_height) AS h, max(latent_width) AS w, min(array_length(mean)) AS len FROM latents",
    );
    let r = &rows[0];
    assert_eq!(
        [
            int(r, "n"),
            int(r, "c"),
            int(r, "t"),
            int(r, "h"),
            int(r, "w"),
            int(r, "len")
        ],
        [clips, 8, 2, 5, 8, 8 * 2 * 5 * 8]
    );

    // Each latent keeps its clip media's frame rate (what an fps-conditioned DiT is told).
    let rates = |dataset: &std::path::Path, table: &str| -> Vec<(String, f64)> {
        let q = format!("SELECT clip_id, fps FROM {table} ORDER BY clip_id");
        sql_json(dataset, &q)
            .iter()
            .map(|r| (text(r, "clip_id").to_string(), r["fps"].as_f64().unwrap()))
            .collect()
    };
    let (media, encoded) = (rates(&data, "media"), rates(&latents, "latents"));
    assert_eq!(encoded.len() as i64, clips);
    for (clip, fps) in &encoded {
        let want = media.iter().find(|(c, _)| c == clip).map(|m| m.1);
        assert!(
            want.is_some_and(|w| w > 0.0 && (w - fps).abs() < 1e-3),
            "{clip}: latents fps {fps}, media {want:?}"
        );
    }
    let captioned = sql_json(&latents, "SELECT count(caption) AS n FROM latents");
    assert!(
        int(&captioned[0], "n") >= 1,
        "the latents carry no captions"
    );
    dit::train_and_sample_dit(tmp.path(), &run, &latents);

    kelp_ok(&["plot", s(&run)]);
    assert!(run.join("metrics.png").exists());

    embed_pass_clusters_the_captions(&data);
}

/// `kelp pass embed` (a pass the trainer registers, run by the `kelp` front binary through
/// kelp-video) over the quickstart dataset's captions, with a parameter from `--set`.
fn embed_pass_clusters_the_captions(data: &std::path::Path) {
    let out = kelp_ok(&[
        "pass",
        "embed",
        "--dataset",
        s(data),
        "--set",
        "clusters=3",
        "--set",
        "seed=7",
    ]);
    assert!(out.contains("pass embed committed"), "{out}");
    let captioned = sql_json(
        data,
        "SELECT count(*) AS n FROM captions WHERE caption IS NOT NULL",
    );
    let captioned = int(&captioned[0], "n");
    let rows = sql_json(
        data,
        "SELECT count(*) AS n, count(DISTINCT cluster_id) AS k, max(cluster_clips) AS big FROM clusters",
    );
    assert_eq!(int(&rows[0], "n"), captioned);
    let k = int(&rows[0], "k");
    assert!((1..=3).contains(&k), "{k} clusters");
    let dims = sql_json(
        data,
        "SELECT min(array_length(embedding)) AS lo, max(array_length(embedding)) AS hi FROM caption_embeddings",
    );
    assert_eq!([int(&dims[0], "lo"), int(&dims[0], "hi")], [384, 384]);
    let sizes = sql_json(
        data,
        "SELECT sum(clips) AS n, count(*) AS k FROM cluster_centroids",
    );
    assert_eq!(int(&sizes[0], "n"), captioned);
    assert_eq!(int(&sizes[0], "k"), k);
    // Committed once: running it again keeps the committed result.
    let again = kelp_ok(&["pass", "embed", "--dataset", s(data)]);
    assert!(again.contains("was already committed"), "{again}");
    let bad = kelp(&["pass", "embed", "--dataset", s(data), "--set", "clusters"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("KEY=VALUE"), "{}", stderr(&bad));
}

#[test]
fn a_config_with_an_unknown_key_is_refused_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, CONFIG.replace("warmup_steps", "warmup")).unwrap();
    let o = kelp(&[
        "train",
        "vae",
        "--dataset",
        "nowhere",
        "--config",
        s(&config),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains("warmup"), "{e}");
}

/// The text of a script of the repository, after `bash -n` found its syntax sound.
fn bash_script(relative: &str) -> String {
    let path = repo_root().join(relative);
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(syntax.success(), "{relative}: bash syntax");
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn the_slurm_training_script_parses_and_uses_flags_kelp_train_has() {
    let text = bash_script("infra/slurm/kelp-train.sbatch");
    assert!(
        text.contains("srun --mpi=pmix"),
        "ranks joined by MPI through srun"
    );
    let help = kelp_ok(&["train", "vae", "--help"]);
    for flag in [
        "--dataset",
        "--config",
        "--run",
        "--auto-resume",
        "--quiet",
        "--endpoint",
        "--allow-http",
    ] {
        assert!(text.contains(flag), "the script does not pass {flag}");
        assert!(help.contains(flag), "kelp train vae --help lacks {flag}");
    }
    let config = text
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG=${KELP_CONFIG:-"))
        .and_then(|v| v.strip_suffix('}'))
        .unwrap();
    assert!(repo_root().join(config).exists(), "{config}");
}

/// The GPU checks run rarely and on a short lease (`infra/gpu/checks.sh`, packed by
/// `infra/gpu/bundle.sh`): every command they run, GPU branch and CPU branch, must still parse
/// in today's `kelp-train`, so a renamed flag fails here and not on the GPU machine.
#[test]
fn the_gpu_checks_script_parses_and_every_command_it_runs_is_one_kelp_train_takes() {
    let text = bash_script("infra/gpu/checks.sh");
    let commands: Vec<Vec<String>> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("step "))
        .map(|l| {
            l.split_whitespace()
                .skip(1) // the report's name
                .map(|a| a.replace("\"$py\"", "python3"))
                .collect()
        })
        .collect();
    assert!(commands.len() >= 8, "both branches' steps: {commands:?}");
    for args in &commands {
        assert!(
            args.iter().any(|a| a == "--device"),
            "names its device: {args:?}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kelp-train"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kelp-train {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A fake `kelp` (or `srun`) that appends its rank variables and arguments to `$FAKE_LOG`, and
/// fails for the local rank in `$FAKE_FAIL_LOCAL`.
///
/// The executable is written by `install`, not by this process: a file this (multi-threaded)
/// test process held open for writing could be inherited by a child another test forks at that
/// moment, and executing it would then fail with "text file busy".
fn fake_command(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let source = dir.join(format!("{name}.txt"));
    std::fs::write(
        &source,
        "#!/usr/bin/env bash\necho \"${RANK:-} ${LOCAL_RANK:-} ${WORLD_SIZE:-} $*\" >> \"$FAKE_LOG\"\n[ \"${LOCAL_RANK:-x}\" != \"${FAKE_FAIL_LOCAL:-none}\" ]\n",
    )
    .unwrap();
    let installed = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(&source)
        .arg(&path)
        .status()
        .unwrap();
    assert!(installed.success(), "install {}", path.display());
    path
}

/// The pod script of `infra/k8s/kelp-train.yaml` (the `args: - |` block), with Kubernetes' `$$`
/// escapes turned back into `$` as the kubelet does.
fn k8s_pod_script(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "- |").skip(1);
    let first = lines.next().expect("a `- |` block under args");
    let indent = first.len() - first.trim_start().len();
    let mut script = vec![first[indent..].to_string()];
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        script.push(l.get(indent..).unwrap_or("").to_string());
    }
    script.join("\n").replace("$$", "$")
}

#[test]
fn the_training_launch_files_agree_on_the_world_and_start_the_right_ranks() {
    let root = repo_root();
    let yaml = std::fs::read_to_string(root.join("infra/k8s/kelp-train.yaml")).unwrap();
    let sbatch = std::fs::read_to_string(root.join("infra/slurm/kelp-train.sbatch")).unwrap();
    let yaml_field = |key: &str| -> String {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.split('#').next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in kelp-train.yaml"))
    };
    let yaml_env = |name: &str| -> String {
        let key = format!("- {{ name: {name}, value: ");
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(key.as_str()))
            .map(|v| v.trim_end_matches('}').trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no env {name} in kelp-train.yaml"))
    };
    let sbatch_opt = |key: &str| -> String {
        sbatch
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#SBATCH --{key}=")))
            .unwrap_or_else(|| panic!("no #SBATCH --{key}"))
            .trim()
            .to_string()
    };
    // One pod per node, all at once, one process per GPU; Slurm: one task per GPU.
    let nodes: usize = yaml_env("NODES").parse().unwrap();
    let gpus: usize = yaml_env("GPUS_PER_NODE").parse().unwrap();
    assert_eq!(yaml_field("completionMode:"), "Indexed");
    assert_eq!(yaml_field("completions:"), nodes.to_string());
    assert_eq!(yaml_field("parallelism:"), nodes.to_string());
    assert!(
        yaml.contains(&format!("nvidia.com/gpu: {gpus}")),
        "a GPU per process"
    );
    assert_eq!(sbatch_opt("nodes"), nodes.to_string(), "same node count");
    assert_eq!(
        sbatch_opt("ntasks-per-node"),
        gpus.to_string(),
        "same ranks per node"
    );
    assert_eq!(sbatch_opt("gpus-per-task"), "1");
    assert!(
        yaml.contains("batch.kubernetes.io/controller-uid") && yaml.contains("KELP_RENDEZVOUS_ID")
    );
    let sbatch_config = sbatch
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG=${KELP_CONFIG:-"))
        .and_then(|v| v.strip_suffix('}'))
        .unwrap();
    assert_eq!(
        yaml_env("KELP_CONFIG"),
        sbatch_config,
        "same training config"
    );

    // Run pod 1 of the Job's script with 3 GPUs per node and a fake kelp.
    let tmp = tempfile::tempdir().unwrap();
    let fake = fake_command(tmp.path(), "kelp");
    let log = tmp.path().join("ranks.log");
    let script = k8s_pod_script(&yaml);
    let run_pod = |fail_local: &str| {
        let _ = std::fs::remove_file(&log);
        std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("NODES", "2")
            .env("GPUS_PER_NODE", "3")
            .env("JOB_COMPLETION_INDEX", "1")
            .env("KELP", &fake)
            .env("KELP_DATASET", "s3://b/ds")
            .env("KELP_CONFIG", "c.toml")
            .env("KELP_RUN", "s3://b/run")
            .env("KELP_ENDPOINT", "http://127.0.0.1:9")
            .env("FAKE_LOG", &log)
            .env("FAKE_FAIL_LOCAL", fail_local)
            .output()
            .unwrap()
    };
    let pod = run_pod("none");
    assert!(
        pod.status.success(),
        "the pod script failed: {}",
        String::from_utf8_lossy(&pod.stderr)
    );
    let mut ranks: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    ranks.sort();
    assert_eq!(ranks.len(), 3, "{ranks:?}");
    let help = kelp_ok(&["train", "vae", "--help"]);
    for (i, line) in ranks.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{} {i} 6 train vae ", 3 + i)),
            "rank {} (local {i}) of 6: {line}",
            3 + i
        );
        for flag in [
            "--dataset s3://b/ds",
            "--config c.toml",
            "--run s3://b/run",
            "--auto-resume",
            "--quiet",
            "--endpoint http://127.0.0.1:9",
        ] {
            assert!(line.contains(flag), "{flag} missing: {line}");
            let name = flag.split(' ').next().unwrap();
            assert!(help.contains(name), "kelp train vae --help lacks {name}");
        }
    }
    assert!(
        !run_pod("1").status.success(),
        "a failing rank fails the pod"
    );

    // The Slurm script hands the same command to srun.
    let srun_dir = tempfile::tempdir().unwrap();
    fake_command(srun_dir.path(), "srun");
    let path = format!(
        "{}:{}",
        srun_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _ = std::fs::remove_file(&log);
    let status = std::process::Command::new("bash")
        .arg(root.join("infra/slurm/kelp-train.sbatch"))
        .env("PATH", path)
        .env("KELP_DATASET", "s3://b/ds")
        .env("KELP_RUN", "s3://b/run")
        .env("FAKE_LOG", &log)
        .env_remove("RANK")
        .env_remove("LOCAL_RANK")
        .env_remove("WORLD_SIZE")
        .status()
        .unwrap();
    assert!(status.success());
    let srun = std::fs::read_to_string(&log).unwrap();
    assert!(
        srun.contains(&format!(
            "--mpi=pmix --kill-on-bad-exit=1 kelp train vae --dataset s3://b/ds --config {sbatch_config} --run s3://b/run --auto-resume --quiet"
        )),
        "{srun}"
    );
}
