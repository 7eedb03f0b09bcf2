//! `cdn-agent`: the dCDN provider agent. See `configs/cdn-agent.toml` and the README.

use interlattice_cdn::agent::Agent;

fn main() -> anyhow::Result<()> {
	interlattice_agent_core::cli::agent_main(|config, life, listener| async move {
		Agent::new(config, life).await?.serve(listener).await
	})
}
