//! The `moonbot` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use moonbot::config::{self, CONFIG_FILE};

/// The sample config `create-master` writes: the same file as `master.cfg.lua` in the repo.
const SAMPLE_CONFIG: &str = include_str!("../master.cfg.lua");

#[derive(Parser)]
#[command(
    name = "moonbot",
    version,
    about = "A Buildbot-style CI build master configured in Lua"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a base directory holding a commented sample master.cfg.lua.
    CreateMaster {
        /// The base directory to create (it may exist, but must not hold master.cfg.lua).
        dir: PathBuf,
    },
    /// Check a config: print every error with its file and line, or a summary.
    Checkconfig {
        /// A base directory or a config file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CreateMaster { dir } => report(create_master(&dir)),
        Command::Checkconfig { path } => checkconfig(&path),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moonbot: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_master(dir: &Path) -> anyhow::Result<()> {
    let file = dir.join(CONFIG_FILE);
    if file.exists() {
        bail!("{} already exists; not overwriting it", file.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&file, SAMPLE_CONFIG)
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "created {}; check it with: moonbot checkconfig {}",
        file.display(),
        dir.display()
    );
    Ok(())
}

fn checkconfig(path: &Path) -> ExitCode {
    match config::load_path(path) {
        Ok(loaded) => {
            for warning in &loaded.unimplemented {
                eprintln!("warning: {warning}");
            }
            let c = &loaded.config;
            println!("Config file is good!");
            println!(
                "{} builders, {} schedulers, {} status targets, {} workers, {} change sources",
                c.builders.len(),
                c.schedulers.len(),
                c.status.len(),
                c.workers.len(),
                c.change_sources.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
