//! `coffee`: the coffee order API server and its operator commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffee_bootstrap::{Application, Config, telemetry};

/// glibc's malloc gives each thread that runs a password hash an arena and
/// keeps the hash's 19 MiB in it after the hash is done: resident memory grew
/// to nearly 500 MB in a login benchmark. mimalloc gives large blocks back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "coffee", version, about = "Coffee order API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve,
    /// Create the database if it is missing, apply pending migrations, then exit.
    Migrate,
    /// Operate the order-event outbox.
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Print pending / in-flight / delivered / dead counts.
    Stats,
    /// Put every dead-lettered event back in the queue.
    RequeueDead,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coffee: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => migrate(&config).await,
        Command::Outbox(command) => outbox(&config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "coffee failed");
            eprintln!("coffee: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    if coffee_postgres::ensure_database_exists(config.database.url()).await? {
        tracing::info!("created the database");
    }
    let applied = coffee_postgres::run_migrations(config.database.url()).await?;
    if applied.is_empty() {
        tracing::info!("the database is up to date");
    } else {
        tracing::info!(count = applied.len(), versions = ?applied, "migrations applied");
    }
    Ok(())
}

/// Prints to stdout: the output of an operator command.
#[allow(clippy::print_stdout)]
async fn outbox(config: &Config, command: OutboxCommand) -> anyhow::Result<()> {
    let admin = coffee_bootstrap::server::outbox_admin(&config.database.operator)?;
    match command {
        OutboxCommand::Stats => {
            let stats = admin.stats().await?;
            println!(
                "pending {}\nin_flight {}\ndelivered {}\ndead {}",
                stats.pending, stats.in_flight, stats.delivered, stats.dead
            );
        }
        OutboxCommand::RequeueDead => {
            let requeued = admin.requeue_dead().await?;
            println!("requeued {requeued}");
        }
    }
    Ok(())
}
