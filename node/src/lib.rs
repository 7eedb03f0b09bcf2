//! The Interlattice node: a Substrate full node with Aura block production, GRANDPA
//! finality, libp2p networking (litep2p selectable), ParityDB storage and JSON-RPC.
//!
//! - [`cli`]: command-line arguments and subcommands.
//! - [`command`]: dispatches the parsed command line.
//! - [`chain_spec`]: the built-in chain specs, generated from the runtime's genesis presets.
//! - [`service`]: wires client, networking, consensus and RPC together.
//! - [`rpc`]: the node's JSON-RPC methods beyond the standard Substrate set.

pub mod chain_spec;
pub mod cli;
pub mod command;
pub mod metrics;
pub mod rpc;
pub mod service;
