//! An in-memory copy of the registry's query surface, for the node's RPC layer
//! (`interlattice-rpc`, `registry_*`): the answers of [`ProviderRegistryApi`] at one block,
//! without walking the state for every query. The node keeps it current from each new best
//! block's storage changes; the runtime API stays the reference it is tested against
//! (`tests::the_index_answers_as_the_runtime_does`).
//!
//! Each order keeps its sort keys in a `BTreeMap`, each with the few fields a filter looks at,
//! and a copy of them as one contiguous list (made after changes), so a listing scans that list
//! in order, reads only the page's records, and counts the matches of a filter without visiting
//! any record (it scans every provider's entry, as the runtime visits every record, but in
//! memory and compactly). The statistics are kept as providers change.
//!
//! [`ProviderRegistryApi`]: crate::ProviderRegistryApi

use std::{cmp::Reverse, collections::BTreeMap};

use codec::Decode;
use frame_support::storage::StoragePrefixedMap;
use sp_runtime::traits::{Saturating, Zero};

use crate::{
	Config, Pallet, ProviderFilter, ProviderInfo, ProviderInfoOf, ProviderOrder, ProviderPage, ProviderRecordOf,
	Providers, RegistryStats, MAX_PAGE_LIMIT,
};

/// What a listing order sorts by, as the runtime computes it: stake, prices, or the block of
/// registration (saturated to `u32`).
fn order_key<A, Balance: Copy + From<u32>, B: Copy + TryInto<u32>>(
	order: ProviderOrder,
	p: &ProviderInfo<A, Balance, B>,
) -> Balance {
	match order {
		ProviderOrder::StakeDescending => p.stake,
		ProviderOrder::PricePerGibAscending => p.prices.per_gib,
		ProviderOrder::PricePerHourAscending => p.prices.per_hour,
		ProviderOrder::RegisteredAtAscending => Balance::from(p.registered_at.try_into().unwrap_or(u32::MAX)),
	}
}

/// What a filter looks at, kept beside each sort key: a listing scans these without visiting
/// the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed<Balance> {
	services: crate::Services,
	country: [u8; 2],
	hosting: crate::Hosting,
	per_gib: Balance,
	per_hour: Balance,
	stake: Balance,
	active: bool,
}

impl<Balance: Copy> Listed<Balance> {
	fn of<A, B>(p: &ProviderInfo<A, Balance, B>) -> Self {
		Listed {
			services: p.services,
			country: p.country,
			hosting: p.hosting,
			per_gib: p.prices.per_gib,
			per_hour: p.prices.per_hour,
			stake: p.stake,
			active: p.active,
		}
	}
}

impl<Balance: Ord + Copy> ProviderFilter<Balance> {
	/// Whether the provider `p` lists matches (the rule [`crate::Pallet::query_providers`]
	/// applies to records).
	fn matches_listed(&self, p: &Listed<Balance>) -> bool {
		let at_most = |limit: &Option<Balance>, value: Balance| limit.is_none_or(|l| value <= l);
		(!self.active_only || p.active)
			&& self.service.is_none_or(|s| p.services.offers(s))
			&& self.country.is_none_or(|c| p.country == c)
			&& self.hosting.is_none_or(|h| p.hosting == h)
			&& at_most(&self.max_price_per_gib, p.per_gib)
			&& at_most(&self.max_price_per_hour, p.per_hour)
			&& self.min_stake.is_none_or(|m| p.stake >= m)
	}
}

/// What changed for one provider when the index was updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderChange<AccountId, Balance, BlockNumber> {
	/// A provider the index did not hold.
	Added(ProviderInfo<AccountId, Balance, BlockNumber>),
	/// A provider whose record changed.
	Changed(ProviderInfo<AccountId, Balance, BlockNumber>),
	/// A provider no longer in the registry (its record was removed).
	Removed(AccountId),
}

