//! `cdn-agent`: the dCDN provider agent. See `configs/cdn-agent.toml` and the README.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use interlattice_cdn::{agent, config::AgentConfig};

/// Serve BLAKE3-addressed content over HTTP, metered and paid through on-chain sessions.
#[derive(Parser)]
#[command(version)]
struct Cli {
	/// The configuration file (TOML; see configs/cdn-agent.toml).
	#[arg(long, short)]
	config: PathBuf,
}

fn main() -> anyhow::Result<()> {
	interlattice_pq_crypto::cpu::check()?;
	interlattice_cdn::init_logging("info");
	let cli = Cli::parse();
	let text = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
	let config = AgentConfig::parse(&text).with_context(|| format!("in {}", cli.config.display()))?;
	tokio::runtime::Runtime::new()?.block_on(async move {
		let listener = agent::bind(config.http.listen).await?;
		let agent = agent::Agent::new(config.clone()).await?;
		tracing::info!(listen = %config.http.listen, "cdn-agent serving");
		let stop = interlattice_settlement::shutdown_signal();
		agent.serve(listener, stop).await?;
		Ok(())
	})
}
