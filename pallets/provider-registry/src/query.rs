//! The registry's read side for dApps and wallets: list providers with filters, an order and
//! pagination, read one provider, registry-wide statistics. Served by the runtime API
//! [`ProviderRegistryApi`] (so the semantics are versioned with the runtime) and exposed by the
//! node as the `registry_*` JSON-RPC methods.
//!
//! Listing visits every provider once (filtering and counting need that), keeping only the
//! sort key and account of each match, then reads the records of the requested page: memory
//! stays proportional to the number of matches times ~50 bytes, not to the records' size.

use alloc::vec::Vec;
use codec::{Decode, Encode};
use frame_support::traits::Get;
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::MlDsaPublicKey;
use scale_info::TypeInfo;
use sp_runtime::traits::{Saturating, Zero};

use crate::{pallet::*, BalanceOf, Hosting, Prices, ProviderRecordOf, ProviderStatus, ServiceKind, Services};

/// Largest page [`ProviderRegistryApi::providers`] returns; larger limits are clamped.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Which providers to list. Every field that is set must match; an empty filter matches all.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct ProviderFilter<Balance> {
	/// Offers this service (providers offering both match either).
	pub service: Option<ServiceKind>,
	/// In this country (ISO 3166-1 alpha-2, upper case).
	pub country: Option<[u8; 2]>,
	/// On this kind of network.
	pub hosting: Option<Hosting>,
	/// Price per GiB at most this.
	pub max_price_per_gib: Option<Balance>,
	/// Price per hour at most this.
	pub max_price_per_hour: Option<Balance>,
	/// Bonded stake at least this.
	pub min_stake: Option<Balance>,
	/// Only active providers (registered, bonded stake at least the minimum).
	pub active_only: bool,
}

impl<Balance> Default for ProviderFilter<Balance> {
	fn default() -> Self {
		Self {
			service: None,
			country: None,
			hosting: None,
			max_price_per_gib: None,
			max_price_per_hour: None,
			min_stake: None,
			active_only: true,
		}
	}
}

/// Order of a listing. Ties are broken by account id (ascending, as `Ord` on the account id:
/// byte order for 32-byte accounts), so pages are stable.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Encode, Decode, TypeInfo)]
pub enum ProviderOrder {
	/// Largest bonded stake first.
	#[default]
	StakeDescending,
	/// Cheapest per GiB first.
	PricePerGibAscending,
	/// Cheapest per hour first.
	PricePerHourAscending,
	/// Oldest registration first.
	RegisteredAtAscending,
}

/// One provider as the query surface shows it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct ProviderInfo<AccountId, Balance, BlockNumber> {
	/// The provider's account.
	pub account: AccountId,
	/// Services offered.
	pub services: Services,
	/// Endpoints (printable ASCII).
	pub endpoints: Vec<Vec<u8>>,
	/// ISO 3166-1 alpha-2 country code.
	pub country: [u8; 2],
	/// Region or city (UTF-8, may be empty).
	pub region: Vec<u8>,
	/// Data centre or residential.
	pub hosting: Hosting,
	/// Prices in the smallest unit.
	pub prices: Prices<Balance>,
	/// The agent's ML-DSA-65 public key.
	pub service_key: MlDsaPublicKey,
	/// Bonded stake.
	pub stake: Balance,
	/// Stake still held but unbonding.
	pub unbonding: Balance,
	/// Registered or deregistered.
	pub status: ProviderStatus,
	/// Whether the provider is active (listed by default).
	pub active: bool,
	/// Block of registration.
	pub registered_at: BlockNumber,
}

/// One page of a listing.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct ProviderPage<AccountId, Balance, BlockNumber> {
	/// Number of providers matching the filter (all pages).
	pub total: u32,
	/// The page, in the requested order.
	pub providers: Vec<ProviderInfo<AccountId, Balance, BlockNumber>>,
}

/// Provider counts of one service or one country.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Encode, Decode, TypeInfo)]
pub struct ProviderCounts {
	/// Registered (including deregistered ones still unbonding).
	pub registered: u32,
	/// Active.
	pub active: u32,
}

