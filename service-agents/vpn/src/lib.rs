//! The decentralised VPN (`docs/vpn-protocol.md`, `docs/vpn-handshake.md`):
//!
//! - [`handshake`]: the post-quantum key agreement (ML-KEM-768, ML-DSA-65 over the transcript)
//!   that authenticates a client's on-chain session and the provider's registered service key
//!   and derives the WireGuard pre-shared key. No I/O.
//! - [`control`]: the control channel's messages and framing. No I/O beyond frame reading.
//! - [`dataplane`]: WireGuard (boringtun) between a TUN interface and a UDP socket, metered
//!   per peer with a forwarding limit.
//! - [`tun`]: the TUN device, addresses, routes and NAT.
//! - [`https`]: the HTTPS transport (control channel and WireGuard inside HTTP/2 over TLS,
//!   for networks that block WireGuard and the plain control channel); [`website`]: what the
//!   agent's HTTPS endpoint shows everyone else.
//! - [`agent`]: the provider agent; [`client`]: the client library. [`config`]: the agent's
//!   configuration file.

#[cfg(feature = "agent")]
pub mod agent;
pub mod client;
#[cfg(feature = "agent")]
pub mod config;
pub mod control;
pub mod dataplane;
pub mod handshake;
pub mod http3;
pub mod https;
pub mod netlink;
pub mod sealed;
pub mod tun;
#[cfg(feature = "agent")]
pub mod website;

pub use interlattice_agent_core::cli::init_logging;
