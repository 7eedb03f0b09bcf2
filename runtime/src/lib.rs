//! The Interlattice runtime: a FRAME runtime compiled to Wasm.
//!
//! Pallets: system, timestamp, Aura (block production), GRANDPA (finality), balances (with
//! holds and freezes), transaction payment, sudo and utility. The service-layer pallets
//! (provider registry, session escrow) are added on top of this foundation.
//!
//! Layout: this file holds the types, the version and the constants; [`configs`] has one
//! `impl Config` per pallet; [`apis`] the runtime APIs; [`genesis_config_presets`] the
//! genesis presets the node's chain specs are generated from.

#![cfg_attr(not(feature = "std"), no_std)]
// `construct_runtime`/`#[runtime]` expand to a deeply recursive type.
#![recursion_limit = "256"]

#[cfg(feature = "std")]
include!(concat!(env!("OUT_DIR"), "/wasm_binary.rs"));

extern crate alloc;

use alloc::vec::Vec;

pub mod apis;
pub mod configs;
pub mod genesis_config_presets;
pub mod signature;
pub mod weights;

use sp_runtime::{generic, impl_opaque_keys, traits::BlakeTwo256, MultiAddress};
use sp_version::{runtime_version, RuntimeVersion};

pub use frame_system::Call as SystemCall;
pub use pallet_balances::Call as BalancesCall;
pub use pallet_timestamp::Call as TimestampCall;
#[cfg(any(feature = "std", test))]
pub use sp_runtime::BuildStorage;

/// Block number.
pub type BlockNumber = u32;
/// Signature of a transaction: sr25519, ed25519, ecdsa (encoded as Substrate's
/// `MultiSignature`) or ML-DSA-65 ([`signature`]).
pub use signature::Signature;
/// An account id: 32 bytes, a classical public key (or its hash, for ecdsa) or the derived id
/// of an ML-DSA-65 key (`interlattice_pq_crypto::account::account_id`).
pub type AccountId = sp_runtime::AccountId32;
/// Balance of an account, in the smallest unit (see [`UNIT`]).
pub type Balance = u128;
/// Number of transactions an account has sent.
pub type Nonce = u32;
/// Hash of a block or of any other data.
pub type Hash = sp_core::H256;

/// The native token's name, symbol and decimals (also published in the chain specs'
/// properties so wallets display balances correctly).
pub const TOKEN_NAME: &str = "Lattice";
/// Ticker of the native token.
pub const TOKEN_SYMBOL: &str = "LAT";
/// Decimal places of the native token: 1 LAT = 10^12 of the smallest unit.
pub const TOKEN_DECIMALS: u8 = 12;
/// SS58 address prefix: 4242, not assigned to any network in the ss58-registry 1.51.
/// Addresses start with "in…" style prefixes chosen for nothing but uniqueness.
pub const SS58_PREFIX: u16 = 4242;

/// One LAT in the smallest unit.
pub const UNIT: Balance = 1_000_000_000_000;
/// One thousandth of a LAT.
pub const MILLI_UNIT: Balance = UNIT / 1_000;
/// One millionth of a LAT.
pub const MICRO_UNIT: Balance = UNIT / 1_000_000;
/// The minimum balance an account must keep to exist.
pub const EXISTENTIAL_DEPOSIT: Balance = MILLI_UNIT;

/// Target block time. Aura's slot duration is derived from it; it cannot change once a chain
/// has started.
pub const MILLI_SECS_PER_BLOCK: u64 = 6000;
/// Aura slot duration, in milliseconds.
pub const SLOT_DURATION: u64 = MILLI_SECS_PER_BLOCK;
/// Blocks per minute.
pub const MINUTES: BlockNumber = 60_000 / (MILLI_SECS_PER_BLOCK as BlockNumber);
/// Blocks per hour.
pub const HOURS: BlockNumber = MINUTES * 60;
/// Blocks per day.
pub const DAYS: BlockNumber = HOURS * 24;

/// Opaque types, for the node: it needs to know the block format, not what's inside.
pub mod opaque {
	use super::*;
	pub use sp_runtime::OpaqueExtrinsic as UncheckedExtrinsic;

	/// Opaque block header type.
	pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
	/// Opaque block type.
	pub type Block = generic::Block<Header, UncheckedExtrinsic>;
	/// Opaque block hash type.
	pub type Hash = <BlakeTwo256 as sp_runtime::traits::Hash>::Output;
}

impl_opaque_keys! {
	/// The session keys of a validator: one for Aura, one for GRANDPA.
	pub struct SessionKeys {
		pub aura: Aura,
		pub grandpa: Grandpa,
	}
}