/// The registry's providers, indexed by every listing order.
#[derive(Clone, Debug)]
pub struct ProviderIndex<AccountId, Balance, BlockNumber> {
	providers: BTreeMap<AccountId, ProviderInfo<AccountId, Balance, BlockNumber>>,
	by_stake: BTreeMap<(Reverse<Balance>, AccountId), Listed<Balance>>,
	by_price_per_gib: BTreeMap<(Balance, AccountId), Listed<Balance>>,
	by_price_per_hour: BTreeMap<(Balance, AccountId), Listed<Balance>>,
	by_registration: BTreeMap<(Balance, AccountId), Listed<Balance>>,
	/// The statistics of `providers`, kept as they change (counting 100,000 records for each
	/// `registry_stats` took tens of milliseconds: one cache miss per record).
	stats: RegistryStats<Balance>,
	/// Per order (indexed by [`order_slot`]), the ordered entries copied into one contiguous
	/// list: a listing scans that (walking the B-tree's nodes scattered over the heap cost
	/// ~100 ns an entry, 10 ms at 100,000 providers). Made by the first listing in that order
	/// after a change, or by [`Self::prepare`]; dropped by the next change.
	flat: [std::sync::OnceLock<Vec<(Listed<Balance>, AccountId)>>; 4],
}

/// Where [`ProviderIndex`] keeps the flat list of `order`.
fn order_slot(order: ProviderOrder) -> usize {
	match order {
		ProviderOrder::StakeDescending => 0,
		ProviderOrder::PricePerGibAscending => 1,
		ProviderOrder::PricePerHourAscending => 2,
		ProviderOrder::RegisteredAtAscending => 3,
	}
}

/// Every order, in [`order_slot`]'s order.
const ORDERS: [ProviderOrder; 4] = [
	ProviderOrder::StakeDescending,
	ProviderOrder::PricePerGibAscending,
	ProviderOrder::PricePerHourAscending,
	ProviderOrder::RegisteredAtAscending,
];

impl<AccountId, Balance, BlockNumber> ProviderIndex<AccountId, Balance, BlockNumber>
where
	AccountId: Ord + Clone,
	Balance: Ord + Copy + From<u32> + Zero + Saturating,
	BlockNumber: Copy + TryInto<u32>,
{
	/// An empty index; `min_stake` is the runtime's minimum stake of an active provider (only
	/// reported by [`Self::stats`]: each provider's `active` flag is computed with it already).
	pub fn new(min_stake: Balance) -> Self {
		ProviderIndex {
			providers: BTreeMap::new(),
			by_stake: BTreeMap::new(),
			by_price_per_gib: BTreeMap::new(),
			by_price_per_hour: BTreeMap::new(),
			by_registration: BTreeMap::new(),
			stats: RegistryStats::empty(min_stake),
			flat: Default::default(),
		}
	}

	/// The accounts of the providers held, in order.
	pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
		self.providers.keys()
	}

	/// Providers held.
	pub fn len(&self) -> usize {
		self.providers.len()
	}

	/// Whether it holds none.
	pub fn is_empty(&self) -> bool {
		self.providers.is_empty()
	}

	fn unlink(&mut self, p: &ProviderInfo<AccountId, Balance, BlockNumber>) {
		let who = p.account.clone();
		self.by_stake.remove(&(Reverse(p.stake), who.clone()));
		self.by_price_per_gib.remove(&(p.prices.per_gib, who.clone()));
		self.by_price_per_hour.remove(&(p.prices.per_hour, who.clone()));
		self.by_registration.remove(&(order_key(ProviderOrder::RegisteredAtAscending, p), who));
		self.stats.remove(p.services, p.country, p.active, p.stake, p.unbonding);
	}

	fn link(&mut self, p: &ProviderInfo<AccountId, Balance, BlockNumber>) {
		let (who, listed) = (p.account.clone(), Listed::of(p));
		self.by_stake.insert((Reverse(p.stake), who.clone()), listed);
		self.by_price_per_gib.insert((p.prices.per_gib, who.clone()), listed);
		self.by_price_per_hour.insert((p.prices.per_hour, who.clone()), listed);
		self.by_registration.insert((order_key(ProviderOrder::RegisteredAtAscending, p), who), listed);
		self.stats.add(p.services, p.country, p.active, p.stake, p.unbonding);
	}

	/// Sets `account`'s record (`None`: removed); returns what changed, if anything did.
	pub fn apply(
		&mut self,
		account: AccountId,
		info: Option<ProviderInfo<AccountId, Balance, BlockNumber>>,
	) -> Option<ProviderChange<AccountId, Balance, BlockNumber>>
	where
		ProviderInfo<AccountId, Balance, BlockNumber>: PartialEq + Clone,
	{
		let old = self.providers.remove(&account);
		if let Some(old) = &old {
			self.unlink(old);
		}
		if old.is_some() || info.is_some() {
			self.flat.iter_mut().for_each(|flat| drop(flat.take()));
		}
		match (old, info) {
			(None, None) => None,
			(Some(_), None) => Some(ProviderChange::Removed(account)),
			(old, Some(new)) => {
				self.link(&new);
				self.providers.insert(account, new.clone());
				match old {
					None => Some(ProviderChange::Added(new)),
					Some(old) if old == new => None,
					Some(_) => Some(ProviderChange::Changed(new)),
				}
			},
		}
	}

	/// [`crate::ProviderRegistryApi::provider`].
	pub fn provider(&self, account: &AccountId) -> Option<&ProviderInfo<AccountId, Balance, BlockNumber>> {
		self.providers.get(account)
	}

	/// [`crate::ProviderRegistryApi::providers`]: the same matches, order, total and page.
	pub fn providers(
		&self,
		filter: &ProviderFilter<Balance>,
		order: ProviderOrder,
		offset: u32,
		limit: u32,
	) -> ProviderPage<AccountId, Balance, BlockNumber>
	where
		ProviderInfo<AccountId, Balance, BlockNumber>: Clone,
	{
		let (skip, take) = (offset as usize, limit.min(MAX_PAGE_LIMIT) as usize);
		let mut total = 0usize;
		let mut page = Vec::with_capacity(take.min(self.providers.len()));
		for (_, account) in self.flat(order).iter().filter(|(l, _)| filter.matches_listed(l)) {
			if total >= skip && page.len() < take {
				page.extend(self.providers.get(account).cloned());
			}
			total += 1;
		}
		ProviderPage { total: u32::try_from(total).unwrap_or(u32::MAX), providers: page }
	}

	/// The entries of `order`, in order, as one list (made now if a change dropped it).
	fn flat(&self, order: ProviderOrder) -> &[(Listed<Balance>, AccountId)] {
		self.flat[order_slot(order)].get_or_init(|| {
			let entries: Box<dyn Iterator<Item = (&AccountId, &Listed<Balance>)> + '_> = match order {
				ProviderOrder::StakeDescending => Box::new(self.by_stake.iter().map(|((_, a), l)| (a, l))),
				ProviderOrder::PricePerGibAscending => Box::new(self.by_price_per_gib.iter().map(|((_, a), l)| (a, l))),
				ProviderOrder::PricePerHourAscending => {
					Box::new(self.by_price_per_hour.iter().map(|((_, a), l)| (a, l)))
				},
				ProviderOrder::RegisteredAtAscending => Box::new(self.by_registration.iter().map(|((_, a), l)| (a, l))),
			};
			entries.map(|(account, listed)| (*listed, account.clone())).collect()
		})
	}

	/// Makes the flat list of every order now (after changes, so that no listing waits for
	/// it; readers may run meanwhile).
	pub fn prepare(&self) {
		for order in ORDERS {
			self.flat(order);
		}
	}

	/// [`crate::ProviderRegistryApi::stats`].
	pub fn stats(&self) -> RegistryStats<Balance> {
		self.stats.clone()
	}
}

