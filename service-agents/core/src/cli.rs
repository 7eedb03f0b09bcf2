//! The agents' command line, the same for every agent: `<agent> --config FILE [run|register]`,
//! and what every binary does first (the CPU check, logging).

#[cfg(feature = "agent")]
pub use agent::*;

/// Sets up `tracing` output on stderr (`RUST_LOG` overrides `default`).
pub fn init_logging(default: &str) {
	let filter = tracing_subscriber::EnvFilter::try_from_default_env()
		.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
	let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(feature = "agent")]
mod agent {
	use std::{future::Future, path::PathBuf};

	use anyhow::Context;
	use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
	use tokio::net::TcpListener;

	use super::init_logging;
	use crate::{
		config::{AgentFile, ServiceSections},
		lifecycle::Lifecycle,
		start,
	};

	/// `<agent> --config FILE [run|register]`.
	#[derive(Parser)]
	#[command(version)]
	pub struct AgentCli {
		/// The configuration file (TOML; see configs/).
		#[arg(long, short)]
		pub config: PathBuf,
		/// What to do.
		#[command(subcommand)]
		pub command: Option<AgentCommand>,
	}

	/// An agent's subcommands.
	#[derive(Clone, Copy, Debug, Subcommand)]
	pub enum AgentCommand {
		/// Serve (the default).
		Run,
		/// Register the provider's service on-chain as configured (bonding `provider.stake` the
		/// first time), or update what differs of what is this service's.
		Register,
	}

	/// An agent binary's `main`: checks the CPU, sets up logging, reads the command line and the
	/// configuration file, then registers the provider's service, or binds the agent's socket and
	/// `run`s it until Ctrl-C or SIGTERM.
	pub fn agent_main<S, Run, Running, E>(run: Run) -> anyhow::Result<()>
	where
		S: ServiceSections,
		Run: FnOnce(AgentFile<S>, Lifecycle, TcpListener) -> Running,
		Running: Future<Output = Result<(), E>>,
		E: Into<anyhow::Error>,
	{
		interlattice_pq_crypto::cpu::check()?;
		init_logging("info");
		let cli = AgentCli::from_arg_matches(&AgentCli::command().about(S::ABOUT).get_matches())?;
		let text = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
		let config = AgentFile::<S>::parse(&text)
			.map_err(anyhow::Error::msg)
			.with_context(|| format!("in {}", cli.config.display()))?;
		tokio::runtime::Runtime::new()?.block_on(async move {
			match cli.command.unwrap_or(AgentCommand::Run) {
				AgentCommand::Register => tracing::info!("{}", start::register(S::KIND, &config).await?),
				AgentCommand::Run => {
					// Bound first: a port in use fails before anything else is set up.
					let listener = start::bind(config.service.listen()).await?;
					run(config, Lifecycle::on_signals(), listener).await.map_err(Into::into)?
				},
			}
			Ok(())
		})
	}
}
