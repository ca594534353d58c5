//! End to end on the quickstart dataset: `kelp train vae` (the tiny preset, stopped and
//! resumed), `kelp eval vae` on the held-out clips with side-by-side videos, `kelp encode` into a
//! committed `latents` dataset that `kelp sql` reads, and `kelp plot`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_resume_eval_encode_and_plot_on_the_quickstart_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let (samples, data) = (tmp.path().join("samples"), tmp.path().join("data"));
    make_samples(&samples);
    kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        s(&samples),
        "--output",
        s(&data),
        "--quiet",
    ]);
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

    kelp_ok(&["plot", s(&run)]);
    assert!(run.join("metrics.png").exists());
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

#[test]
fn the_slurm_training_script_parses_and_uses_flags_kelp_train_has() {
    let path = repo_root().join("infra/slurm/kelp-train.sbatch");
    let text = std::fs::read_to_string(&path).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(
        syntax.success(),
        "infra/slurm/kelp-train.sbatch: bash syntax"
    );
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
