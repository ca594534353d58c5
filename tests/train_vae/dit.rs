//! The DiT part of the end-to-end test (`tests/train_vae.rs`): on the latents `kelp encode`
//! committed, `kelp train dit` (stopped after one step and resumed), `kelp eval dit` with a
//! contact sheet, `kelp sample` by seed and from a still.

use super::common::*;
use super::s;

/// The tiny DiT on the tiny VAE's latents (2×5×8 for 5×32×20 clips: no patching) with MiniLM's
/// 384-wide caption tokens, image-conditioned on a fifth of its samples.
const DIT_CONFIG: &str = r#"
[model]
preset = "tiny"
patch = [1, 1, 1]
text_dim = 384
image_condition = true
[flow]
base_tokens = 0
[train]
steps = 60
lr = 2e-3
warmup_steps = 5
seed = 1
device = "cpu"
[checkpoint]
every = 30
[log]
every = 10
[data]
batch_size = 2
text_max_len = 16
[eval]
holdout = 0.25
"#;

/// `kelp train dit` on `latents`, then `kelp sample` with the VAE run `vae`: the sampled clip is
/// a decodable MP4 of the requested shape, and its latents are a function of the seed.
pub fn train_and_sample_dit(
    dir: &std::path::Path,
    vae: &std::path::Path,
    latents: &std::path::Path,
) {
    let config = dir.join("dit.toml");
    std::fs::write(&config, DIT_CONFIG).unwrap();
    let run = dir.join("dit-run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "dit",
            "--latents",
            s(latents),
            "--config",
            s(&config),
            "--run",
            s(&run),
            "--quiet",
        ];
        args.extend(extra);
        kelp_ok(&args)
    };
    // The held-out loss after one step (about the untrained model's) and after sixty.
    let held_out_loss = || {
        let out = kelp_ok(&["eval", "dit", "--checkpoint", s(&run)]);
        let all = out
            .lines()
            .find(|l| l.starts_with("all "))
            .unwrap_or_else(|| panic!("no `all` row:\n{out}"));
        let loss: f64 = all.split_whitespace().nth(1).unwrap().parse().unwrap();
        (loss, out)
    };
    let out = train(&["--until-step", "1"]);
    assert!(out.contains("step 1 (2 clips)"), "{out}");
    let (before, table) = held_out_loss();
    let out = train(&["--resume"]);
    assert!(out.contains("step 60 (120 clips)"), "{out}");
    let (after, table_after) = held_out_loss();
    println!("DiT held-out flow-matching loss: step 1 {before:.4} → step 60 {after:.4}\n{table}{table_after}");
    assert!(
        after < 0.7 * before,
        "held-out loss {before:.4} → {after:.4}\n{table}{table_after}"
    );
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(recorded.contains("latent_scale"), "{recorded}");

    let sample =
        |seed: &str, name: &str, extra: &[&str]| sample_latents(dir, &run, vae, seed, name, extra);
    let (mp4, a) = sample("3", "a", &[]);
    let (_, again) = sample("3", "b", &[]);
    let (_, other) = sample("4", "c", &[]);
    assert_eq!(a.len(), 8 * 2 * 5 * 8 * 4, "f32 latents of 8×2×5×8");
    assert_eq!(a, again, "the same seed gave other latents");
    assert_ne!(a, other, "the seed changed nothing");
    // This DiT has no fps embedding: the frame rate asked for changes only the MP4's rate.
    let (_, slow) = sample("3", "slow", &["--fps", "8"]);
    assert_eq!(a, slow, "a model without fps_condition heard --fps");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
            s(&mp4),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "h264,32,20,5",
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // A contact sheet of two prompts: 5 frames of 32×20 per row, 2 px apart.
    let sheet = dir.join("sheet.png");
    let out = kelp_ok(&[
        "eval",
        "dit",
        "--checkpoint",
        s(&run),
        "--sheet",
        s(&sheet),
        "--vae",
        s(vae),
        "--prompt",
        "a bright disc moves to the right",
        "--prompt",
        "stripes on a dark ground",
        "--frames",
        "5",
        "--size",
        "32x20",
        "--steps",
        "2",
    ]);
    assert!(out.contains("contact sheet"), "{out}");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            s(&sheet),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "168,42");

    // Image-to-video: the same model continues a still (a frame of a sample video).
    let still = dir.join("first.png");
    ffmpeg(&[
        "-i",
        s(&dir.join("samples/cuts.mp4")),
        "-frames:v",
        "1",
        s(&still),
    ]);
    let (i2v, from_still) = sample("3", "i2v", &["--image", s(&still)]);
    assert_ne!(from_still, a, "the still changed nothing");
    assert!(std::fs::metadata(&i2v).unwrap().len() > 0);
    train_packed(dir, vae, latents);
}

