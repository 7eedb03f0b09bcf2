//! The agent's configuration file (TOML; every setting is explained in
//! `configs/vpn-agent.toml`). Secrets may come from the environment instead of the file.

use std::{
	net::{Ipv4Addr, SocketAddr},
	path::PathBuf,
};

use interlattice_pq_crypto::keys::MlDsaKeyPair;
use serde::Deserialize;

/// The smallest unit per LAT.
pub const UNIT: u128 = 1_000_000_000_000;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
	/// `[chain]`.
	pub chain: ChainSection,
	/// `[provider]`.
	pub provider: ProviderSection,
	/// `[control]`.
	pub control: ControlSection,
	/// `[tunnel]`.
	pub tunnel: TunnelSection,
	/// `[payment]`.
	pub payment: PaymentSection,
	/// `[metrics]`.
	#[serde(default)]
	pub metrics: MetricsSection,
}

/// `[chain]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
	/// A node's JSON-RPC URL.
	pub rpc: String,
}

/// `[provider]`: who the agent is, and what `vpn-agent register` registers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
	/// The provider account's secret URI (or `INTERLATTICE_ACCOUNT`).
	pub account: Option<String>,
	/// The ML-DSA-65 service key: a seed file made by `pq-key generate`, or `dev:<name>` for a
	/// well-known development key (or `INTERLATTICE_SERVICE_KEY`).
	pub service_key: Option<String>,
	/// The endpoint clients dial, `host:port` (TCP control channel and UDP WireGuard).
	pub endpoint: String,
	/// ISO 3166-1 alpha-2 country code.
	pub country: String,
	/// Price per GiB in LAT (decimal string).
	pub price_per_gib: String,
	/// Price per hour in LAT.
	pub price_per_hour: String,
	/// Stake bonded at registration, in LAT.
	pub stake: String,
}

/// `[control]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
	/// TCP address of the control channel.
	pub listen: SocketAddr,
	/// Seconds a client has for each handshake step.
	#[serde(default = "default_handshake_timeout")]
	pub handshake_timeout_secs: u64,
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
}

/// `[payment]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSection {
	/// Unpaid bytes served to a session before its traffic stops.
	#[serde(default = "default_credit")]
	pub credit_limit_bytes: u64,
	/// Clients send a receipt at least every this many bytes...
	#[serde(default = "default_receipt_bytes")]
	pub receipt_interval_bytes: u64,
	/// ...and at least every this many seconds.
	#[serde(default = "default_receipt_secs")]
	pub receipt_interval_secs: u32,
	/// Traffic stops when the latest receipt's time is this many seconds behind.
	#[serde(default = "default_receipt_timeout")]
	pub receipt_timeout_secs: u64,
	/// Where receipts are kept until settled.
	pub receipts_dir: PathBuf,
	/// Seconds between settlement rounds.
	#[serde(default = "default_settle_interval")]
	pub settle_interval_secs: u64,
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
	/// Prometheus endpoint (`/metrics`); none if unset.
	pub listen: Option<SocketAddr>,
}

fn default_handshake_timeout() -> u64 {
	10
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
fn default_credit() -> u64 {
	32 << 20
}
fn default_receipt_bytes() -> u64 {
	4 << 20
}
fn default_receipt_secs() -> u32 {
	10
}
fn default_receipt_timeout() -> u64 {
	60
}
fn default_settle_interval() -> u64 {
	60
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

/// Parses a LAT amount with up to 12 decimals ("0.5", "10000").
pub fn parse_lat(s: &str) -> Result<u128, String> {
	let s = s.trim();
	let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
	if whole.is_empty() && fraction.is_empty() || fraction.len() > 12 {
		return Err(format!("{s:?} is not a LAT amount (at most 12 decimals)"));
	}
	let digits = |d: &str| d.is_empty() || d.bytes().all(|b| b.is_ascii_digit());
	if !digits(whole) || !digits(fraction) {
		return Err(format!("{s:?} is not a LAT amount"));
	}
	let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{s:?} is too large"))? };
	let fraction: u128 = format!("{fraction:0<12}").parse().map_err(|_| format!("{s:?} is not a LAT amount"))?;
	whole.checked_mul(UNIT).and_then(|w| w.checked_add(fraction)).ok_or_else(|| format!("{s:?} is too large"))
}

/// Loads an ML-DSA-65 service key: `dev:<name>` or a seed file.
pub fn load_service_key(spec: &str) -> Result<MlDsaKeyPair, String> {
	if let Some(name) = spec.strip_prefix("dev:") {
		if !interlattice_pq_crypto::dev_keys::DEV_KEY_NAMES.contains(&name) {
			return Err(format!("no development service key {name:?}"));
		}
		return Ok(MlDsaKeyPair::dev(name));
	}
	MlDsaKeyPair::read_seed_file(std::path::Path::new(spec)).map_err(|e| format!("service key {spec}: {e:?}"))
}

impl AgentConfig {
	/// Parses and checks the file's text.
	pub fn parse(text: &str) -> Result<Self, String> {
		let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
		config.pool()?;
		if config.provider.country.len() != 2 || !config.provider.country.bytes().all(|b| b.is_ascii_uppercase()) {
			return Err(format!("provider.country {:?} must be two capital letters (ISO 3166-1)", config.provider.country));
		}
		for (name, value) in [
			("price_per_gib", &config.provider.price_per_gib),
			("price_per_hour", &config.provider.price_per_hour),
			("stake", &config.provider.stake),
		] {
			parse_lat(value).map_err(|e| format!("provider.{name}: {e}"))?;
		}
		if config.payment.receipt_interval_bytes == 0 || config.payment.receipt_interval_bytes > config.payment.credit_limit_bytes {
			return Err("payment.receipt_interval_bytes must be between 1 and credit_limit_bytes".into());
		}
		if config.payment.receipt_interval_secs == 0 || u64::from(config.payment.receipt_interval_secs) >= config.payment.receipt_timeout_secs {
			return Err("payment.receipt_interval_secs must be at least 1 and below receipt_timeout_secs".into());
		}
		if config.tunnel.mtu < 576 {
			return Err("tunnel.mtu must be at least 576".into());
		}
		Ok(config)
	}

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
	fn lat_amounts() {
		assert_eq!(parse_lat("0.5"), Ok(UNIT / 2));
		assert_eq!(parse_lat("10000"), Ok(10_000 * UNIT));
		assert_eq!(parse_lat("0.000000000001"), Ok(1));
		assert!(parse_lat("0.0000000000001").is_err());
		assert!(parse_lat("1e3").is_err());
		assert!(parse_lat("").is_err());
		assert!(parse_lat("-1").is_err());
	}

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
		assert_eq!(config.provider.endpoint, "127.0.0.1:7310");
		assert_eq!(config.wireguard_listen(), config.control.listen);
	}
}