/// The runtime version. `spec_version` is bumped on every logic change; `transaction_version`
/// whenever the encoding of calls or transaction extensions changes.
#[runtime_version]
pub const VERSION: RuntimeVersion = RuntimeVersion {
	spec_name: alloc::borrow::Cow::Borrowed("interlattice"),
	impl_name: alloc::borrow::Cow::Borrowed("interlattice-node"),
	authoring_version: 1,
	spec_version: 107,
	impl_version: 1,
	apis: apis::RUNTIME_API_VERSIONS,
	transaction_version: 3,
	system_version: 1,
};

/// The address format for describing accounts.
pub type Address = MultiAddress<AccountId, ()>;
/// Block header type as expected by this runtime.
pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
/// Block type as expected by this runtime.
pub type Block = generic::Block<Header, UncheckedExtrinsic>;
/// A block with its justifications.
pub type SignedBlock = generic::SignedBlock<Block>;

/// The transaction extensions: the checks every signed transaction goes through, in order.
/// Clients (subxt, polkadot.js) discover this list from the metadata.
pub type TxExtension = (
	frame_system::CheckNonZeroSender<Runtime>,
	frame_system::CheckSpecVersion<Runtime>,
	frame_system::CheckTxVersion<Runtime>,
	frame_system::CheckGenesis<Runtime>,
	frame_system::CheckEra<Runtime>,
	frame_system::CheckNonce<Runtime>,
	frame_system::CheckWeight<Runtime>,
	pallet_transaction_payment::ChargeTransactionPayment<Runtime>,
	// Settlement calls are checked (cheaply, no signatures) before they enter the pool; after
	// the fee check, so an account that cannot pay is refused first.
	pallet_session_escrow::CheckReceipts<Runtime>,
	frame_metadata_hash_extension::CheckMetadataHash<Runtime>,
	frame_system::WeightReclaim<Runtime>,
);

/// Unchecked extrinsic type as expected by this runtime.
pub type UncheckedExtrinsic = generic::UncheckedExtrinsic<Address, RuntimeCall, Signature, TxExtension>;
/// The payload being signed in transactions.
pub type SignedPayload = generic::SignedPayload<RuntimeCall, TxExtension>;

/// Runtime migrations, aside from the pallets' own. Empty at genesis.
#[allow(unused_parens)]
type Migrations = ();

/// Executive: dispatches blocks and transactions to the pallets.
pub type Executive = frame_executive::Executive<
	Runtime,
	Block,
	frame_system::ChainContext<Runtime>,
	Runtime,
	AllPalletsWithSystem,
	Migrations,
>;

// The runtime, composed of its pallets. Pallet indices are part of the encoding of every call
// and storage key: never reuse or renumber one.
#[frame_support::runtime]
mod runtime {
	#[runtime::runtime]
	#[runtime::derive(
		RuntimeCall,
		RuntimeEvent,
		RuntimeError,
		RuntimeOrigin,
		RuntimeFreezeReason,
		RuntimeHoldReason,
		RuntimeSlashReason,
		RuntimeLockId,
		RuntimeTask,
		RuntimeViewFunction
	)]
	pub struct Runtime;

	#[runtime::pallet_index(0)]
	pub type System = frame_system;

	#[runtime::pallet_index(1)]
	pub type Timestamp = pallet_timestamp;

	#[runtime::pallet_index(2)]
	pub type Aura = pallet_aura;

	#[runtime::pallet_index(3)]
	pub type Grandpa = pallet_grandpa;

	#[runtime::pallet_index(4)]
	pub type Balances = pallet_balances;

	#[runtime::pallet_index(5)]
	pub type TransactionPayment = pallet_transaction_payment;

	#[runtime::pallet_index(6)]
	pub type Sudo = pallet_sudo;

	#[runtime::pallet_index(7)]
	pub type Utility = pallet_utility;

	#[runtime::pallet_index(8)]
	pub type ProviderRegistry = pallet_provider_registry;

	/// No calls, no storage: measures ML-DSA-65 verification for the weights of pallets
	/// that verify receipts. Only in benchmarking builds: the production runtime has no
	/// pallet at index 9.
	#[cfg(feature = "runtime-benchmarks")]
	#[runtime::pallet_index(9)]
	pub type PqWeights = pallet_pq_weights;

	#[runtime::pallet_index(10)]
	pub type SessionEscrow = pallet_session_escrow;

	#[runtime::pallet_index(11)]
	pub type PqAccounts = pallet_pq_accounts;
}

#[cfg(feature = "runtime-benchmarks")]
mod benches {
	frame_benchmarking::define_benchmarks!(
		[frame_benchmarking, BaselineBench::<Runtime>]
		[frame_system, SystemBench::<Runtime>]
		[pallet_balances, Balances]
		[pallet_timestamp, Timestamp]
		[pallet_sudo, Sudo]
		[pallet_utility, Utility]
		[pallet_provider_registry, ProviderRegistry]
		[pallet_pq_weights, PqWeights]
		[pallet_session_escrow, SessionEscrow]
		[pallet_pq_accounts, PqAccounts]
	);
}
