//! `coffee`: the coffee order API server and its operator commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffee_bootstrap::config::{ConfigError, LogFormat};
use coffee_bootstrap::{Application, Config, OperatorConfig, telemetry};

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
    /// List dead-lettered events, oldest first: event id, type, order id,
    /// attempts, created at, last error (tab-separated).
    ListDead {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Delete the dead-lettered events created more than `--older-than` ago
    /// (e.g. `30d`, `12h`): undelivered business events, so requeue what
    /// matters first. Nothing else ever deletes them.
    DiscardDead {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Each command reads only what it needs: a migration job has no signing key.
    let result = match cli.command {
        Command::Serve => match load(Config::from_env, |c| c.log_format) {
            Ok(config) => serve(&config).await,
            Err(code) => return code,
        },
        Command::Migrate => match load(OperatorConfig::from_env, |c| c.log_format) {
            Ok(config) => migrate(&config).await,
            Err(code) => return code,
        },
        Command::Outbox(command) => match load(OperatorConfig::from_env, |c| c.log_format) {
            Ok(config) => outbox(&config, command).await,
            Err(code) => return code,
        },
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

/// Reads a command's configuration and starts logging as it says; a bad
/// setting ends the process with status 2.
fn load<T>(
    read: impl FnOnce() -> Result<T, ConfigError>,
    log_format: impl FnOnce(&T) -> LogFormat,
) -> Result<T, ExitCode> {
    match read() {
        Ok(config) => {
            telemetry::init(log_format(&config));
            Ok(config)
        }
        Err(e) => {
            eprintln!("coffee: configuration error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: &OperatorConfig) -> anyhow::Result<()> {
    if coffee_postgres::ensure_database_exists(config.url(), config.migration).await? {
        tracing::info!("created the database");
    }
    let applied = coffee_postgres::run_migrations(config.url(), config.migration).await?;
    if applied.is_empty() {
        tracing::info!("the database is up to date");
    } else {
        tracing::info!(count = applied.len(), versions = ?applied, "migrations applied");
    }
    Ok(())
}

/// Prints to stdout: the output of an operator command.
#[allow(clippy::print_stdout)]
async fn outbox(config: &OperatorConfig, command: OutboxCommand) -> anyhow::Result<()> {
    let admin = coffee_bootstrap::server::outbox_admin(&config.database)?;
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
        OutboxCommand::ListDead { limit } => {
            for event in admin.list_dead(limit).await? {
                let created = event
                    .created_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| event.created_at.to_string());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    event.id,
                    event.event_type,
                    event.aggregate_id,
                    event.attempts,
                    created,
                    event.last_error.unwrap_or_default().replace(['\t', '\n'], " ")
                );
            }
        }
        OutboxCommand::DiscardDead { older_than } => {
            let discarded = admin.discard_dead(older_than).await?;
            println!("discarded {discarded}");
        }
    }
    Ok(())
}
