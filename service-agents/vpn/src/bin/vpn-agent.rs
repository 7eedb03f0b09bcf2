//! `vpn-agent`: the dVPN provider agent. See `configs/vpn-agent.toml` and the README.

use interlattice_vpn::agent::Agent;

fn main() -> anyhow::Result<()> {
	interlattice_agent_core::cli::agent_main(|config, life, listener| async move {
		Agent::start(config, life).await?.serve(listener).await
	})
}
