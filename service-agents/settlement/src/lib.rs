//! What the dVPN and dCDN provider agents share about sessions, receipts and settlement.
//!
//! - [`store`]: the durable receipt store. A receipt the agent acknowledges to its client
//!   has been written and `fsync`ed first, survives a crash at any point, and is settled
//!   on-chain exactly once.
//!
//! Still to come here (see the issue tracker): the chain client (session lookups, batch
//! submission with retries) and the settlement loop that drives the store.

pub mod store;

pub use store::{ReceiptStore, SessionReceipts, StoreError};
