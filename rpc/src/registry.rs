//! `registry_*`: the provider directory over JSON-RPC.

use std::{marker::PhantomData, sync::Arc};

use jsonrpsee::{core::RpcResult, proc_macros::rpc};
use pallet_provider_registry::ProviderRegistryApi as RuntimeApi;
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::crypto::AccountId32;
use sp_runtime::traits::Block as BlockT;

use crate::{
	invalid_params,
	json::{ProviderJson, ProviderPageJson, ProviderQuery, RegistryStatsJson},
	runtime_error, BlockingQueries,
};

/// The provider registry's JSON-RPC methods. Rust callers use the generated
/// `RegistryApiClient` over any jsonrpsee client (HTTP or WebSocket).
#[rpc(client, server, namespace = "registry")]
pub trait RegistryApi<BlockHash> {
	/// Providers matching `query` (all fields optional), one page of them, in order.
	#[method(name = "providers")]
	async fn providers(&self, query: Option<ProviderQuery>, at: Option<BlockHash>) -> RpcResult<ProviderPageJson>;

	/// One provider by account (SS58 or `0x` hex), also when deregistered; `null` if unknown.
	#[method(name = "provider")]
	async fn provider(&self, account: String, at: Option<BlockHash>) -> RpcResult<Option<ProviderJson>>;

	/// Registry-wide statistics.
	#[method(name = "stats")]
	async fn stats(&self, at: Option<BlockHash>) -> RpcResult<RegistryStatsJson>;
}

/// Serves [`RegistryApiServer`] from the runtime API of a client, on blocking threads
/// ([`BlockingQueries`]).
pub struct Registry<C, Block> {
	client: Arc<C>,
	ss58_prefix: u16,
	queries: BlockingQueries,
	_block: PhantomData<Block>,
}

impl<C, Block> Registry<C, Block> {
	/// Answers from `client` within the limits of `queries`; shows accounts with
	/// `ss58_prefix`.
	pub fn new(client: Arc<C>, ss58_prefix: u16, queries: BlockingQueries) -> Self {
		Self { client, ss58_prefix, queries, _block: PhantomData }
	}
}

fn at<C: HeaderBackend<Block>, Block: BlockT>(client: &C, at: Option<Block::Hash>) -> Block::Hash {
	at.unwrap_or_else(|| client.info().best_hash)
}

#[jsonrpsee::core::async_trait]
impl<C, Block> RegistryApiServer<Block::Hash> for Registry<C, Block>
where
	Block: BlockT,
	C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
	C::Api: RuntimeApi<Block, AccountId32, u128, u32>,
{
	async fn providers(
		&self,
		query: Option<ProviderQuery>,
		at_hash: Option<Block::Hash>,
	) -> RpcResult<ProviderPageJson> {
		let query = query.unwrap_or_default().check().map_err(invalid_params)?;
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		self.queries
			.run(move || {
				let page = client
					.runtime_api()
					.providers(at(&*client, at_hash), query.filter, query.order, query.offset, query.limit)
					.map_err(runtime_error)?;
				Ok(ProviderPageJson {
					total: page.total,
					offset: query.offset,
					providers: page.providers.into_iter().map(|p| ProviderJson::new(p, prefix)).collect(),
				})
			})
			.await
	}

	async fn provider(&self, account: String, at_hash: Option<Block::Hash>) -> RpcResult<Option<ProviderJson>> {
		let account: crate::json::Account =
			account.parse().map_err(|e: String| invalid_params(format!("account: {e}")))?;
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		self.queries
			.run(move || {
				let info = client.runtime_api().provider(at(&*client, at_hash), account.0).map_err(runtime_error)?;
				Ok(info.map(|p| ProviderJson::new(p, prefix)))
			})
			.await
	}

	async fn stats(&self, at_hash: Option<Block::Hash>) -> RpcResult<RegistryStatsJson> {
		let client = self.client.clone();
		self.queries
			.run(move || {
				let stats = client.runtime_api().stats(at(&*client, at_hash)).map_err(runtime_error)?;
				Ok(stats.into())
			})
			.await
	}
}
