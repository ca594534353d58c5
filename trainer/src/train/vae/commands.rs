//! What `kelp train vae`, `kelp eval vae` and `kelp encode` do once their arguments are parsed:
//! the loader config from the training config's `[data]`, `--dataset` and the held-out split,
//! then the training loop, the evaluation or the latent encoder.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use kelp_pipeline::store::StoreOptions;

use super::encode::{encode_latents, EncodeArgs, EncodeSummary};
use super::eval::{eval_batch, EvalReport};
use super::{load_vae, train_vae, TrainSummary, TrainVaeArgs, VaeTrainConfig, WeightsChoice};
use crate::data::recon::{write_side_by_side, PlanarClip};
use crate::data::{Batch, Loader};
use crate::models::nn::Compute;
use crate::models::vae::VaeConfig;
use crate::train::backend::{self, DeviceChoice};
use crate::train::checkpoint;
use crate::train::device::{run_on_device, DeviceJob};
use crate::train::loader_source::{batches, loader_config, one_pass, with_dataset, LoaderSource};
use crate::train::run;
use crate::train::split::Split;
use crate::train::TrainError;

/// Refuses a dataset whose clip shapes the VAE cannot take, naming each and the fix.
fn check_shapes(arch: &VaeConfig, loader: &Loader) -> Result<(), TrainError> {
    let summary = loader.summary();
    let bad: Vec<String> = summary
        .shapes
        .iter()
        .filter_map(|(bucket, [t, h, w], n)| {
            arch.latent_shape(*t as usize, *h as usize, *w as usize)
                .err()
                .map(|e| format!("{bucket} ({n} clips, {t}×{h}×{w}): {e}"))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "the VAE cannot take these clip shapes: {}; set [data] frames (1 + {}·k) and size (multiples of {}) to fit them",
        bad.join("; "),
        arch.compression[0],
        arch.compression[1].max(arch.compression[2]),
    )))
}

/// `kelp train vae`: trains on the training split of `dataset` (or the config's datasets), as
/// one rank of the world its launcher (torchrun, Slurm, mpirun) describes, or alone.
pub fn train_vae_on(
    args: &TrainVaeArgs,
    dataset: Option<&str>,
) -> Result<TrainSummary, TrainError> {
    let (selected, mut coll) = run::join_job(
        args.device.unwrap_or(args.config.train.device),
        &args.run,
        &args.store,
    )?;
    let world = coll.world().clone();
    // The run's config records the dataset it trains on (eval and encode read it from there).
    let mut args = args.clone();
    args.device = Some(if selected.is_gpu() {
        DeviceChoice::Cuda
    } else {
        DeviceChoice::Cpu
    });
    args.config.data = with_dataset(&args.config.data, dataset, &args.store)?;
    args.progress &= world.rank == 0;
    let c = &args.config;
    let arch = c.model.resolve()?;
    let mut lc = loader_config(&c.data, None, &args.store, c.eval.holdout, Split::Train)?;
    lc.rank = world.rank;
    lc.world_size = world.size;
    if world.size > 1 && !lc.drop_last {
        return Err(TrainError::Config(
            "[data] drop_last = false: data-parallel ranks must take the same number of batches each epoch (so the loader's resume state is one value); leave drop_last on".into(),
        ));
    }
    let mut source = LoaderSource::new(lc)?;
    check_shapes(&arch, source.loader())?;
    let s = source.loader().summary();
    tracing::info!(
        "training on {} clips in {} shapes ({} media shards)",
        s.clips,
        s.shapes.len(),
        s.media_shards
    );
    train_vae(&args, &mut source, coll.as_mut())
}

/// The training config a checkpoint was written with.
fn checkpoint_config(uri: &str, store: &StoreOptions) -> Result<VaeTrainConfig, TrainError> {
    let ck = checkpoint::open(uri, store)?;
    VaeTrainConfig::from_toml(&ck.state.config, &format!("{uri}: its config"))
}

/// `kelp eval vae`.
#[derive(Debug, Clone)]
pub struct EvalVaeArgs {
    pub checkpoint: String,
    /// The dataset (default: the datasets of the checkpoint's config).
    pub dataset: Option<String>,
    pub store: StoreOptions,
    pub split: Split,
    pub weights: WeightsChoice,
    pub batch_size: usize,
    /// Stop after this many clips.
    pub max_clips: Option<u64>,
    /// Write `<clip_id>.mp4` (original | reconstruction) here.
    pub write_recon: Option<PathBuf>,
    pub device: DeviceChoice,
}

