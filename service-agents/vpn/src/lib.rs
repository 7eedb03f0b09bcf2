//! The decentralised VPN. So far: [`handshake`], the post-quantum key agreement that
//! authenticates a client's on-chain session and the provider agent's registered service key
//! and derives the WireGuard pre-shared key (`docs/vpn-handshake.md`). The agent (WireGuard
//! data plane, metering, receipts) and the client come next.

pub mod handshake;
