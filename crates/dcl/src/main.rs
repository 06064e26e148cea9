//! `dcl`: distributed continual learning with a distributed rehearsal buffer.
//!
//! The binary turns the command line into typed configurations, runs the library crates
//! and turns their errors into one-line messages and exit codes.

mod bench;
mod cli;
mod fetch;
mod options;
mod progress;
mod report;
mod train;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => match dcl_dist::init() {
            Ok(world) => {
                let world: std::sync::Arc<dyn dcl_dist::Communicator> = world.into();
                let result = train::run(*args, std::sync::Arc::clone(&world));
                if let (Err(error), true) = (&result, world.size() > 1) {
                    // The other ranks may be waiting for this one: stop them all.
                    eprintln!("error: rank {}: {error:#}", world.rank());
                    world.abort(1);
                }
                result
            }
            Err(error) => Err(error.into()),
        },
        cli::Command::Data(cli::DataCommand::Fetch(args)) => fetch::run(args),
        cli::Command::Bench(cli::BenchCommand::Step(args)) => bench::run_step(args),
        cli::Command::Bench(cli::BenchCommand::Buffer(args)) => bench::run_buffer(args),
        cli::Command::Bench(cli::BenchCommand::Rehearsal(args)) => bench::run_rehearsal(args),
        cli::Command::Bench(cli::BenchCommand::Sampling(args)) => bench::run_sampling(args),
        cli::Command::Bench(cli::BenchCommand::Allreduce(args)) => bench::run_allreduce(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
