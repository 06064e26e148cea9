//! `dcl`: distributed continual learning with a distributed rehearsal buffer.
//!
//! The binary turns the command line into typed configurations, runs the library crates
//! and turns their errors into one-line messages and exit codes: 1 for errors, 2 for
//! malformed flags, 128 + the signal's number for a run stopped by SIGINT, SIGTERM or SIGHUP.

mod bench;
mod cli;
mod fetch;
mod html;
mod models;
mod options;
mod progress;
mod report;
mod reproduce;
mod signals;
mod stats;
mod train;
mod watchdog;

use std::sync::Arc;

use clap::Parser;
use dcl_dist::{write_line, Communicator};

use crate::train::Stopped;

fn main() {
    // Die quietly on a closed pipe (`dcl models | head`), as command-line tools do. A file
    // size limit (`ulimit -f`) makes writes fail with an error the run reports, rather than
    // killing the process mid-write.
    // SAFETY: restoring a signal's default disposition, or ignoring it, installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => return train(*args),
        cli::Command::Data(cli::DataCommand::Fetch(args)) => fetch::run(args),
        cli::Command::Models(args) => models::run(args),
        cli::Command::Bench(cli::BenchCommand::Step(args)) => bench::run_step(args),
        cli::Command::Bench(cli::BenchCommand::Buffer(args)) => bench::run_buffer(args),
        cli::Command::Bench(cli::BenchCommand::Rehearsal(args)) => bench::run_rehearsal(args),
        cli::Command::Bench(cli::BenchCommand::Loader(args)) => bench::run_loader(args),
        cli::Command::Bench(cli::BenchCommand::Sampling(args)) => bench::run_sampling(args),
        cli::Command::Bench(cli::BenchCommand::Checkpoint(args)) => bench::run_checkpoint(args),
        cli::Command::Bench(cli::BenchCommand::Allreduce(args)) => bench::run_allreduce(args),
        cli::Command::Bench(cli::BenchCommand::Agents(args)) => bench::run_agents(args),
        cli::Command::Reproduce(command) => reproduce::run(command),
        cli::Command::Report(args) => html::run(args),
        cli::Command::Watch { dir } => watchdog::run(dir),
    };
    if let Err(error) = result {
        write_line(&format!("error: {}", message(&error)));
        std::process::exit(1);
    }
}

/// `dcl train` on every rank; exits with the run's code.
fn train(args: cli::TrainArgs) {
    let (world, notice) = match dcl_dist::init() {
        Ok(joined) => joined,
        Err(error) => {
            write_line(&format!("error: {error}"));
            std::process::exit(1);
        }
    };
    let world: Arc<dyn Communicator> = world.into();
    if let (Some(notice), true) = (notice, world.is_root()) {
        write_line(&format!("note: {notice}"));
    }
    let interrupt = match signals::Interrupt::listen() {
        Ok(interrupt) => interrupt,
        Err(error) => {
            write_line(&format!("error: cannot listen for signals: {error}"));
            std::process::exit(1);
        }
    };
    let Err(error) = train::run(args, Arc::clone(&world), &interrupt) else {
        return;
    };
    match error.downcast_ref::<Stopped>() {
        Some(Stopped::Reported) => {}
        Some(stopped @ Stopped::Interrupted { message, .. }) => {
            if world.is_root() {
                write_line(&format!("dcl: {message}"));
            }
            std::process::exit(stopped.exit_code());
        }
        Some(stopped @ Stopped::Refused(message)) => {
            write_line(&format!("error: {message}"));
            std::process::exit(stopped.exit_code());
        }
        None if world.size() > 1 => {
            // The other ranks may be waiting for this one: stop them all.
            write_line(&format!("error: rank {}: {}", world.rank(), message(&error)));
            world.abort(1);
        }
        None => write_line(&format!("error: {}", message(&error))),
    }
    std::process::exit(1);
}

/// An error and its causes in one line, each cause once (a cause whose text its parent
/// already quotes is not repeated).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
