//! The node-side index of the provider registry: `registry_providers`, `registry_provider` and
//! `registry_stats` answered from memory at the best block, and `registry_subscribeProviders`
//! fed from the same updates (`docs/rpc.md`, "Index").
//!
//! [`maintain`] keeps a [`RegistryIndex`] at the node's best block: a full build from the
//! state at the start, then each new best block's storage changes to the registry's
//! `Providers` map; when a new best block is not a child of the indexed one (a re-org, or
//! blocks imported without notifications during a sync) it rebuilds from that block's state
//! and reports the difference. Queries use the index only while it is at the block they ask
//! about; otherwise they go to the runtime API, which stays the reference.

use std::{
	collections::BTreeMap,
	sync::{Arc, RwLock},
	time::Duration,
};

use futures::StreamExt;
use pallet_provider_registry::{
	index::{ProviderChange, ProviderIndex},
	ProviderInfo,
};
use sc_client_api::{Backend, BlockchainEvents, StorageProvider};
use sp_blockchain::HeaderBackend;
use sp_core::{crypto::AccountId32, storage::StorageKey};
use sp_runtime::traits::{Block as BlockT, Header as HeaderT, UniqueSaturatedInto};

/// The registry's index with the node's types.
pub type Index = ProviderIndex<AccountId32, u128, u32>;
/// One provider as the index holds it.
pub type Info = ProviderInfo<AccountId32, u128, u32>;
/// A change the index reports.
pub type Change = ProviderChange<AccountId32, u128, u32>;

/// How the node reads the registry's storage: it knows the runtime's layout and record type
/// (`node/src/rpc.rs`).
pub trait RegistryStorage: Send + Sync + 'static {
	/// The storage key prefix of the providers map.
	fn prefix(&self) -> Vec<u8>;
	/// The provider a key of the map is about, and what its value (`None`: removed) is as the
	/// runtime API shows it; `None` for a key that is not a provider's.
	fn decode(&self, key: &[u8], value: Option<&[u8]>) -> Option<(AccountId32, Option<Info>)>;
	/// The minimum stake of an active provider.
	fn min_stake(&self) -> u128;
}

/// Changes of one new best block (or of a rebuild).
#[derive(Clone, Debug)]
pub struct IndexUpdate<Hash> {
	/// The block the index is at after them.
	pub block: Hash,
	/// Its number.
	pub number: u32,
	/// What changed, in account order.
	pub changes: Vec<Change>,
}

struct Indexed<Hash> {
	block: Hash,
	number: u32,
	index: Index,
}

/// The index, shared by the task that maintains it and the RPC methods that read it.
pub struct RegistryIndex<Hash> {
	state: RwLock<Option<Indexed<Hash>>>,
	updates: tokio::sync::broadcast::Sender<Arc<IndexUpdate<Hash>>>,
}

/// Updates a subscriber may fall behind by before it is told it lost some.
const SUBSCRIBER_BACKLOG: usize = 256;

impl<Hash: Copy + PartialEq + Send + Sync + 'static> RegistryIndex<Hash> {
	/// An empty index (not at any block yet: every query goes to the runtime API).
	pub fn new() -> Arc<Self> {
		Arc::new(RegistryIndex {
			state: RwLock::new(None),
			updates: tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0,
		})
	}

	/// Runs `read` on the index if it is at `block`; `None` otherwise.
	pub fn read<R>(&self, block: Hash, read: impl FnOnce(&Index, u32) -> R) -> Option<R> {
		let state = self.state.read().unwrap_or_else(|p| p.into_inner());
		state.as_ref().filter(|s| s.block == block).map(|s| read(&s.index, s.number))
	}

	/// The block the index is at, if any.
	pub fn block(&self) -> Option<(Hash, u32)> {
		self.state.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|s| (s.block, s.number))
	}

	/// Every update from now on.
	pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<IndexUpdate<Hash>>> {
		self.updates.subscribe()
	}

	/// Applies `records` (account → record or removal) as block `block`'s; with `complete`,
	/// every provider not among them is removed (a rebuild). Reports what changed.
	fn update(
		&self,
		block: Hash,
		number: u32,
		records: BTreeMap<AccountId32, Option<Info>>,
		complete: bool,
		min_stake: u128,
	) {
		let mut changes = Vec::new();
		{
			let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
			let indexed = state.get_or_insert_with(|| Indexed { block, number, index: Index::new(min_stake) });
			if complete {
				let gone: Vec<AccountId32> =
					indexed.index.accounts().filter(|a| !records.contains_key(*a)).cloned().collect();
				changes.extend(gone.into_iter().filter_map(|a| indexed.index.apply(a, None)));
			}
			changes.extend(records.into_iter().filter_map(|(account, info)| indexed.index.apply(account, info)));
			indexed.block = block;
			indexed.number = number;
		}
		// Nobody listening is fine.
		let _ = self.updates.send(Arc::new(IndexUpdate { block, number, changes }));
	}
}

