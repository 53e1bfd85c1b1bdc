//! `mock-collector`: see the library docs for what it does.

use std::net::TcpListener;
use std::process::ExitCode;

use coffee_mock_collector::{MockConfig, run};

#[actix_web::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .compact()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match MockConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mock-collector: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&config.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("mock-collector: binding {}: {e}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %config.addr, fail_rate = config.fail_rate, latency_ms = config.latency.as_millis() as u64, "mock collector listening");
    match run(listener, config) {
        Ok(server) => match server.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mock-collector: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("mock-collector: {e}");
            ExitCode::FAILURE
        }
    }
}
