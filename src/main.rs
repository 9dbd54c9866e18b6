//! The `gantry` command: starts the runtime, runs one command (src/cli/), and turns how
//! it ended (done, failed, a signal, a closed stdout) into an exit code.

use std::process::ExitCode;

use clap::Parser;
use gantry::{cleanup, github};

mod cli;

/// Waits for SIGINT or SIGTERM; returns its name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn main() -> ExitCode {
    // One TLS stack with one crypto provider, installed before any client exists.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    let settings = cli::Settings::from_env();
    if settings.in_actions {
        for line in github::mask_commands() {
            eprintln!("{line}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let command = cli::run(cli.command, &settings);
        // On a signal the command is dropped, which stops its `go build`s and
        // removes its work directory; then the registered files go too.
        tokio::select! {
            result = command => Ok(result),
            signal = interrupted() => Err(signal),
        }
    });
    cleanup::remove_all();
    let result = match result {
        Ok(result) => result,
        Err(signal) => {
            eprintln!("gantry: stopped by {signal}; its work files are removed");
            return ExitCode::from(if signal == "SIGINT" { 130 } else { 143 });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<cli::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            if settings.in_actions {
                cli::annotate(&e, &settings);
            }
            eprintln!("gantry: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