/// Every provider record in the state at `block`.
fn read_all<Block, C, B>(
	client: &C,
	storage: &dyn RegistryStorage,
	block: Block::Hash,
) -> sp_blockchain::Result<BTreeMap<AccountId32, Option<Info>>>
where
	Block: BlockT,
	C: StorageProvider<Block, B>,
	B: Backend<Block>,
{
	let prefix = StorageKey(storage.prefix());
	let mut records = BTreeMap::new();
	for (key, value) in client.storage_pairs(block, Some(&prefix), None)? {
		if let Some((account, info)) = storage.decode(&key.0, Some(&value.0)) {
			records.insert(account, info);
		}
	}
	Ok(records)
}

/// How often the maintainer checks that the index follows the best block (blocks imported
/// during a sync come without storage notifications).
const CATCH_UP_INTERVAL: Duration = Duration::from_secs(3);

/// Keeps `index` at `client`'s best block until the node stops.
pub async fn maintain<Block, C, B>(
	client: Arc<C>,
	index: Arc<RegistryIndex<Block::Hash>>,
	storage: Arc<dyn RegistryStorage>,
) where
	Block: BlockT,
	C: BlockchainEvents<Block> + StorageProvider<Block, B> + HeaderBackend<Block> + Send + Sync + 'static,
	B: Backend<Block> + Send + Sync + 'static,
{
	let mut notifications = match client.storage_changes_notification_stream(None, None) {
		Ok(stream) => stream,
		Err(e) => {
			tracing::warn!(target: "registry-index", "no storage notifications ({e}): the registry queries use the runtime API");
			return;
		},
	};
	let prefix = storage.prefix();
	let rebuild = |block: Block::Hash| {
		let (client, index, storage) = (client.clone(), index.clone(), storage.clone());
		async move {
			let started = std::time::Instant::now();
			let built = tokio::task::spawn_blocking(move || -> sp_blockchain::Result<usize> {
				let number: u32 = match client.header(block)? {
					Some(header) => (*header.number()).unique_saturated_into(),
					None => return Ok(0),
				};
				let records = read_all::<Block, C, B>(&*client, &*storage, block)?;
				let n = records.len();
				index.update(block, number, records, true, storage.min_stake());
				Ok(n)
			})
			.await;
			match built {
				Ok(Ok(n)) => {
					tracing::info!(target: "registry-index", "registry index built at {block}: {n} providers in {:?}", started.elapsed())
				},
				Ok(Err(e)) => {
					tracing::warn!(target: "registry-index", "cannot build the registry index at {block}: {e}")
				},
				Err(e) => tracing::warn!(target: "registry-index", "registry index build failed: {e}"),
			}
		}
	};
	rebuild(client.info().best_hash).await;
	let mut catch_up = tokio::time::interval(CATCH_UP_INTERVAL);
	loop {
		tokio::select! {
			notification = notifications.next() => {
				let Some(notification) = notification else { break };
				let block = notification.block;
				let header = match client.header(block) {
					Ok(Some(header)) => header,
					_ => continue,
				};
				let indexed = index.block().map(|(hash, _)| hash);
				if indexed == Some(block) {
					continue; // a rebuild at this block got here first
				}
				if indexed != Some(*header.parent_hash()) {
					// A re-org, or blocks the index did not see: start again from this one.
					rebuild(block).await;
					continue;
				}
				let records: BTreeMap<AccountId32, Option<Info>> = notification
					.changes
					.iter()
					.filter(|(child, key, _)| child.is_none() && key.0.starts_with(&prefix))
					.filter_map(|(_, key, value)| storage.decode(&key.0, value.map(|v| &v.0[..])))
					.collect();
				index.update(block, (*header.number()).unique_saturated_into(), records, false, storage.min_stake());
			},
			_ = catch_up.tick() => {
				let best = client.info().best_hash;
				if index.block().map(|(hash, _)| hash) != Some(best) {
					// Let a notification on its way arrive first; still behind next time: rebuild.
					tokio::time::sleep(Duration::from_millis(500)).await;
					if index.block().map(|(hash, _)| hash) != Some(client.info().best_hash) {
						rebuild(client.info().best_hash).await;
					}
				}
			},
		}
	}
}
