//! The dVPN agent's configuration file (TOML; every setting is explained in
//! `configs/vpn-agent.toml`): the sections every agent shares (`interlattice-agent-core`'s
//! `[chain]`, `[provider]`, `[payment]`, `[limits]`, `[metrics]`) and the dVPN's own
//! `[control]`, `[tunnel]` and `[https]`.

use std::{
	net::{Ipv4Addr, SocketAddr},
	path::PathBuf,
};

pub use interlattice_agent_core::config::{
	parse_lat, AgentFile, ChainSection, LimitsSection, MetricsSection, PaymentSection, ProviderSection,
	ServiceSections, UNIT,
};
use pallet_provider_registry::ServiceKind;
use serde::Deserialize;

/// The whole file: the shared sections and the dVPN's own.
pub type AgentConfig = AgentFile<VpnSections>;

/// The dVPN's own sections.
#[derive(Clone, Debug, Deserialize)]
pub struct VpnSections {
	/// `[control]`.
	pub control: ControlSection,
	/// `[tunnel]`.
	pub tunnel: TunnelSection,
	/// `[https]` (optional: the defaults serve HTTPS).
	#[serde(default)]
	pub https: HttpsSection,
}

/// `[https]`: the control port also speaks HTTPS, carrying tunnels for clients behind a
/// censor (`crate::https`) and showing a plain website to everyone else.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSection {
	/// Serve HTTPS on the control port.
	#[serde(default = "yes")]
	pub enabled: bool,
	/// The certificate chain (PEM, leaf first); default: a self-signed certificate made at
	/// start for the endpoint's host.
	pub certificate: Option<PathBuf>,
	/// Its private key (PEM).
	pub private_key: Option<PathBuf>,
	/// A directory of static files shown to everyone without a tunnel capability; default: a
	/// one-page placeholder site.
	pub site: Option<PathBuf>,
	/// Instead of a static site, relay every request without a tunnel capability to this
	/// origin (`http://127.0.0.1:7321`: the provider's dCDN agent with `plain_http = true`),
	/// so one HTTPS port serves both services behind one certificate.
	pub upstream: Option<String>,
	/// Also accept the plain control channel (its preamble) on the port: for clients that
	/// do not need camouflage. Turn it off where the endpoint must look like a web server
	/// only.
	#[serde(default = "yes")]
	pub plain_control: bool,
	/// Also serve HTTP/3 (QUIC) on the UDP port with the control port's number: the same site
	/// and tunnels, for clients' `--transport h3`.
	#[serde(default = "yes")]
	pub http3: bool,
}

impl Default for HttpsSection {
	fn default() -> Self {
		HttpsSection {
			enabled: true,
			certificate: None,
			private_key: None,
			site: None,
			upstream: None,
			plain_control: true,
			http3: true,
		}
	}
}

/// `[control]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
	/// TCP address of the control channel.
	pub listen: SocketAddr,
}

/// `[tunnel]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
	/// The TUN interface the agent creates.
	#[serde(default = "default_interface")]
	pub interface: String,
	/// UDP address of WireGuard (default: the control address, same port).
	pub wireguard_listen: Option<SocketAddr>,
	/// The clients' address pool, `a.b.c.d/prefix`; the agent takes the first host address.
	pub pool: String,
	/// MTU of the tunnel interfaces.
	#[serde(default = "default_mtu")]
	pub mtu: u16,
	/// Masquerade (NAT) the pool's traffic to the outside.
	#[serde(default = "yes")]
	pub masquerade: bool,
	/// Networks tunnels may reach although they are private, link-local, loopback or
	/// multicast (`crate::tun::BLOCKED_DESTINATIONS`; e.g. a test network). Default: none.
	#[serde(default)]
	pub egress_allow: Vec<String>,
	/// The most tunnels at once.
	#[serde(default = "default_max_sessions")]
	pub max_sessions: usize,
	/// Clients send a receipt at least every this many bytes...
	#[serde(default = "default_receipt_bytes")]
	pub receipt_interval_bytes: u64,
	/// ...and at least every this many seconds.
	#[serde(default = "default_receipt_secs")]
	pub receipt_interval_secs: u32,
	/// The agent renews a tunnel's WireGuard pre-shared key (a fresh ML-KEM exchange inside
	/// the control channel) this often, seconds; at most 120.
	#[serde(default = "default_rekey_secs")]
	pub rekey_interval_secs: u64,
	/// A tunnel whose key is older than this (its client did not answer a rekey) is ended,
	/// seconds; above `rekey_interval_secs`, at most 180.
	#[serde(default = "default_key_age_secs")]
	pub max_key_age_secs: u64,
}