/// `kelp bench dit-cost` measures the cost model; `kelp train dit` with `[data] pack_tokens`,
/// runtime balance on that cost model and a size-conditioned model packs each step's latents
/// into 2 rows of 200 tokens (two 80-token latents with their captions per row) and reports
/// the padding packed against padded batches and the predicted balance.
fn train_packed(dir: &std::path::Path, vae: &std::path::Path, latents: &std::path::Path) {
    // The runtime balance's cost model, measured for this architecture on this machine.
    let base = dir.join("dit.toml");
    let bench = kelp_ok(&[
        "bench",
        "dit-cost",
        "--config",
        s(&base),
        "--tokens",
        "24,48,96",
        "--reps",
        "1",
        "--device",
        "cpu",
    ]);
    let cost = bench
        .lines()
        .find(|l| l.starts_with("cost_model = {"))
        .unwrap_or_else(|| panic!("no cost_model line:\n{bench}"));
    assert_eq!(
        bench.lines().filter(|l| l.starts_with("| ")).count(),
        4,
        "{bench}"
    );

    let config = dir.join("dit-packed.toml");
    let text = DIT_CONFIG
        .replace(
            "[data]\n",
            &format!("[data]\npack_tokens = 200\nruntime_balance = true\n{cost}\n"),
        )
        .replace(
            "image_condition = true\n",
            "image_condition = true\nsize_condition = true\nfps_condition = true\n",
        );
    assert!(text.contains("pack_tokens") && text.contains("fps_condition"));
    std::fs::write(&config, text).unwrap();
    let run = dir.join("dit-packed-run");
    let out = kelp_ok(&[
        "train",
        "dit",
        "--latents",
        s(latents),
        "--config",
        s(&config),
        "--run",
        s(&run),
        // Four steps: AdaLN-Zero starts every modulation and the output layer at zero, so the
        // conditioning (and with it the fps embedding) first receives a gradient at step 3.
        "--until-step",
        "4",
        "--quiet",
    ]);
    // Up to 4 clips a step (fewer when the epoch's last packed batch is short).
    assert!(out.contains("step 4 ("), "{out}");
    let report = out
        .lines()
        .find(|l| l.starts_with("packing: "))
        .unwrap_or_else(|| panic!("no packing report:\n{out}"));
    assert!(report.contains("% packed"), "{report}");
    assert!(
        out.lines().any(|l| l.starts_with("runtime balance: ")),
        "no runtime balance report:\n{out}"
    );
    // This DiT is fps-conditioned: the rate asked for reaches the model (other latents for
    // another rate), deterministically.
    let sample = |fps: &str, name: &str| {
        let name = format!("packed-{name}");
        sample_latents(dir, &run, vae, "1", &name, &["--fps", fps]).1
    };
    let (at8, at30, at30_again) = (sample("8", "8"), sample("30", "30"), sample("30", "30b"));
    assert_eq!(at30, at30_again);
    assert_ne!(at8, at30, "an fps-conditioned DiT ignored --fps");
}

/// `kelp sample` of 5 frames of 32x20 in 3 steps on the CPU with `seed` (and `extra` options):
/// the MP4 it wrote as DIR/NAME.mp4 and the latents it saved.
fn sample_latents(
    dir: &std::path::Path,
    run: &std::path::Path,
    vae: &std::path::Path,
    seed: &str,
    name: &str,
    extra: &[&str],
) -> (std::path::PathBuf, Vec<u8>) {
    let (mp4, raw) = (
        dir.join(format!("{name}.mp4")),
        dir.join(format!("{name}.f32")),
    );
    let mut args = vec![
        "sample",
        "--checkpoint",
        s(run),
        "--vae",
        s(vae),
        "--prompt",
        "a bright disc moves to the right",
        "--frames",
        "5",
        "--size",
        "32x20",
        "--steps",
        "3",
        "--seed",
        seed,
        "--device",
        "cpu",
        "-o",
        s(&mp4),
        "--save-latents",
        s(&raw),
    ];
    args.extend(extra);
    let out = kelp_ok(&args);
    assert!(out.contains("5 frames of 32x20"), "{out}");
    (mp4, std::fs::read(&raw).unwrap())
}