/// Registry-wide statistics.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct RegistryStats<Balance> {
	/// All providers.
	pub providers: ProviderCounts,
	/// Providers offering the VPN.
	pub vpn: ProviderCounts,
	/// Providers offering the CDN.
	pub cdn: ProviderCounts,
	/// Per country, sorted by country code.
	pub countries: Vec<([u8; 2], ProviderCounts)>,
	/// Sum of bonded stake.
	pub total_stake: Balance,
	/// Sum of stake still held but unbonding.
	pub total_unbonding: Balance,
	/// The minimum stake of an active provider.
	pub min_stake: Balance,
}

sp_api::decl_runtime_apis! {
	/// The provider registry's query surface.
	pub trait ProviderRegistryApi<AccountId, Balance, BlockNumber>
	where
		AccountId: codec::Codec,
		Balance: codec::Codec,
		BlockNumber: codec::Codec,
	{
		/// Providers matching `filter`, in `order`, skipping `offset`, at most `limit` (clamped
		/// to [`MAX_PAGE_LIMIT`]).
		fn providers(
			filter: ProviderFilter<Balance>,
			order: ProviderOrder,
			offset: u32,
			limit: u32,
		) -> ProviderPage<AccountId, Balance, BlockNumber>;

		/// One provider, also when deregistered; `None` if unknown.
		fn provider(account: AccountId) -> Option<ProviderInfo<AccountId, Balance, BlockNumber>>;

		/// Registry-wide statistics.
		fn stats() -> RegistryStats<Balance>;
	}
}

/// A [`ProviderInfo`] of runtime `T`.
pub type ProviderInfoOf<T> = ProviderInfo<<T as frame_system::Config>::AccountId, BalanceOf<T>, BlockNumberFor<T>>;
/// A [`ProviderPage`] of runtime `T`.
pub type ProviderPageOf<T> = ProviderPage<<T as frame_system::Config>::AccountId, BalanceOf<T>, BlockNumberFor<T>>;

impl<T: Config> Pallet<T> {
	fn filter_matches(filter: &ProviderFilter<BalanceOf<T>>, record: &ProviderRecordOf<T>, active: bool) -> bool {
		let at_most = |limit: &Option<BalanceOf<T>>, value: BalanceOf<T>| limit.is_none_or(|l| value <= l);
		(!filter.active_only || active)
			&& filter.service.is_none_or(|s| record.services.offers(s))
			&& filter.country.is_none_or(|c| record.location.country == c)
			&& filter.hosting.is_none_or(|h| record.location.hosting == h)
			&& at_most(&filter.max_price_per_gib, record.prices.per_gib)
			&& at_most(&filter.max_price_per_hour, record.prices.per_hour)
			&& filter.min_stake.is_none_or(|m| record.stake >= m)
	}

	/// A record as the query surface shows it.
	pub fn provider_info(account: T::AccountId, record: ProviderRecordOf<T>) -> ProviderInfoOf<T> {
		let active = record.is_active(T::MinStake::get());
		let unbonding = record.total_held().saturating_sub(record.stake);
		ProviderInfo {
			account,
			services: record.services,
			endpoints: record.endpoints.into_iter().map(|e| e.into_inner()).collect(),
			country: record.location.country,
			region: record.location.region.into_inner(),
			hosting: record.location.hosting,
			prices: record.prices,
			service_key: record.service_key,
			stake: record.stake,
			unbonding,
			status: record.status,
			active,
			registered_at: record.registered_at,
		}
	}

