//! The dCDN agent's configuration file (TOML; `configs/cdn-agent.toml` explains every
//! setting): the sections every agent shares (`interlattice-agent-core`'s `[chain]`,
//! `[provider]`, `[payment]`, `[limits]`, `[metrics]`) and the dCDN's own `[http]`, `[cache]`,
//! `[origins]` and `[publish]`.

use std::{net::SocketAddr, path::PathBuf};

pub use interlattice_agent_core::config::{
	AgentFile, ChainSection, LimitsSection, MetricsSection, PaymentSection, ProviderSection, ServiceSections,
};
use pallet_provider_registry::ServiceKind;
use serde::Deserialize;

/// The whole file: the shared sections and the dCDN's own.
pub type AgentConfig = AgentFile<CdnSections>;

/// The dCDN's own sections.
#[derive(Clone, Debug, Deserialize)]
pub struct CdnSections {
	/// `[http]`: the server.
	pub http: HttpSection,
	/// `[cache]`: the object cache.
	pub cache: CacheSection,
	/// `[origins]`: where misses are filled from.
	#[serde(default)]
	pub origins: OriginsSection,
	/// `[publish]`: who may publish.
	#[serde(default)]
	pub publish: PublishSection,
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
	/// Address to listen on.
	pub listen: SocketAddr,
	/// Seconds in-flight requests get to finish at shutdown.
	#[serde(default = "default_grace")]
	pub shutdown_grace_secs: u64,
	/// Serve plain HTTP instead of HTTPS (a provider behind a TLS-terminating proxy, a test).
	/// Off by default: the agent serves TLS with its service key's certificate to our
	/// clients and `[http.tls]` (or a self-signed certificate) to everyone else.
	#[serde(default)]
	pub plain_http: bool,
	/// The certificate other clients (browsers, curl) get (`[http.tls]`); default: a
	/// self-signed one made at start.
	#[serde(default)]
	pub tls: Option<TlsConfig>,
	/// Objects served to anyone without a session (hex BLAKE3 hashes).
	#[serde(default)]
	pub public: Vec<String>,
	/// How long a response waits for a receipt when the session's credit is used up before
	/// the response is cut (milliseconds).
	#[serde(default = "default_wait")]
	pub payment_wait_ms: u64,
	/// Paid responses streaming at once for one session; more get `429`.
	#[serde(default = "default_streams")]
	pub max_streams_per_session: usize,
}

/// The certificate for clients other than ours (rustls; X25519MLKEM768 preferred).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
	/// The certificate chain, PEM, leaf first.
	pub certificate: PathBuf,
	/// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
	pub private_key: PathBuf,
}

/// `[cache]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
	/// Directory of the cache (created if missing).
	pub dir: PathBuf,
	/// Bound on objects plus their outboards, in bytes; also bounds what origin fills and
	/// uploads stage at once.
	pub max_bytes: u64,
	/// Origin fills running at once (each object is filled once, however many ask).
	#[serde(default = "default_fills")]
	pub max_concurrent_fills: usize,
}

/// `[origins]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginsSection {
	/// URL templates tried in order; `{hash}` is replaced by the object's hex hash. Plain
	/// HTTP: every byte is checked against the hash anyway.
	#[serde(default)]
	pub urls: Vec<String>,
}

/// `[publish]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
	/// Bearer tokens authorised to `POST /publish`. Empty: publishing is off.
	#[serde(default)]
	pub tokens: Vec<String>,
}

fn default_grace() -> u64 {
	10
}
fn default_wait() -> u64 {
	10_000
}
fn default_streams() -> usize {
	32
}
fn default_fills() -> usize {
	4
}

impl ServiceSections for CdnSections {
	const KIND: ServiceKind = ServiceKind::Cdn;
	const ABOUT: &'static str = "Serve BLAKE3-addressed content over HTTP, metered and paid through on-chain sessions.";
	const SECTIONS: &'static [&'static str] = &["http", "cache", "origins", "publish"];

	fn listen(&self) -> SocketAddr {
		self.http.listen
	}

	fn check(&self, file: &AgentFile<()>) -> Result<(), String> {
		// With plain HTTP the endpoint may still be https://: a TLS front (the provider's
		// dVPN agent with `[https] upstream`, a reverse proxy) serves it.
		let endpoint = file.provider.endpoint.as_deref();
		if let Some(endpoint) = endpoint.filter(|e| !self.http.plain_http && !e.starts_with("https://")) {
			return Err(format!(
				"provider.endpoint {endpoint:?} must start with https://: the agent serves TLS (set http.plain_http = true to serve plain HTTP)"
			));
		}
		if self.http.plain_http && self.http.tls.is_some() {
			return Err("http.plain_http = true and [http.tls] contradict each other".into());
		}
		if self.http.max_streams_per_session == 0 || self.cache.max_concurrent_fills == 0 {
			return Err("http.max_streams_per_session and cache.max_concurrent_fills must be at least 1".into());
		}
		for hash in &self.http.public {
			crate::content::parse_hash(hash).ok_or_else(|| format!("http.public: {hash:?} is not a BLAKE3 hash"))?;
		}
		Ok(())
	}
}

#[cfg(test)]
mod tests {
	#[test]
	fn the_example_configuration_parses() {
		let text = include_str!("../../../configs/cdn-agent.toml");
		let config = super::AgentConfig::parse(text).expect("configs/cdn-agent.toml is valid");
		assert_eq!(config.service.http.listen.port(), 7320);
		assert!(super::AgentConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\nbogus = 1").is_err());
		// TLS by default: a plain http:// endpoint is refused unless plain HTTP is asked for.
		let plain = text.replace("https://127.0.0.1:7320", "http://127.0.0.1:7320");
		let error = super::AgentConfig::parse(&plain).unwrap_err().to_string();
		assert!(error.contains("must start with https://"), "{error}");
		let asked = plain.replace("[http]\n", "[http]\nplain_http = true\n");
		assert!(super::AgentConfig::parse(&asked).is_ok());
		// Behind a TLS front the endpoint stays https://.
		assert!(super::AgentConfig::parse(&text.replace("[http]\n", "[http]\nplain_http = true\n")).is_ok());
		let both = asked
			.replace("# [http.tls]\n# certificate", "[http.tls]\ncertificate")
			.replace("# private_key", "private_key");
		let error = super::AgentConfig::parse(&both).unwrap_err().to_string();
		assert!(error.contains("contradict"), "{error}");
	}
}
