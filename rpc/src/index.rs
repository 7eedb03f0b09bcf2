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

use crate::json::{CheckedQuery, ProviderJson, RegistryStatsJson};

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
	/// The block the index is at, for queries waiting for it to reach a new best block.
	at: tokio::sync::watch::Sender<Option<Hash>>,
}

/// Updates a subscriber may fall behind by before it is told it lost some.
const SUBSCRIBER_BACKLOG: usize = 256;

impl<Hash: Copy + PartialEq + Send + Sync + 'static> RegistryIndex<Hash> {
	/// An empty index (not at any block yet: every query goes to the runtime API).
	pub fn new() -> Arc<Self> {
		Arc::new(RegistryIndex {
			state: RwLock::new(None),
			updates: tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0,
			at: tokio::sync::watch::channel(None).0,
		})
	}

	/// Waits until the index is at `block`, for at most `timeout`; whether it is. A new best
	/// block is indexed within milliseconds of its import (a rebuild takes seconds).
	pub async fn wait_until_at(&self, block: Hash, timeout: Duration) -> bool {
		let mut at = self.at.subscribe();
		tokio::time::timeout(timeout, at.wait_for(|at| *at == Some(block))).await.is_ok_and(|r| r.is_ok())
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
		let changes = {
			let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
			let indexed = state.get_or_insert_with(|| Indexed { block, number, index: Index::new(min_stake) });
			let changes = apply(&mut indexed.index, records, complete);
			indexed.block = block;
			indexed.number = number;
			changes
		};
		// The flat lists listings scan, made outside the write lock (listings may run meanwhile).
		{
			let state = self.state.read().unwrap_or_else(|p| p.into_inner());
			if let Some(indexed) = state.as_ref() {
				prepare(&indexed.index);
			}
		}
		self.at.send_replace(Some(block));
		// Nobody listening is fine.
		let _ = self.updates.send(Arc::new(IndexUpdate { block, number, changes }));
	}
}

// The index's work, in functions that are not generic: compiled (and optimised, see the
// workspace's dev profile) in this crate, not in the node's generic RPC and service code that
// calls them (generic code is compiled where it is instantiated, at that crate's optimisation:
// a listing scanned 100,000 providers in ~20 ms that way, unoptimised, in dev builds).

/// Applies `records` to `index` (with `complete`, also removes every provider not among them);
/// what changed.
#[inline(never)]
fn apply(index: &mut Index, records: BTreeMap<AccountId32, Option<Info>>, complete: bool) -> Vec<Change> {
	let mut changes = Vec::new();
	if complete {
		let gone: Vec<AccountId32> = index.accounts().filter(|a| !records.contains_key(*a)).cloned().collect();
		changes.extend(gone.into_iter().filter_map(|a| index.apply(a, None)));
	}
	changes.extend(records.into_iter().filter_map(|(account, info)| index.apply(account, info)));
	changes
}

/// [`Index::prepare`].
#[inline(never)]
fn prepare(index: &Index) {
	index.prepare();
}

/// `registry_providers` from `index`: the total of matches and the page, as JSON.
#[inline(never)]
pub fn providers_json(index: &Index, query: &CheckedQuery, ss58_prefix: u16) -> (u32, Vec<ProviderJson>) {
	let page = index.providers(&query.filter, query.order, query.offset, query.limit);
	(page.total, page.providers.into_iter().map(|p| ProviderJson::new(p, ss58_prefix)).collect())
}

/// `registry_provider` from `index`, as JSON.
#[inline(never)]
pub fn provider_json(index: &Index, account: &AccountId32, ss58_prefix: u16) -> Option<ProviderJson> {
	index.provider(account).map(|p| ProviderJson::new(p.clone(), ss58_prefix))
}

/// `registry_stats` from `index`, as JSON (without `at`).
#[inline(never)]
pub fn stats_json(index: &Index) -> RegistryStatsJson {
	index.stats().into()
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

#[cfg(test)]
mod tests {
	use pallet_provider_registry::{Hosting, Prices, ProviderStatus, Services};

	use super::*;

	fn provider(seed: u8, stake: u128) -> Info {
		Info {
			account: AccountId32::new([seed; 32]),
			services: Services::Vpn,
			endpoints: vec![b"203.0.113.7:7310".to_vec()],
			country: *b"DE",
			region: Vec::new(),
			hosting: Hosting::Datacenter,
			prices: Prices { per_gib: 5, per_hour: 1 },
			service_key: interlattice_pq_crypto::MlDsaPublicKey([seed; 1952]),
			stake,
			unbonding: 0,
			status: ProviderStatus::Registered,
			active: true,
			registered_at: 1,
		}
	}

	fn records(providers: &[Info]) -> BTreeMap<AccountId32, Option<Info>> {
		providers.iter().map(|p| (p.account.clone(), Some(p.clone()))).collect()
	}

	fn listing(index: &RegistryIndex<u64>, block: u64) -> Option<Vec<(u8, u128)>> {
		index.read(block, |index, _| {
			let page = index.providers(&Default::default(), Default::default(), 0, 100);
			page.providers.iter().map(|p| (<[u8; 32]>::from(p.account.clone())[0], p.stake)).collect()
		})
	}

	/// A re-org: the index at block 11 (providers 1 and 2) is rebuilt from block 21 of another
	/// branch (2 changed, 3 new, 1 gone). It answers at 21 as that state does, no longer at 11,
	/// and reports the difference to subscribers; a query waiting for block 21 gets it.
	#[tokio::test]
	async fn a_rebuild_on_another_branch_answers_as_its_state_and_reports_the_difference() {
		let index = RegistryIndex::<u64>::new();
		let mut updates = index.subscribe();
		index.update(11, 11, records(&[provider(1, 10), provider(2, 20)]), true, 1);
		assert_eq!(listing(&index, 11), Some(vec![(2, 20), (1, 10)]));
		assert_eq!(updates.recv().await.unwrap().changes.len(), 2);

		let waiter = {
			let index = index.clone();
			tokio::spawn(async move { index.wait_until_at(21, Duration::from_secs(10)).await })
		};
		index.update(21, 21, records(&[provider(2, 25), provider(3, 30)]), true, 1);
		assert!(waiter.await.unwrap(), "the waiting query saw the index reach block 21");
		assert_eq!(listing(&index, 21), Some(vec![(3, 30), (2, 25)]));
		assert_eq!(listing(&index, 11), None, "the old branch's block is no longer answered from the index");
		let update = updates.recv().await.unwrap();
		let kinds: Vec<(&str, u8)> = update
			.changes
			.iter()
			.map(|c| match c {
				Change::Added(p) => ("added", <[u8; 32]>::from(p.account.clone())[0]),
				Change::Changed(p) => ("changed", <[u8; 32]>::from(p.account.clone())[0]),
				Change::Removed(a) => ("removed", <[u8; 32]>::from(a.clone())[0]),
			})
			.collect();
		assert_eq!(kinds, vec![("removed", 1), ("changed", 2), ("added", 3)]);
		let stats = index.read(21, |index, _| index.stats()).unwrap();
		assert_eq!((stats.providers.registered, stats.total_stake), (2, 55));

		// A query for a block the index never reaches stops waiting.
		assert!(!index.wait_until_at(99, Duration::from_millis(50)).await);
	}
}