fn default_interface() -> String {
	"ilvpn0".into()
}
fn default_mtu() -> u16 {
	1420
}
fn yes() -> bool {
	true
}
fn default_max_sessions() -> usize {
	250
}
fn default_receipt_bytes() -> u64 {
	4 << 20
}
fn default_receipt_secs() -> u32 {
	10
}
/// The longest rekey interval (Rosenpass rekeys every 120 s).
pub const MAX_REKEY_INTERVAL_SECS: u64 = 120;
/// The oldest a tunnel's pre-shared key may be (Rosenpass refuses keys older than 180 s).
pub const MAX_KEY_AGE_SECS: u64 = 180;
fn default_rekey_secs() -> u64 {
	MAX_REKEY_INTERVAL_SECS
}
fn default_key_age_secs() -> u64 {
	MAX_KEY_AGE_SECS
}

/// An IPv4 pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
	/// The network address.
	pub network: Ipv4Addr,
	/// Prefix length (8..=30).
	pub prefix: u8,
}

impl Pool {
	/// Parses `a.b.c.d/prefix`.
	pub fn parse(s: &str) -> Result<Pool, String> {
		let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("pool {s:?} must be a.b.c.d/prefix"))?;
		let addr: Ipv4Addr = addr.parse().map_err(|e| format!("pool address {addr:?}: {e}"))?;
		let prefix: u8 = prefix.parse().map_err(|e| format!("pool prefix {prefix:?}: {e}"))?;
		if !(8..=30).contains(&prefix) {
			return Err(format!("pool prefix /{prefix} must be between /8 and /30"));
		}
		let mask = u32::MAX << (32 - u32::from(prefix));
		Ok(Pool { network: Ipv4Addr::from(u32::from(addr) & mask), prefix })
	}

	/// The agent's own address: the first host.
	pub fn gateway(&self) -> Ipv4Addr {
		Ipv4Addr::from(u32::from(self.network) + 1)
	}

	/// Client addresses: every host after the gateway, before the broadcast address.
	pub fn clients(&self) -> impl Iterator<Item = Ipv4Addr> {
		let first = u32::from(self.network) + 2;
		let last = u32::from(self.network) + (1u32 << (32 - u32::from(self.prefix))) - 2;
		(first..=last).map(Ipv4Addr::from)
	}
}

impl std::fmt::Display for Pool {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		write!(f, "{}/{}", self.network, self.prefix)
	}
}

