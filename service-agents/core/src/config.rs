//! The configuration sections every agent shares, with one vocabulary: `[chain]`,
//! `[provider]`, `[payment]`, `[limits]` and `[metrics]`. Each agent adds the sections of its
//! own service (`[tunnel]`, `[http]`, …). Every setting is explained in `configs/*.toml`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use interlattice_pq_crypto::keys::MlDsaKeyPair;
use pallet_provider_registry::ServiceKind;
use serde::{de::DeserializeOwned, Deserialize};

use crate::ledger::PaymentPolicy;

pub use crate::lat::{parse_lat, UNIT};

/// The sections of a service's own (`[tunnel]`, `[http]`, …) in an agent's file.
pub trait ServiceSections: DeserializeOwned {
	/// The service.
	const KIND: ServiceKind;
	/// What the agent does, for `--help`.
	const ABOUT: &'static str;
	/// The names of its top-level tables.
	const SECTIONS: &'static [&'static str];

	/// Checks the settings, with the shared sections at hand.
	fn check(&self, file: &AgentFile<()>) -> Result<(), String>;

	/// Where the agent listens (TCP).
	fn listen(&self) -> SocketAddr;
}

/// An agent's configuration file: the sections every agent shares and its service's own.
#[derive(Clone, Debug)]
pub struct AgentFile<S> {
	/// `[chain]`.
	pub chain: ChainSection,
	/// `[provider]`.
	pub provider: ProviderSection,
	/// `[payment]`.
	pub payment: PaymentSection,
	/// `[limits]`.
	pub limits: LimitsSection,
	/// `[metrics]`.
	pub metrics: MetricsSection,
	/// `[unlisted]`: the service's endpoints are revealed to paying clients, not registered.
	pub unlisted: Option<crate::unlisted::UnlistedSection>,
	/// The service's own sections.
	pub service: S,
}

/// The shared sections as they are read (other tables are the service's).
#[derive(Deserialize)]
struct SharedSections {
	chain: ChainSection,
	provider: ProviderSection,
	payment: PaymentSection,
	#[serde(default)]
	limits: LimitsSection,
	#[serde(default)]
	metrics: MetricsSection,
	#[serde(default)]
	unlisted: Option<crate::unlisted::UnlistedSection>,
}

const SHARED_SECTIONS: [&str; 6] = ["chain", "provider", "payment", "limits", "metrics", "unlisted"];

impl<S: ServiceSections> AgentFile<S> {
	/// Parses and checks a file's text. Every key must be known: an unknown table or setting
	/// is an error naming it (with its line, for settings within a section).
	pub fn parse(text: &str) -> Result<Self, String> {
		let tables: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
		if let Some(unknown) =
			tables.keys().find(|k| !SHARED_SECTIONS.contains(&k.as_str()) && !S::SECTIONS.contains(&k.as_str()))
		{
			let mut known: Vec<&str> = SHARED_SECTIONS.iter().chain(S::SECTIONS).copied().collect();
			known.sort_unstable();
			return Err(format!("unknown section [{unknown}]; the sections are {}", known.join(", ")));
		}
		let shared: SharedSections = toml::from_str(text).map_err(|e| e.to_string())?;
		let service: S = toml::from_str(text).map_err(|e| e.to_string())?;
		shared.payment.check()?;
		shared.limits.check()?;
		if let Some(unlisted) = &shared.unlisted {
			unlisted.check(S::KIND)?;
			if shared.provider.endpoint.is_some() {
				return Err("provider.endpoint and [unlisted] exclude each other: an unlisted service registers no endpoint".into());
			}
		}
		let file = AgentFile {
			chain: shared.chain,
			provider: shared.provider,
			payment: shared.payment,
			limits: shared.limits,
			metrics: shared.metrics,
			unlisted: shared.unlisted,
			service: (),
		};
		service.check(&file)?;
		let AgentFile { chain, provider, payment, limits, metrics, unlisted, .. } = file;
		Ok(AgentFile { chain, provider, payment, limits, metrics, unlisted, service })
	}
}

/// `[chain]`: the node the agent talks to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
	/// A node's JSON-RPC URL (HTTP).
	pub rpc: String,
}

