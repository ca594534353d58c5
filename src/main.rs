//! `kelp`: parse, dispatch, print. Dataset commands (`sql`, `stats`, `status`, `pass`, `serve`,
//! `bench sql`) run here, in a binary that links no video library and starts in milliseconds;
//! every command that decodes video is handed to `kelp-video` (installed beside it) by `exec`,
//! the same process and arguments, so exit codes, signals and output are its own.

use std::os::unix::process::CommandExt;

use clap::Parser;
use kelp_cli::cli::{init_logging, Cli};

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match kelp_cli::data::dispatch(cli.command) {
        Ok(None) => {}
        Ok(Some(_video_command)) => {
            let video = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("kelp-video")));
            let Some(video) = video.filter(|p| p.exists()) else {
                eprintln!("error: this command decodes video and needs the kelp-video binary beside kelp (cargo build builds both; install both)");
                std::process::exit(1);
            };
            let err = std::process::Command::new(&video)
                .args(std::env::args_os().skip(1))
                .exec();
            eprintln!("error: starting {}: {err}", video.display());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