impl ServiceSections for VpnSections {
	const KIND: ServiceKind = ServiceKind::Vpn;
	const ABOUT: &'static str =
		"Serve WireGuard tunnels with a post-quantum handshake, metered and paid through on-chain sessions.";
	const SECTIONS: &'static [&'static str] = &["control", "tunnel", "https"];

	fn listen(&self) -> SocketAddr {
		self.control.listen
	}

	fn check(&self, file: &AgentFile<()>) -> Result<(), String> {
		self.pool()?;
		let tunnel = &self.tunnel;
		if tunnel.receipt_interval_bytes == 0 || tunnel.receipt_interval_bytes > file.payment.credit_limit_bytes {
			return Err("tunnel.receipt_interval_bytes must be between 1 and payment.credit_limit_bytes".into());
		}
		if tunnel.receipt_interval_secs == 0
			|| u64::from(tunnel.receipt_interval_secs) >= file.payment.receipt_timeout_secs
		{
			return Err("tunnel.receipt_interval_secs must be at least 1 and below payment.receipt_timeout_secs".into());
		}
		if tunnel.rekey_interval_secs == 0 || tunnel.rekey_interval_secs > MAX_REKEY_INTERVAL_SECS {
			return Err(format!("tunnel.rekey_interval_secs must be between 1 and {MAX_REKEY_INTERVAL_SECS}"));
		}
		if tunnel.max_key_age_secs <= tunnel.rekey_interval_secs || tunnel.max_key_age_secs > MAX_KEY_AGE_SECS {
			return Err(format!(
				"tunnel.max_key_age_secs must be above tunnel.rekey_interval_secs and at most {MAX_KEY_AGE_SECS}"
			));
		}
		if tunnel.mtu < 576 {
			return Err("tunnel.mtu must be at least 576".into());
		}
		let https = &self.https;
		if https.certificate.is_some() != https.private_key.is_some() {
			return Err("https.certificate and https.private_key go together".into());
		}
		if let Some(site) = &https.site {
			if !site.is_dir() {
				return Err(format!("https.site: {} is not a directory", site.display()));
			}
		}
		if let Some(upstream) = &https.upstream {
			if https.site.is_some() {
				return Err("https.site and https.upstream exclude each other: a static site or a relayed one".into());
			}
			crate::website::upstream_origin(upstream).map_err(|e| format!("https.upstream: {e}"))?;
		}
		if !https.enabled && !https.plain_control {
			return Err("https.enabled and https.plain_control are both off: no client could connect".into());
		}
		for network in &tunnel.egress_allow {
			network
				.parse::<ipnet::Ipv4Net>()
				.map_err(|e| format!("tunnel.egress_allow: {network:?} is not an IPv4 network: {e}"))?;
		}
		Ok(())
	}
}

impl VpnSections {
	/// The address pool.
	pub fn pool(&self) -> Result<Pool, String> {
		Pool::parse(&self.tunnel.pool)
	}

	/// UDP address of WireGuard.
	pub fn wireguard_listen(&self) -> SocketAddr {
		self.tunnel.wireguard_listen.unwrap_or(self.control.listen)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn pools() {
		let pool = Pool::parse("10.77.0.9/24").unwrap();
		assert_eq!(pool.network, Ipv4Addr::new(10, 77, 0, 0));
		assert_eq!(pool.gateway(), Ipv4Addr::new(10, 77, 0, 1));
		let clients: Vec<_> = pool.clients().collect();
		assert_eq!(clients.first(), Some(&Ipv4Addr::new(10, 77, 0, 2)));
		assert_eq!(clients.last(), Some(&Ipv4Addr::new(10, 77, 0, 254)));
		assert!(Pool::parse("10.0.0.0/31").is_err());
		assert!(Pool::parse("10.0.0.0").is_err());
	}

	#[test]
	fn the_shipped_configuration_parses() {
		let text = include_str!("../../../configs/vpn-agent.toml");
		let config = AgentConfig::parse(text).unwrap();
		assert_eq!(config.provider.endpoint.as_deref(), Some("127.0.0.1:7310"));
		assert_eq!(config.service.wireguard_listen(), config.service.control.listen);
		// One port for both services: a bare http:// origin, never together with a static site.
		let upstream = "# upstream = \"http://127.0.0.1:7321\"";
		assert!(text.contains(upstream), "the shipped config changed");
		let relayed = text.replace(upstream, &upstream[2..]);
		assert!(AgentConfig::parse(&relayed).is_ok());
		for bad in ["upstream = \"https://127.0.0.1:7321\"", "upstream = \"http://127.0.0.1:7321/site\""] {
			let error = AgentConfig::parse(&text.replace(upstream, bad)).map(drop).unwrap_err().to_string();
			assert!(error.contains("https.upstream"), "{bad}: {error}");
		}
		let with_site = relayed.replace("# site = \"/var/www/html\"", "site = \"/\"");
		let error = AgentConfig::parse(&with_site).map(drop).unwrap_err().to_string();
		assert!(error.contains("exclude each other"), "{error}");
	}
}
