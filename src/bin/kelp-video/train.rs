//! `kelp train`, `kelp eval` and `kelp encode`: arguments → the trainer's entry points.

use anyhow::{Context, Result};
use kelp_cli::train_cli::{CheckpointData, EncodeCommand, EvalCommand, TrainCommand};
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
            resume,
            auto_resume,
            overwrite,
            until_step,
            device,
            quiet,
            store,
        } => {
            let config = VaeTrainConfig::load(&config)?;
            let args = TrainVaeArgs {
                config,
                run,
                store: store.options(),
                resume,
                auto_resume,
                overwrite,
                until_step,
                device,
                progress: !quiet,
            };
            let summary = train_vae_on(&args, dataset.as_deref()).context("kelp train vae")?;
            print!("{summary}");
            Ok(())
        }
    }
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