/// `[provider]`: who the agent is, and what `register` writes to the provider registry.
/// Fields left out are not touched by `register` (another agent of the same provider, or the
/// provider by hand, owns them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
	/// The provider account: an sr25519 secret URI, or `ml-dsa:<key file>` (an ML-DSA account;
	/// `ml-dsa:<key file>@<account>` for a key bound to a classical account). Better kept out
	/// of this file: `account_file`
	/// or the `INTERLATTICE_ACCOUNT` environment variable.
	pub account: Option<String>,
	/// A file (mode 0600) holding the provider account (secret URI or `ml-dsa:<key file>`).
	pub account_file: Option<PathBuf>,
	/// The ML-DSA-65 service key: a seed file (mode 0600) made by `pq-key generate`, or
	/// `dev:<name>` for a well-known development key (or `INTERLATTICE_SERVICE_KEY`).
	pub service_key: Option<String>,
	/// The endpoint clients dial for this service, as registered (`host:port` for the VPN,
	/// `http(s)://host:port` for the CDN).
	pub endpoint: Option<String>,
	/// ISO 3166-1 alpha-2 country code.
	pub country: Option<String>,
	/// Region or city (UTF-8); kept when only the country changes.
	pub region: Option<String>,
	/// `datacenter` or `residential`; kept when only the country changes.
	pub hosting: Option<String>,
	/// Price per GiB in LAT (decimal string); shared by the provider's services.
	pub price_per_gib: Option<String>,
	/// Price per hour in LAT; shared by the provider's services.
	pub price_per_hour: Option<String>,
	/// Stake bonded at the first registration, in LAT.
	pub stake: Option<String>,
}

/// `[payment]`: credit, deadlines, the receipt store and settlement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSection {
	/// Bytes served to a session beyond its latest receipt before service is held: the most a
	/// provider can lose to a session that stops paying (all its connections together).
	#[serde(default = "default_credit")]
	pub credit_limit_bytes: u64,
	/// A time-priced session is held when its latest receipt's time lags this many seconds.
	#[serde(default = "default_receipt_timeout")]
	pub receipt_timeout_secs: u64,
	/// A session that owes and paid nothing for this many seconds is dropped.
	#[serde(default = "default_payment_timeout")]
	pub payment_timeout_secs: u64,
	/// Where receipts are kept (fsynced) until settled on-chain.
	pub receipts_dir: PathBuf,
	/// Seconds between settlement rounds: at most a quarter of the chain's settlement window.
	#[serde(default = "default_settle_interval")]
	pub settle_interval_secs: u64,
	/// Most receipts one session may send per second (each costs a verification and a
	/// write); more are refused.
	#[serde(default = "default_receipt_rate")]
	pub max_receipts_per_second: u32,
}

/// `[limits]`: what one agent accepts at once.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
	/// Connections at once, from everyone.
	#[serde(default = "default_max_connections")]
	pub max_connections: usize,
	/// Connections at once from one IP address.
	#[serde(default = "default_max_connections_per_ip")]
	pub max_connections_per_ip: usize,
	/// Seconds a new connection has to say who it is (a handshake, a request's head).
	#[serde(default = "default_handshake_timeout")]
	pub handshake_timeout_secs: u64,
	/// Seconds a connection may stay silent.
	#[serde(default = "default_idle_timeout")]
	pub idle_timeout_secs: u64,
}

impl Default for LimitsSection {
	fn default() -> Self {
		LimitsSection {
			max_connections: default_max_connections(),
			max_connections_per_ip: default_max_connections_per_ip(),
			handshake_timeout_secs: default_handshake_timeout(),
			idle_timeout_secs: default_idle_timeout(),
		}
	}
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
	/// Prometheus endpoint (`GET /metrics`); none if unset.
	pub listen: Option<SocketAddr>,
}

fn default_credit() -> u64 {
	32 << 20
}
fn default_receipt_timeout() -> u64 {
	60
}
fn default_payment_timeout() -> u64 {
	120
}
fn default_settle_interval() -> u64 {
	60
}
fn default_receipt_rate() -> u32 {
	20
}
fn default_max_connections() -> usize {
	1024
}
fn default_max_connections_per_ip() -> usize {
	32
}
fn default_handshake_timeout() -> u64 {
	10
}
fn default_idle_timeout() -> u64 {
	120
}

impl PaymentSection {
	/// The ledger's policy from these settings.
	pub fn policy(&self) -> PaymentPolicy {
		PaymentPolicy {
			credit_limit_bytes: self.credit_limit_bytes,
			receipt_timeout: Duration::from_secs(self.receipt_timeout_secs),
			payment_timeout: Duration::from_secs(self.payment_timeout_secs),
			..PaymentPolicy::default()
		}
	}

