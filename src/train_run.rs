//! `kelp train`, `kelp eval`, `kelp encode` and `kelp sample`: arguments → the trainer's entry
//! points. `kelp-video` runs them all; `kelp-train` (no video libraries) calls [`train_dit`]
//! alone, so nothing that decodes or encodes video is linked into it.

use crate::train_cli::{
    CheckpointData, ClipArgs, EncodeCommand, EvalCommand, RunArgs, SampleCommand, TrainCommand,
};
use anyhow::{Context, Result};
use kelp_trainer::train::dit::commands::{train_dit_on, TrainDitArgs};
use kelp_trainer::train::dit::eval::{eval_dit, EvalDitArgs, SheetSpec};
use kelp_trainer::train::dit::generate::{sample_clip, ClipSpec, SampleArgs};
use kelp_trainer::train::dit::DitTrainConfig;
use kelp_trainer::train::run::RunFlags;
use kelp_trainer::train::split::Split;
use kelp_trainer::train::vae::commands::{encode_dataset, eval_vae, train_vae_on, EvalVaeArgs};
use kelp_trainer::train::vae::encode::EncodeArgs;
use kelp_trainer::train::vae::{TrainVaeArgs, VaeTrainConfig, WeightsChoice};

pub fn train(command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Vae {
            dataset,
            config,
            run,
            how,
        } => {
            let args = TrainVaeArgs {
                config: VaeTrainConfig::load(&config)?,
                run,
                store: how.store.options(),
                resume: how.resume,
                auto_resume: how.auto_resume,
                overwrite: how.overwrite,
                until_step: how.until_step,
                device: how.device,
                progress: !how.quiet,
            };
            let summary = train_vae_on(&args, dataset.as_deref()).context("kelp train vae")?;
            print!("{summary}");
            Ok(())
        }
        TrainCommand::Dit {
            latents,
            config,
            run,
            how,
        } => train_dit(latents, &config, run, how),
    }
}

/// `kelp train dit`: the DiT on a `latents` dataset (no clip is decoded).
pub fn train_dit(
    latents: Option<String>,
    config: &std::path::Path,
    run: String,
    how: RunArgs,
) -> Result<()> {
    let args = TrainDitArgs {
        config: DitTrainConfig::load(config)?,
        latents,
        run,
        store: how.store.options(),
        flags: RunFlags {
            resume: how.resume,
            auto_resume: how.auto_resume,
            overwrite: how.overwrite,
        },
        until_step: how.until_step,
        device: how.device,
        progress: !how.quiet,
    };
    let summary = train_dit_on(&args).context("kelp train dit")?;
    print!("{summary}");
    Ok(())
}

fn weights(data: &CheckpointData) -> WeightsChoice {
    if data.raw_weights {
        WeightsChoice::Raw
    } else {
        WeightsChoice::Ema
    }
}

pub fn eval(command: EvalCommand) -> Result<()> {
    match command {
        EvalCommand::Vae {
            data,
            max_clips,
            write_recon,
        } => {
            let args = EvalVaeArgs {
                checkpoint: data.checkpoint.clone(),
                dataset: data.dataset.clone(),
                store: data.store.options(),
                split: data.split.unwrap_or(Split::HeldOut),
                weights: weights(&data),
                batch_size: data.batch_size,
                max_clips,
                write_recon,
                device: data.device,
            };
            let summary = eval_vae(&args).context("kelp eval vae")?;
            print!("{summary}");
            Ok(())
        }
        EvalCommand::Dit {
            data,
            sheet,
            vae,
            prompts,
            clip,
        } => {
            let sheet = match (sheet, vae) {
                (Some(output), Some(vae)) => Some(SheetSpec {
                    output,
                    vae,
                    prompts,
                    clip: clip_spec(&clip),
                }),
                _ => None,
            };
            let args = EvalDitArgs {
                sheet,
                checkpoint: data.checkpoint.clone(),
                latents: data.dataset.clone(),
                split: data.split.unwrap_or(Split::HeldOut),
                weights: weights(&data),
                batch_size: data.batch_size,
                device: data.device,
                store: data.store.options(),
            };
            print!("{}", eval_dit(&args).context("kelp eval dit")?);
            Ok(())
        }
    }
}

pub fn encode(command: EncodeCommand) -> Result<()> {
    let data = &command.data;
    let args = EncodeArgs {
        checkpoint: data.checkpoint.clone(),
        output: command.output.clone(),
        store: data.store.options(),
        weights: weights(data),
        overwrite: command.overwrite,
        shard_rows: command.shard_rows,
        device: data.device,
    };
    let summary = encode_dataset(
        &args,
        data.dataset.as_deref(),
        data.split.unwrap_or(Split::All),
        data.batch_size,
    )
    .context("kelp encode")?;
    println!(
        "{}: latents of {} clips in {} shards",
        summary.output, summary.clips, summary.shards
    );
    Ok(())
}

/// The clip to sample (its rate is what an fps-conditioned DiT is told).
fn clip_spec(c: &ClipArgs) -> ClipSpec {
    ClipSpec {
        fps: c.fps,
        frames: c.frames,
        size: c.size,
        steps: c.steps,
        cfg: c.cfg,
        seed: c.seed,
        solver: c.solver,
    }
}

pub fn sample(c: SampleCommand) -> Result<()> {
    let args = SampleArgs {
        checkpoint: c.checkpoint,
        vae: c.vae,
        prompt: c.prompt,
        clip: clip_spec(&c.clip),
        output: c.output,
        save_latents: c.save_latents,
        image: c.image,
        weights: if c.raw_weights {
            WeightsChoice::Raw
        } else {
            WeightsChoice::Ema
        },
        device: c.device,
        store: c.store.options(),
    };
    let s = sample_clip(&args).context("kelp sample")?;
    println!(
        "{}: {} frames of {}x{} (latent {:?})",
        s.output.display(),
        s.frames,
        s.width,
        s.height,
        s.latent
    );
    Ok(())
}
