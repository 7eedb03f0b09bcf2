//! The agent's configuration file (TOML). `configs/cdn-agent.toml` in the repository is a
//! commented example of every setting.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// Everything the agent is configured with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
	/// The chain.
	#[serde(default)]
	pub chain: ChainConfig,
	/// Who this provider is.
	pub provider: ProviderConfig,
	/// The HTTP server.
	pub http: HttpConfig,
	/// The object cache.
	pub cache: CacheConfig,
	/// Where misses are filled from.
	#[serde(default)]
	pub origins: OriginsConfig,
	/// Who may publish.
	#[serde(default)]
	pub publish: PublishConfig,
	/// Metering, credit and settlement.
	#[serde(default)]
	pub payment: PaymentConfig,
}

/// The chain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
	/// A node's JSON-RPC endpoint (HTTP).
	pub rpc: String,
}

impl Default for ChainConfig {
	fn default() -> Self {
		ChainConfig { rpc: "http://127.0.0.1:9944".into() }
	}
}

/// Who this provider is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
	/// The provider account's sr25519 secret: a secret URI (`//Dave` for the dev account, a
	/// mnemonic, or `0x` seed). Signs the settlement extrinsics. Overridden by the
	/// `INTERLATTICE_ACCOUNT` environment variable, which keeps secrets out of files.
	#[serde(default)]
	pub account: Option<String>,
}

/// The HTTP server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
	/// Address to listen on.
	pub listen: SocketAddr,
	/// Seconds in-flight requests get to finish at shutdown.
	#[serde(default = "default_grace")]
	pub shutdown_grace_secs: u64,
	/// Serve HTTPS instead of plain HTTP (`[http.tls]`).
	#[serde(default)]
	pub tls: Option<TlsConfig>,
}

/// TLS (rustls; X25519MLKEM768 preferred, see `tls.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
	/// The certificate chain, PEM, leaf first.
	pub certificate: PathBuf,
	/// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
	pub private_key: PathBuf,
}

fn default_grace() -> u64 {
	10
}

/// The object cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
	/// Directory of the cache (created if missing).
	pub dir: PathBuf,
	/// Bound on objects plus their outboards, in bytes.
	pub max_bytes: u64,
}

/// Where misses are filled from.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginsConfig {
	/// URL templates tried in order; `{hash}` is replaced by the object's hex hash, e.g.
	/// `http://origin.example/objects/{hash}` or another provider's
	/// `http://10.0.0.2:7320/content/{hash}`. Plain HTTP: every byte is checked against the
	/// hash anyway.
	#[serde(default)]
	pub urls: Vec<String>,
}

/// Who may publish.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
	/// Bearer tokens authorised to `POST /publish`. Empty: publishing is off.
	#[serde(default)]
	pub tokens: Vec<String>,
}

/// Metering, credit and settlement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
	/// Objects served to anyone without a session (hex BLAKE3 hashes), e.g. a provider's
	/// own landing content.
	#[serde(default)]
	pub public: Vec<String>,
	/// Bytes served to a session beyond its latest receipt before the agent waits for the
	/// next one. Default 8 MiB.
	#[serde(default = "default_credit")]
	pub credit_limit_bytes: u64,
	/// How long a response waits for a receipt when the credit is used up before the
	/// connection is cut (milliseconds). Default 10 s.
	#[serde(default = "default_wait")]
	pub payment_wait_ms: u64,
	/// Directory of the durable receipt store.
	#[serde(default = "default_receipts_dir")]
	pub receipts_dir: PathBuf,
	/// Seconds between settlement rounds. Default 60.
	#[serde(default = "default_settle_interval")]
	pub settle_interval_secs: u64,
}

fn default_credit() -> u64 {
	8 << 20
}
fn default_wait() -> u64 {
	10_000
}
fn default_receipts_dir() -> PathBuf {
	PathBuf::from("cdn-receipts")
}
fn default_settle_interval() -> u64 {
	60
}

impl Default for PaymentConfig {
	fn default() -> Self {
		PaymentConfig {
			public: Vec::new(),
			credit_limit_bytes: default_credit(),
			payment_wait_ms: default_wait(),
			receipts_dir: default_receipts_dir(),
			settle_interval_secs: default_settle_interval(),
		}
	}
}

impl AgentConfig {
	/// Parses a configuration file's text.
	pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
		toml::from_str(text)
	}
}

#[cfg(test)]
mod tests {
	#[test]
	fn the_example_configuration_parses() {
		let text = include_str!("../../../configs/cdn-agent.toml");
		let config = super::AgentConfig::parse(text).expect("configs/cdn-agent.toml is valid");
		assert_eq!(config.http.listen.port(), 7320);
		assert!(config.payment.public.iter().all(|h| crate::content::parse_hash(h).is_some()));
		assert!(super::AgentConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\nbogus = 1").is_err());
	}
}