	/// Checks the settings: a settle interval within a quarter of the settlement window, a
	/// payment timeout above the receipt timeout.
	pub fn check(&self) -> Result<(), String> {
		crate::check_settle_interval(self.settle_interval_secs)?;
		if self.credit_limit_bytes == 0 {
			return Err("payment.credit_limit_bytes must be at least 1".into());
		}
		if self.payment_timeout_secs <= self.receipt_timeout_secs {
			return Err("payment.payment_timeout_secs must be above receipt_timeout_secs".into());
		}
		if self.max_receipts_per_second == 0 {
			return Err("payment.max_receipts_per_second must be at least 1".into());
		}
		Ok(())
	}
}

impl LimitsSection {
	/// Checks the settings.
	pub fn check(&self) -> Result<(), String> {
		if self.max_connections == 0 || self.max_connections_per_ip == 0 {
			return Err("limits.max_connections and max_connections_per_ip must be at least 1".into());
		}
		if self.handshake_timeout_secs == 0 || self.idle_timeout_secs == 0 {
			return Err("limits.handshake_timeout_secs and idle_timeout_secs must be at least 1".into());
		}
		Ok(())
	}
}

/// Loads an ML-DSA-65 service key: `dev:<name>` or a seed file (mode 0600).
pub fn load_service_key(spec: &str) -> Result<MlDsaKeyPair, String> {
	if let Some(name) = spec.strip_prefix("dev:") {
		if !interlattice_pq_crypto::dev_keys::DEV_KEY_NAMES.contains(&name) {
			return Err(format!("no development service key {name:?}"));
		}
		return Ok(MlDsaKeyPair::dev(name));
	}
	MlDsaKeyPair::read_seed_file(std::path::Path::new(spec)).map_err(|e| format!("service key {spec}: {e:?}"))
}

#[cfg(test)]
mod tests {
	use super::*;

	#[derive(Debug, Deserialize)]
	struct Demo {
		demo: DemoSection,
	}

	#[derive(Debug, Deserialize)]
	#[serde(deny_unknown_fields)]
	struct DemoSection {
		port: u16,
	}

	impl ServiceSections for Demo {
		const KIND: ServiceKind = ServiceKind::Cdn;
		const ABOUT: &'static str = "A demo.";
		const SECTIONS: &'static [&'static str] = &["demo"];

		fn check(&self, file: &AgentFile<()>) -> Result<(), String> {
			(self.demo.port as u64 != file.payment.credit_limit_bytes)
				.then_some(())
				.ok_or_else(|| "demo.port clashes".into())
		}

		fn listen(&self) -> SocketAddr {
			SocketAddr::from(([127, 0, 0, 1], self.demo.port))
		}
	}

	#[test]
	fn an_agent_file_is_its_shared_and_its_service_sections_and_nothing_else() {
		let text = "[chain]\nrpc = \"http://x\"\n[provider]\n[payment]\nreceipts_dir = \"r\"\n[demo]\nport = 5\n";
		let file = AgentFile::<Demo>::parse(text).unwrap();
		assert_eq!(
			(file.service.demo.port, file.limits.max_connections),
			(5, LimitsSection::default().max_connections)
		);
		let unknown = AgentFile::<Demo>::parse(&format!("{text}[bogus]\n")).unwrap_err();
		assert!(unknown.contains("unknown section [bogus]"), "{unknown}");
		let misspelt = AgentFile::<Demo>::parse(&text.replace("port = 5", "port = 5\nprot = 6")).unwrap_err();
		assert!(misspelt.contains("prot") && misspelt.contains("line 8"), "{misspelt}");
		assert!(AgentFile::<Demo>::parse(&text.replace("receipts_dir", "credit_limit_bytes = 5\nreceipts_dir"))
			.unwrap_err()
			.contains("clashes"));
	}

	#[test]
	fn payment_settings_are_checked() {
		let toml = |extra: &str| format!("receipts_dir = \"r\"\n{extra}");
		let ok: PaymentSection = toml::from_str(&toml("")).unwrap();
		ok.check().unwrap();
		let long: PaymentSection = toml::from_str(&toml("settle_interval_secs = 3600")).unwrap();
		assert!(long.check().unwrap_err().contains("settle_interval_secs = 3600"));
		let timeouts: PaymentSection =
			toml::from_str(&toml("receipt_timeout_secs = 60\npayment_timeout_secs = 60")).unwrap();
		assert!(timeouts.check().is_err());
		assert!(toml::from_str::<PaymentSection>(&toml("bogus = 1")).is_err());
	}
}