/// What `kelp eval vae` prints.
#[derive(Debug, Clone)]
pub struct EvalSummary {
    pub checkpoint: String,
    pub step: u64,
    pub weights: &'static str,
    pub split: Split,
    pub report: EvalReport,
    pub recon_written: usize,
}

impl std::fmt::Display for EvalSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} step {} ({}), {:?} clips:",
            self.checkpoint, self.step, self.weights, self.split
        )?;
        write!(f, "{}", self.report)?;
        if self.recon_written > 0 {
            writeln!(f, "{} side-by-side videos written", self.recon_written)?;
        }
        Ok(())
    }
}

pub fn eval_vae(args: &EvalVaeArgs) -> Result<EvalSummary, TrainError> {
    struct Eval<'a>(&'a EvalVaeArgs);
    impl DeviceJob for Eval<'_> {
        type Output = EvalSummary;
        fn run<B: Backend>(self, device: &B::Device) -> Result<EvalSummary, TrainError> {
            eval_on::<B>(self.0, device)
        }
    }
    run_on_device(&backend::select(args.device)?, Eval(args))
}

fn host(t: Tensor<impl Backend, 5>) -> Result<Vec<f32>, TrainError> {
    t.into_data()
        .to_vec::<f32>()
        .map_err(|e| TrainError::Other(format!("reading a tensor back from the device: {e:?}")))
}

/// A clip id as a file name: anything but letters, digits, `.`, `-` and `_` becomes `_`.
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_recons(
    dir: &Path,
    batch: &Batch,
    x: Tensor<impl Backend, 5>,
    y: Tensor<impl Backend, 5>,
) -> Result<usize, TrainError> {
    let [b, _, t, h, w] = batch.shape;
    let (x, y) = (host(x)?, host(y)?);
    for i in 0..b {
        fn clip(v: &[f32], i: usize, [t, h, w]: [usize; 3]) -> PlanarClip<'_> {
            let per = 3 * t * h * w;
            PlanarClip {
                values: &v[i * per..(i + 1) * per],
                frames: t,
                height: h,
                width: w,
            }
        }
        let thw = [t, h, w];
        let id = batch.clip_ids.get(i).map_or("clip", String::as_str);
        let path = dir.join(format!("{}.mp4", file_stem(id)));
        write_side_by_side(&path, clip(&x, i, thw), clip(&y, i, thw), 24)
            .map_err(TrainError::Io)?;
    }
    Ok(b)
}

fn eval_on<B: Backend>(args: &EvalVaeArgs, device: &B::Device) -> Result<EvalSummary, TrainError> {
    let loaded = load_vae::<B>(&args.checkpoint, &args.store, args.weights, device)?;
    let t = &loaded.train;
    let lc = loader_config(
        &t.data,
        args.dataset.as_deref(),
        &args.store,
        t.eval.holdout,
        args.split,
    )?;
    let lc = one_pass(lc, args.batch_size);
    let mut report = EvalReport::default();
    let mut written = 0;
    for batch in batches(lc)? {
        let batch = batch?;
        let (x, y) = eval_batch(
            &loaded.vae,
            &loaded.config,
            &batch,
            Compute::F32,
            device,
            &mut report,
        )?;
        if let Some(dir) = &args.write_recon {
            written += write_recons(dir, &batch, x, y)?;
        }
        if args.max_clips.is_some_and(|m| report.total().clips >= m) {
            break;
        }
    }
    if report.total().clips == 0 {
        return Err(TrainError::Data(format!(
            "no clips to evaluate in the {:?} split ([eval] holdout = {} of the checkpoint's config): use --split all, or train with a larger holdout",
            args.split, t.eval.holdout
        )));
    }
    Ok(EvalSummary {
        checkpoint: args.checkpoint.clone(),
        step: loaded.step,
        weights: loaded.weights,
        split: args.split,
        report,
        recon_written: written,
    })
}

/// `kelp encode`: latents of the clips of `split` (default every clip) of `dataset` (default the
/// checkpoint config's datasets), committed at `args.output`.
pub fn encode_dataset(
    args: &EncodeArgs,
    dataset: Option<&str>,
    split: Split,
    batch_size: usize,
) -> Result<EncodeSummary, TrainError> {
    let t = checkpoint_config(&args.checkpoint, &args.store)?;
    let lc = loader_config(&t.data, dataset, &args.store, t.eval.holdout, split)?;
    let mut clips = batches(one_pass(lc, batch_size))?;
    encode_latents(args, &mut clips)
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn clip_ids_become_safe_file_names() {
        assert_eq!(file_stem("a1b2-0003"), "a1b2-0003");
        assert_eq!(file_stem("../x/y z"), ".._x_y_z");
    }
}
