//! `escrow_*`: sessions over JSON-RPC, for agents and wallets.

use std::{marker::PhantomData, sync::Arc};

use jsonrpsee::{core::RpcResult, proc_macros::rpc};
use pallet_session_escrow::SessionEscrowApi as RuntimeApi;
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::crypto::AccountId32;
use sp_runtime::traits::Block as BlockT;

use crate::{
	invalid_params,
	json::{Account, Counter, SessionJson, SessionPageQuery, DEFAULT_PAGE_LIMIT},
	runtime_error, BlockingQueries,
};

/// The session escrow's JSON-RPC methods. Rust callers use the generated
/// `EscrowApiClient` over any jsonrpsee client (HTTP or WebSocket).
#[rpc(client, server, namespace = "escrow")]
pub trait EscrowApi<BlockHash> {
	/// One session not yet finalized, by id (decimal string or number); `null` if unknown
	/// or finalized.
	#[method(name = "session")]
	async fn session(&self, session_id: Counter, at: Option<BlockHash>) -> RpcResult<Option<SessionJson>>;

	/// A client's sessions not yet finalized, by id.
	#[method(name = "clientSessions")]
	async fn client_sessions(&self, client: String, at: Option<BlockHash>) -> RpcResult<Vec<SessionJson>>;

	/// A provider's sessions not yet finalized, one page in storage order: pass the last
	/// `sessionId` of a page as `after` for the next one.
	#[method(name = "providerSessions")]
	async fn provider_sessions(
		&self,
		provider: String,
		page: Option<SessionPageQuery>,
		at: Option<BlockHash>,
	) -> RpcResult<Vec<SessionJson>>;
}

/// Serves [`EscrowApiServer`] from the runtime API of a client, on blocking threads
/// ([`BlockingQueries`]).
pub struct Escrow<C, Block> {
	client: Arc<C>,
	ss58_prefix: u16,
	queries: BlockingQueries,
	_block: PhantomData<Block>,
}

impl<C, Block> Escrow<C, Block> {
	/// Answers from `client` within the limits of `queries`; shows accounts with
	/// `ss58_prefix`.
	pub fn new(client: Arc<C>, ss58_prefix: u16, queries: BlockingQueries) -> Self {
		Self { client, ss58_prefix, queries, _block: PhantomData }
	}
}

fn account(name: &str, value: &str) -> RpcResult<AccountId32> {
	value.parse::<Account>().map(|a| a.0).map_err(|e| invalid_params(format!("{name}: {e}")))
}

#[jsonrpsee::core::async_trait]
impl<C, Block> EscrowApiServer<Block::Hash> for Escrow<C, Block>
where
	Block: BlockT,
	C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
	C::Api: RuntimeApi<Block, AccountId32, u128, u32>,
{
	async fn session(&self, session_id: Counter, at: Option<Block::Hash>) -> RpcResult<Option<SessionJson>> {
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		self.queries
			.run(move || {
				let at = at.unwrap_or_else(|| client.info().best_hash);
				let s = client.runtime_api().session(at, session_id.0).map_err(runtime_error)?;
				Ok(s.map(|s| SessionJson::new(s, prefix)))
			})
			.await
	}

	async fn client_sessions(&self, client_account: String, at: Option<Block::Hash>) -> RpcResult<Vec<SessionJson>> {
		let who = account("client", &client_account)?;
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		self.queries
			.run(move || {
				let at = at.unwrap_or_else(|| client.info().best_hash);
				let list = client.runtime_api().client_sessions(at, who).map_err(runtime_error)?;
				Ok(list.into_iter().map(|s| SessionJson::new(s, prefix)).collect())
			})
			.await
	}

	async fn provider_sessions(
		&self,
		provider: String,
		page: Option<SessionPageQuery>,
		at: Option<Block::Hash>,
	) -> RpcResult<Vec<SessionJson>> {
		let provider = account("provider", &provider)?;
		let page = page.unwrap_or_default();
		let limit = page.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
		let max = pallet_session_escrow::MAX_SESSIONS_PAGE;
		if limit == 0 || limit > max {
			return Err(invalid_params(format!("limit {limit} is outside 1..={max}")));
		}
		let after = page.after.map(|c| c.0);
		let (client, prefix) = (self.client.clone(), self.ss58_prefix);
		self.queries
			.run(move || {
				let at = at.unwrap_or_else(|| client.info().best_hash);
				let list = client.runtime_api().provider_sessions(at, provider, after, limit).map_err(runtime_error)?;
				Ok(list.into_iter().map(|s| SessionJson::new(s, prefix)).collect())
			})
			.await
	}
}
