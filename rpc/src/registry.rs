//! `registry_*`: the provider directory over JSON-RPC.

use std::{marker::PhantomData, sync::Arc};

use jsonrpsee::{
	core::{RpcResult, SubscriptionResult},
	proc_macros::rpc,
	PendingSubscriptionSink, SubscriptionMessage,
};
use pallet_provider_registry::ProviderRegistryApi as RuntimeApi;
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::crypto::AccountId32;
use sp_runtime::traits::Block as BlockT;

use crate::{
	index::{Change, RegistryIndex},
	invalid_params,
	json::{AnsweredAtJson, ProviderChangeJson, ProviderJson, ProviderPageJson, ProviderQuery, RegistryStatsJson},
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

	/// Every change of the registry from now on, one notification per provider added, changed
	/// or removed in each new best block, in block order.
	#[subscription(name = "subscribeProviders" => "providerChange", unsubscribe = "unsubscribeProviders", item = ProviderChangeJson)]
	async fn subscribe_providers(&self) -> SubscriptionResult;
}

/// Serves [`RegistryApiServer`] from the node's index of the registry when it is at the block
/// asked about, from the runtime API of a client otherwise (on blocking threads,
/// [`BlockingQueries`]).
pub struct Registry<C, Block: BlockT> {
	client: Arc<C>,
	ss58_prefix: u16,
	queries: BlockingQueries,
	index: Option<Arc<RegistryIndex<Block::Hash>>>,
	_block: PhantomData<Block>,
}

impl<C, Block: BlockT> Registry<C, Block> {
	/// Answers from `client` within the limits of `queries`; shows accounts with
	/// `ss58_prefix`.
	pub fn new(client: Arc<C>, ss58_prefix: u16, queries: BlockingQueries) -> Self {
		Self { client, ss58_prefix, queries, index: None, _block: PhantomData }
	}

	/// Also answers from `index` (kept by `index::maintain`) where it can.
	pub fn with_index(mut self, index: Arc<RegistryIndex<Block::Hash>>) -> Self {
		self.index = Some(index);
		self
	}
}

/// How long a query without `at` waits for the index to reach a new best block (it gets there
/// within milliseconds of the import) rather than going to the runtime API, which takes seconds
/// with many providers.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_millis(1_000);

impl<C, Block> Registry<C, Block>
where
	Block: BlockT,
	C: HeaderBackend<Block>,
{
	/// `read` on the index at the block asked about (`at_hash`, or the best block), if the
	/// index is there; for the best block, after waiting up to [`INDEX_WAIT`] for it to get
	/// there. Otherwise the block the runtime API is to answer at.
	async fn indexed_answer<R>(
		&self,
		at_hash: Option<Block::Hash>,
		read: impl Fn(&crate::index::Index, Block::Hash, u32) -> R,
	) -> Result<R, Block::Hash> {
		let block = at(&*self.client, at_hash);
		let Some(index) = &self.index else { return Err(block) };
		if let Some(answer) = index.read(block, |index, number| read(index, block, number)) {
			return Ok(answer);
		}
		if at_hash.is_some() || !index.wait_until_at(block, INDEX_WAIT).await {
			return Err(block);
		}
		index.read(block, |index, number| read(index, block, number)).ok_or(block)
	}
}

fn answered_at<Hash: AsRef<[u8]>>(hash: &Hash, number: u32, source: &str) -> AnsweredAtJson {
	AnsweredAtJson { hash: format!("0x{}", hex::encode(hash.as_ref())), number, source: source.into() }
}

fn block_number<C: HeaderBackend<Block>, Block: BlockT>(client: &C, hash: Block::Hash) -> u32 {
	use sp_runtime::traits::{Header as _, UniqueSaturatedInto};
	client.header(hash).ok().flatten().map_or(0, |h| (*h.number()).unique_saturated_into())
}

fn change_json<Hash: AsRef<[u8]>>(change: &Change, block: &Hash, number: u32, ss58_prefix: u16) -> ProviderChangeJson {
	let (kind, account, provider) = match change {
		Change::Added(p) => ("added", p.account.clone(), Some(p)),
		Change::Changed(p) => ("changed", p.account.clone(), Some(p)),
		Change::Removed(a) => ("removed", a.clone(), None),
	};
	ProviderChangeJson {
		change: kind.into(),
		account: crate::json::Account(account).to_ss58(ss58_prefix),
		provider: provider.map(|p| ProviderJson::new(p.clone(), ss58_prefix)),
		block: format!("0x{}", hex::encode(block.as_ref())),
		number,
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
		let block = match self
			.indexed_answer(at_hash, |index, block, number| {
				let (total, providers) = crate::index::providers_json(index, &query, prefix);
				ProviderPageJson {
					total,
					offset: query.offset,
					providers,
					at: Some(answered_at(&block, number, "index")),
				}
			})
			.await
		{
			Ok(page) => return Ok(page),
			Err(block) => block,
		};
		self.queries
			.run(move || {
				let page = client
					.runtime_api()
					.providers(block, query.filter, query.order, query.offset, query.limit)
					.map_err(runtime_error)?;
				Ok(ProviderPageJson {
					total: page.total,
					offset: query.offset,
					providers: page.providers.into_iter().map(|p| ProviderJson::new(p, prefix)).collect(),
					at: Some(answered_at(&block, block_number(&*client, block), "runtime")),
				})
			})
			.await
	}

	async fn provider(&self, account: String, at_hash: Option<Block::Hash>) -> RpcResult<Option<ProviderJson>> {
		let account: crate::json::Account =
			account.parse().map_err(|e: String| invalid_params(format!("account: {e}")))?;
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		let block = match self
			.indexed_answer(at_hash, |index, _, _| crate::index::provider_json(index, &account.0, prefix))
			.await
		{
			Ok(answer) => return Ok(answer),
			Err(block) => block,
		};
		self.queries
			.run(move || {
				let info = client.runtime_api().provider(block, account.0).map_err(runtime_error)?;
				Ok(info.map(|p| ProviderJson::new(p, prefix)))
			})
			.await
	}

	async fn stats(&self, at_hash: Option<Block::Hash>) -> RpcResult<RegistryStatsJson> {
		let client = self.client.clone();
		let block = match self
			.indexed_answer(at_hash, |index, block, number| RegistryStatsJson {
				at: Some(answered_at(&block, number, "index")),
				..crate::index::stats_json(index)
			})
			.await
		{
			Ok(stats) => return Ok(stats),
			Err(block) => block,
		};
		self.queries
			.run(move || {
				let stats = client.runtime_api().stats(block).map_err(runtime_error)?;
				Ok(RegistryStatsJson {
					at: Some(answered_at(&block, block_number(&*client, block), "runtime")),
					..stats.into()
				})
			})
			.await
	}

	async fn subscribe_providers(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
		let Some(index) = self.index.clone() else {
			pending.reject(crate::runtime_error("this node keeps no registry index")).await;
			return Ok(());
		};
		let mut updates = index.subscribe();
		let sink = pending.accept().await?;
		let prefix = self.ss58_prefix;
		loop {
			let update = tokio::select! {
				update = updates.recv() => update,
				_ = sink.closed() => return Ok(()),
			};
			match update {
				Ok(update) => {
					for change in &update.changes {
						let json = change_json(change, &update.block, update.number, prefix);
						sink.send(SubscriptionMessage::from_json(&json)?).await?;
					}
				},
				Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
					return Err(format!(
						"this subscriber fell {n} blocks behind and missed changes: subscribe again and re-read \
						 registry_providers"
					)
					.into())
				},
				Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
			}
		}
	}
}
