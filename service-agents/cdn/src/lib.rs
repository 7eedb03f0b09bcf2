//! The decentralised CDN: content named by its BLAKE3 hash, served over HTTP by provider
//! agents that meter every session and are paid with ML-DSA-signed receipts settled on-chain.
//!
//! - [`content`]: the bounded on-disk object cache (never a partial or unverified object).
//! - [`protocol`]: paths, headers, JSON bodies and `Range` parsing (see `docs/cdn-protocol.md`).
//! - [`config`]: the agent's TOML configuration.
//! - [`agent`]: the provider agent (HTTP/1.1 and HTTP/2 server and its routes) on the
//!   agent core (`interlattice-agent-core`).
//! - [`tokens`]: bearer tokens bought with a capability signed by the session's key.
//! - [`fills`]: origin fills (one per object at a time, verified, bounded).
//! - [`metering`]: paid bodies, reserved against the session's credit chunk by chunk.
//! - [`client`]: the client library (providers, sessions, verified downloads, receipts).
//! - [`tls`]: rustls with the hybrid post-quantum key exchange X25519MLKEM768.

#[cfg(feature = "agent")]
pub mod agent;
pub mod client;
#[cfg(feature = "agent")]
pub mod config;
pub mod content;
#[cfg(feature = "agent")]
pub mod fills;
#[cfg(feature = "agent")]
pub mod metering;
pub mod protocol;
pub use interlattice_agent_core::tls;
#[cfg(feature = "agent")]
pub mod tokens;

pub use interlattice_agent_core::cli::init_logging;
