//! The node's JSON-RPC extensions: account nonces (`system_accountNextIndex`), fee queries
//! (`payment_queryInfo`, `payment_queryFeeDetails`) and Interlattice's own methods
//! (`registry_*`, `escrow_*`, crate `interlattice-rpc`, documented in `docs/rpc.md`). The standard
//! Substrate methods (chain, state, author, system) are added by `sc_service`.

use std::sync::Arc;

use interlattice_rpc::index::RegistryIndex;
use interlattice_runtime::{opaque::Block, AccountId, Balance, BlockNumber, Nonce, Runtime};
use jsonrpsee::RpcModule;
use sc_transaction_pool_api::TransactionPool;
use sp_api::ProvideRuntimeApi;
use sp_block_builder::BlockBuilder;
use sp_blockchain::{Error as BlockChainError, HeaderBackend, HeaderMetadata};

/// What the RPC extensions need from the node.
pub struct FullDeps<C, P> {
	/// The client.
	pub client: Arc<C>,
	/// The transaction pool.
	pub pool: Arc<P>,
	/// The registry's index (kept current by `interlattice_rpc::index::maintain`).
	pub registry_index: Arc<RegistryIndex<<Block as sp_runtime::traits::Block>::Hash>>,
}

/// The runtime's registry storage, as the registry index reads it: the native runtime's
/// storage layout and record type. (A runtime upgrade that changes them needs a node upgrade;
/// until then the records that do not decode are left out and logged.)
pub struct RuntimeRegistryStorage;

impl interlattice_rpc::index::RegistryStorage for RuntimeRegistryStorage {
	fn prefix(&self) -> Vec<u8> {
		pallet_provider_registry::Pallet::<Runtime>::providers_prefix().to_vec()
	}

	fn decode(&self, key: &[u8], value: Option<&[u8]>) -> Option<(AccountId, Option<interlattice_rpc::index::Info>)> {
		let decoded = pallet_provider_registry::Pallet::<Runtime>::decode_provider_entry(key, value);
		if decoded.is_none() {
			tracing::warn!(
				target: "registry-index",
				key = %sp_core::hexdisplay::HexDisplay::from(&key),
				"a registry entry the node cannot decode"
			);
		}
		decoded
	}

	fn min_stake(&self) -> Balance {
		pallet_provider_registry::Pallet::<Runtime>::min_stake()
	}
}

/// Builds the RPC extensions of a full node.
pub fn create_full<C, P>(deps: FullDeps<C, P>) -> Result<RpcModule<()>, Box<dyn std::error::Error + Send + Sync>>
where
	C: ProvideRuntimeApi<Block>
		+ HeaderBackend<Block>
		+ HeaderMetadata<Block, Error = BlockChainError>
		+ Send
		+ Sync
		+ 'static,
	C::Api: substrate_frame_rpc_system::AccountNonceApi<Block, AccountId, Nonce>,
	C::Api: pallet_transaction_payment_rpc::TransactionPaymentRuntimeApi<Block, Balance>,
	C::Api: BlockBuilder<Block>,
	C::Api: pallet_provider_registry::ProviderRegistryApi<Block, AccountId, Balance, BlockNumber>,
	C::Api: pallet_session_escrow::SessionEscrowApi<Block, AccountId, Balance, BlockNumber>,
	P: TransactionPool + 'static,
{
	use interlattice_rpc::{
		escrow::{Escrow, EscrowApiServer},
		registry::{Registry, RegistryApiServer},
	};
	use pallet_transaction_payment_rpc::{TransactionPayment, TransactionPaymentApiServer};
	use substrate_frame_rpc_system::{System, SystemApiServer};

	let mut module = RpcModule::new(());
	let FullDeps { client, pool, registry_index } = deps;

	module.merge(System::new(client.clone(), pool).into_rpc())?;
	module.merge(TransactionPayment::new(client.clone()).into_rpc())?;
	// Registry and escrow queries may walk much of the state: on blocking threads, a few at a
	// time, never on the async workers that drive networking and import.
	let queries = interlattice_rpc::BlockingQueries::for_this_machine();
	module.merge(
		Registry::new(client.clone(), interlattice_runtime::SS58_PREFIX, queries.clone())
			.with_index(registry_index)
			.into_rpc(),
	)?;
	module.merge(Escrow::new(client, interlattice_runtime::SS58_PREFIX, queries).into_rpc())?;

	Ok(module)
}