	/// [`ProviderRegistryApi::providers`].
	pub fn query_providers(
		filter: ProviderFilter<BalanceOf<T>>,
		order: ProviderOrder,
		offset: u32,
		limit: u32,
	) -> ProviderPageOf<T> {
		let min_stake = T::MinStake::get();
		// The sort key as a balance (block numbers fit: they are converted with saturation).
		let mut matches: Vec<(BalanceOf<T>, T::AccountId)> = Providers::<T>::iter()
			.filter(|(_, r)| Self::filter_matches(&filter, r, r.is_active(min_stake)))
			.map(|(who, r)| {
				let key = match order {
					ProviderOrder::StakeDescending => r.stake,
					ProviderOrder::PricePerGibAscending => r.prices.per_gib,
					ProviderOrder::PricePerHourAscending => r.prices.per_hour,
					ProviderOrder::RegisteredAtAscending => {
						let n: u32 = r.registered_at.try_into().unwrap_or(u32::MAX);
						BalanceOf::<T>::from(n)
					},
				};
				(key, who)
			})
			.collect();
		let total = u32::try_from(matches.len()).unwrap_or(u32::MAX);
		match order {
			ProviderOrder::StakeDescending => {
				matches.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)))
			},
			_ => matches.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1))),
		}
		let providers = matches
			.into_iter()
			.skip(offset as usize)
			.take(limit.min(MAX_PAGE_LIMIT) as usize)
			.filter_map(|(_, who)| Providers::<T>::get(&who).map(|r| Self::provider_info(who, r)))
			.collect();
		ProviderPage { total, providers }
	}

	/// [`ProviderRegistryApi::provider`].
	pub fn query_provider(account: T::AccountId) -> Option<ProviderInfoOf<T>> {
		Providers::<T>::get(&account).map(|r| Self::provider_info(account, r))
	}

	/// [`ProviderRegistryApi::stats`].
	pub fn query_stats() -> RegistryStats<BalanceOf<T>> {
		let min_stake = T::MinStake::get();
		let mut stats = RegistryStats::empty(min_stake);
		for (_, r) in Providers::<T>::iter() {
			let unbonding = r.total_held().saturating_sub(r.stake);
			stats.add(r.services, r.location.country, r.is_active(min_stake), r.stake, unbonding);
		}
		stats
	}
}

impl ProviderCounts {
	/// Counts one more provider.
	pub fn count(&mut self, active: bool) {
		self.registered.saturating_inc();
		if active {
			self.active.saturating_inc();
		}
	}

	/// Counts one provider out (the inverse of [`Self::count`]).
	pub fn uncount(&mut self, active: bool) {
		self.registered.saturating_dec();
		if active {
			self.active.saturating_dec();
		}
	}
}

impl<Balance: Zero + Saturating + Copy> RegistryStats<Balance> {
	/// The statistics of no providers.
	pub fn empty(min_stake: Balance) -> Self {
		RegistryStats {
			providers: ProviderCounts::default(),
			vpn: ProviderCounts::default(),
			cdn: ProviderCounts::default(),
			countries: Vec::new(),
			total_stake: Zero::zero(),
			total_unbonding: Zero::zero(),
			min_stake,
		}
	}

	/// Counts one provider in.
	pub fn add(&mut self, services: Services, country: [u8; 2], active: bool, stake: Balance, unbonding: Balance) {
		self.providers.count(active);
		if services.offers(ServiceKind::Vpn) {
			self.vpn.count(active);
		}
		if services.offers(ServiceKind::Cdn) {
			self.cdn.count(active);
		}
		let i = match self.countries.binary_search_by(|(c, _)| c.cmp(&country)) {
			Ok(i) => i,
			Err(i) => {
				self.countries.insert(i, (country, ProviderCounts::default()));
				i
			},
		};
		self.countries[i].1.count(active);
		self.total_stake = self.total_stake.saturating_add(stake);
		self.total_unbonding = self.total_unbonding.saturating_add(unbonding);
	}

	/// Counts out one provider counted in with the same arguments (the inverse of
	/// [`Self::add`]; a country without providers left is dropped, as a count from scratch
	/// would not list it). Exact while the sums fit a `Balance`: they are sums of held
	/// balances, bounded by the total issuance.
	pub fn remove(&mut self, services: Services, country: [u8; 2], active: bool, stake: Balance, unbonding: Balance) {
		self.providers.uncount(active);
		if services.offers(ServiceKind::Vpn) {
			self.vpn.uncount(active);
		}
		if services.offers(ServiceKind::Cdn) {
			self.cdn.uncount(active);
		}
		if let Ok(i) = self.countries.binary_search_by(|(c, _)| c.cmp(&country)) {
			self.countries[i].1.uncount(active);
			if self.countries[i].1.registered == 0 {
				self.countries.remove(i);
			}
		}
		self.total_stake = self.total_stake.saturating_sub(stake);
		self.total_unbonding = self.total_unbonding.saturating_sub(unbonding);
	}
}
