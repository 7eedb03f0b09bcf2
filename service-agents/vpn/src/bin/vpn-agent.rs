//! `vpn-agent`: the dVPN provider agent. See `configs/vpn-agent.toml` and the README.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use interlattice_vpn::{agent, config::AgentConfig};

/// Serve WireGuard tunnels with a post-quantum handshake, metered and paid through on-chain
/// sessions.
#[derive(Parser)]
#[command(version)]
struct Cli {
	/// The configuration file (TOML; see configs/vpn-agent.toml).
	#[arg(long, short)]
	config: PathBuf,
	#[command(subcommand)]
	command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
	/// Serve tunnels (the default).
	Run,
	/// Register the provider on-chain as configured (bonding `provider.stake`), or update what
	/// differs from the registry.
	Register,
}

fn main() -> anyhow::Result<()> {
	interlattice_pq_crypto::cpu::check()?;
	interlattice_vpn::init_logging("info");
	let cli = Cli::parse();
	let text = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
	let config = AgentConfig::parse(&text).map_err(anyhow::Error::msg).with_context(|| format!("in {}", cli.config.display()))?;
	tokio::runtime::Runtime::new()?.block_on(async move {
		match cli.command.unwrap_or(Command::Run) {
			Command::Register => {
				let outcome = agent::register(&config).await?;
				tracing::info!("{outcome}");
			},
			Command::Run => {
				let listener = agent::bind(config.control.listen).await?;
				let life = interlattice_agent_core::lifecycle::Lifecycle::on_signals();
				let agent = agent::Agent::start(config.clone(), life).await?;
				tracing::info!(control = %config.control.listen, endpoint = ?config.provider.endpoint, "vpn-agent serving");
				agent.serve(listener).await?;
			},
		}
		Ok(())
	})
}