impl<T: Config> Pallet<T> {
	/// The minimum stake of an active provider.
	pub fn min_stake() -> crate::BalanceOf<T> {
		<T::MinStake as frame_support::traits::Get<_>>::get()
	}

	/// The storage key prefix of the providers map (every provider's key starts with it).
	pub fn providers_prefix() -> [u8; 32] {
		Providers::<T>::final_prefix()
	}

	/// The provider a key of the providers map is about (`prefix ‖ blake2_128(account) ‖
	/// account`) and its `value` as the runtime API shows it (`None` if removed); `None` for a
	/// key that is not a well-formed provider key or a value that does not decode.
	pub fn decode_provider_entry(
		key: &[u8],
		value: Option<&[u8]>,
	) -> Option<(T::AccountId, Option<ProviderInfoOf<T>>)> {
		let rest = key.strip_prefix(&Self::providers_prefix()[..])?;
		let (hash, mut encoded) = rest.split_at_checked(16)?;
		if <frame_support::Blake2_128 as frame_support::StorageHasher>::hash(encoded)[..] != *hash {
			return None;
		}
		let account = T::AccountId::decode(&mut encoded).ok()?;
		if !encoded.is_empty() {
			return None;
		}
		let info = match value {
			None => None,
			Some(mut value) => {
				let record = ProviderRecordOf::<T>::decode(&mut value).ok()?;
				Some(Self::provider_info(account.clone(), record))
			},
		};
		Some((account, info))
	}
}
