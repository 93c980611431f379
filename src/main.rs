//! The `moonbot` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use moonbot::config::{self, CONFIG_FILE};
use moonbot::daemon::{self, StartOptions, Stopped, LOG_FILE};

mod math;

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

/// Each subcommand's arguments are built only when it is the one run: a start does not pay
/// for building every other subcommand's.
#[derive(Subcommand)]
#[command(defer = true)]
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
    /// Start the master: in the background, returning once it is up or has failed.
    Start {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Ask the running master to reload master.cfg.lua; print the outcome (and every error).
    Reconfig {
        /// The master's base directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Seconds to wait for the outcome.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Send a change to a master's PBChangeSource (as `buildbot sendchange`).
    Sendchange(Box<moonbot::changes::SendchangeArgs>),
    /// Follow a master's PBListener: print its events as they happen (as `buildbot
    /// statuslog`), reconnecting when the master restarts.
    Statuslog(moonbot::status::pb_listener::client::StatuslogArgs),
    /// Stop the master: send it SIGTERM and wait until it is gone.
    Stop {
        #[command(flatten)]
        stop: StopArgs,
    },
    /// Stop the master if it runs, then start it.
    Restart {
        #[command(flatten)]
        start: StartArgs,
        /// Seconds to wait for the old master to stop.
        #[arg(long, default_value_t = STOP_WAIT_SECS)]
        stop_timeout: u64,
    },
}

/// How long `stop` waits by default: longer than the grace running builds get to finish.
const STOP_WAIT_SECS: u64 = moonbot::engine::SHUTDOWN_GRACE.as_secs() + 30;

#[derive(clap::Args)]
struct StartArgs {
    /// The master's base directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Stay in the foreground and log to stderr (for systemd and the like).
    #[arg(long = "nodaemon")]
    no_daemon: bool,
    /// Seconds to wait for the master to report that it is up.
    #[arg(long, default_value_t = 10)]
    start_timeout: u64,
}

#[derive(clap::Args)]
struct StopArgs {
    /// The master's base directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Seconds to wait for the master to exit.
    #[arg(long, default_value_t = STOP_WAIT_SECS)]
    timeout: u64,
}

// No thread may be started before `start`: it forks the daemon.
fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CreateMaster { dir } => report(create_master(&dir)),
        Command::Checkconfig { path } => checkconfig(&path),
        Command::Start { start: args } => report(start(&args)),
        Command::Stop { stop: args } => report(stop(&args.dir, args.timeout)),
        Command::Restart {
            start: args,
            stop_timeout,
        } => report(stop(&args.dir, stop_timeout).and_then(|()| start(&args))),
        Command::Reconfig { dir, timeout } => reconfig(&dir, timeout),
        Command::Sendchange(args) => report(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(moonbot::changes::sendchange(*args))),
        ),
        Command::Statuslog(args) => report(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(moonbot::status::pb_listener::client::statuslog(args))
                }),
        ),
    }
}

fn reconfig(dir: &Path, timeout: u64) -> ExitCode {
    match daemon::reconfig(dir, Duration::from_secs(timeout)) {
        Ok(outcome) => {
            for error in &outcome.errors {
                eprintln!("{error}");
            }
            println!("{}", outcome.line);
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => report(Err(error)),
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

fn start(args: &StartArgs) -> anyhow::Result<()> {
    let options = StartOptions {
        daemon: !args.no_daemon,
        start_timeout: Duration::from_secs(args.start_timeout),
    };
    if let Some(pid) = daemon::start(&args.dir, &options)? {
        println!(
            "master started in {} (pid {pid}); its log is {}",
            args.dir.display(),
            args.dir.join(LOG_FILE).display()
        );
    }
    Ok(())
}

fn stop(dir: &Path, timeout: u64) -> anyhow::Result<()> {
    match daemon::stop(dir, Duration::from_secs(timeout))? {
        Stopped::NotRunning => println!("master not running in {}", dir.display()),
        Stopped::Stopped(pid) => println!("master stopped (pid {pid})"),
    }
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
