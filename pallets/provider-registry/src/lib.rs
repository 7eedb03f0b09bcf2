#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;

mod impls;
#[cfg(feature = "std")]
pub mod index;
pub mod query;
pub mod types;
pub mod weights;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

pub use query::*;
pub use types::*;
pub use weights::WeightInfo;

/// What other pallets (the session escrow) may ask the registry.
pub trait ProviderRegistry<AccountId, Balance> {
	/// The provider registered under `who`, if any (also when deregistered: open sessions
	/// must still settle with it).
	fn provider(who: &AccountId) -> Option<ProviderSummary<Balance>>;

	/// Registers `who` (already funded) as an active provider of both services at `prices`
	/// with the minimum stake, for other pallets' benchmarks.
	#[cfg(feature = "runtime-benchmarks")]
	fn register_for_benchmarks(who: &AccountId, prices: Prices<Balance>) -> sp_runtime::DispatchResult;
}

/// Slashing entry point for other pallets (e.g. a future evidence-based slashing).
pub trait ProviderSlashing<AccountId, Balance> {
	/// Slashes up to exactly `amount` of `who`'s stake (bonded first, then unbonding chunks,
	/// newest first) and sends it to the slash destination. Fails, changing nothing, if
	/// `who` is not a provider or holds less than `amount`.
	fn slash(who: &AccountId, amount: Balance, reason: &[u8]) -> Result<(), sp_runtime::DispatchError>;
}

#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use alloc::boxed::Box;
	use frame_support::{
		pallet_prelude::*,
		traits::fungible::{Inspect, InspectHold, Mutate, MutateHold},
	};
	use frame_system::pallet_prelude::*;
	use interlattice_pq_crypto::MlDsaPublicKey;

	/// Storage layout version.
	const STORAGE_VERSION: StorageVersion = StorageVersion::new(0);

	#[pallet::pallet]
	#[pallet::storage_version(STORAGE_VERSION)]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The currency stakes are held in.
		type Currency: Inspect<Self::AccountId>
			+ InspectHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
			+ Mutate<Self::AccountId>
			+ MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>;

		/// The runtime's hold reason, which includes this pallet's.
		type RuntimeHoldReason: From<HoldReason>;

		/// Minimum bonded stake for a provider to be active (and to register).
		#[pallet::constant]
		type MinStake: Get<BalanceOf<Self>>;

		/// Blocks between unbonding and withdrawal. Must exceed every settlement and dispute
		/// window of the session escrow, so stake cannot leave before misbehaviour is punished.
		#[pallet::constant]
		type UnbondingPeriod: Get<BlockNumberFor<Self>>;

		/// Maximum number of endpoints per provider.
		#[pallet::constant]
		type MaxEndpoints: Get<u32>;

		/// Maximum length of one endpoint, in bytes.
		#[pallet::constant]
		type MaxEndpointLen: Get<u32>;

		/// Maximum length of a region/city name, in bytes.
		#[pallet::constant]
		type MaxRegionLen: Get<u32>;

		/// Maximum number of unbonding chunks per provider.
		#[pallet::constant]
		type MaxUnbondingChunks: Get<u32>;

		/// Maximum length of a slash reason, in bytes.
		#[pallet::constant]
		type MaxSlashReasonLen: Get<u32>;

		/// Who may slash by decree (root for now).
		type SlashOrigin: EnsureOrigin<Self::RuntimeOrigin>;

		/// Where slashed stake goes: `Some(account)` (a treasury) or `None` (burned).
		type SlashDestination: Get<Option<Self::AccountId>>;

		/// Weights of the calls, from benchmarks.
		type WeightInfo: WeightInfo;
	}

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// A provider's stake, bonded or unbonding.
		#[codec(index = 0)]
		ProviderStake,
	}

	/// Every registered provider, by account.
	#[pallet::storage]
	pub type Providers<T: Config> = StorageMap<_, Blake2_128Concat, T::AccountId, ProviderRecordOf<T>, OptionQuery>;

	/// Which provider uses a service key (keyed by the key's `blake2_256`): one key, one
	/// provider, so a handshake identifies the provider unambiguously.
	#[pallet::storage]
	pub type ServiceKeyOwners<T: Config> = StorageMap<_, Identity, [u8; 32], T::AccountId, OptionQuery>;

	/// Number of entries in [`Providers`].
	#[pallet::storage]
	pub type ProviderCount<T: Config> = StorageValue<_, u32, ValueQuery>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// A provider registered and bonded its initial stake.
		ProviderRegistered {
			/// The provider's account.
			provider: T::AccountId,
			/// Services offered.
			services: Services,
			/// ISO 3166-1 alpha-2 country code.
			country: [u8; 2],
			/// Initial stake.
			stake: BalanceOf<T>,
		},
		/// A provider changed its services, endpoints, location, prices or service key.
		ProviderUpdated {
			/// The provider's account.
			provider: T::AccountId,
		},
		/// A provider bonded more stake.
		StakeBonded {
			/// The provider's account.
			provider: T::AccountId,
			/// Amount added.
			amount: BalanceOf<T>,
			/// Bonded stake afterwards.
			stake: BalanceOf<T>,
		},
		/// A provider started unbonding stake.
		StakeUnbonded {
			/// The provider's account.
			provider: T::AccountId,
			/// Amount unbonding.
			amount: BalanceOf<T>,
			/// First block at which it can be withdrawn.
			unlock_at: BlockNumberFor<T>,
			/// Bonded stake afterwards.
			stake: BalanceOf<T>,
		},
		/// Unbonded stake was released to the provider.
		StakeWithdrawn {
			/// The provider's account.
			provider: T::AccountId,
			/// Amount released.
			amount: BalanceOf<T>,
		},
		/// A provider deregistered: no longer listed; its whole stake is unbonding.
		ProviderDeregistered {
			/// The provider's account.
			provider: T::AccountId,
			/// First block at which its stake can be withdrawn.
			unlock_at: BlockNumberFor<T>,
		},
		/// A deregistered provider withdrew its last stake and was removed.
		ProviderRemoved {
			/// The provider's account.
			provider: T::AccountId,
		},
		/// A provider's stake was slashed.
		ProviderSlashed {
			/// The provider's account.
			provider: T::AccountId,
			/// Amount taken.
			amount: BalanceOf<T>,
			/// Why.
			reason: SlashReasonOf<T>,
			/// Where it went (`None`: burned).
			destination: Option<T::AccountId>,
		},
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The account is registered as a provider already.
		AlreadyRegistered,
		/// The account is not a registered provider.
		NotRegistered,
		/// The provider has deregistered; only withdrawing is possible.
		ProviderDeregistered,
		/// The stake would be below the minimum stake.
		StakeTooLow,
		/// The account's free balance cannot cover the stake.
		InsufficientBalance,
		/// An amount of zero was given.
		ZeroAmount,
		/// No longer returned: a provider without endpoints is unlisted (issue 21). Kept so
		/// that the indices of the errors after it do not change.
		NoEndpoints,
		/// An endpoint is empty or not printable ASCII.
		InvalidEndpoint,
		/// The country is not two upper-case ASCII letters (ISO 3166-1 alpha-2).
		InvalidCountryCode,
		/// The region is not valid UTF-8.
		InvalidRegion,
		/// The service key is already used by another provider.
		ServiceKeyInUse,
		/// More than the bonded stake was asked to unbond.
		UnbondTooLarge,
		/// Too many unbonding chunks: withdraw the unlocked ones first.
		TooManyUnbondingChunks,
		/// No unbonded stake is withdrawable yet.
		NothingToWithdraw,
		/// The slash exceeds the provider's bonded and unbonding stake.
		SlashTooLarge,
		/// The slash reason is too long.
		SlashReasonTooLong,
		/// An arithmetic overflow (cannot happen with a sane total issuance).
		Overflow,
	}

	#[pallet::genesis_config]
	#[derive(frame_support::DefaultNoBound)]
	pub struct GenesisConfig<T: Config> {
		/// Bootstrap providers for development and test networks.
		pub providers: alloc::vec::Vec<GenesisProvider<T::AccountId, BalanceOf<T>>>,
	}

	#[pallet::genesis_build]
	impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
		fn build(&self) {
			for provider in &self.providers {
				let endpoints: alloc::vec::Vec<EndpointOf<T>> = provider
					.endpoints
					.iter()
					.map(|e| e.as_bytes().to_vec().try_into().expect("genesis endpoint too long"))
					.collect();
				let country: [u8; 2] =
					provider.country.as_bytes().try_into().expect("genesis country must be 2 letters");
				let region = provider.region.as_bytes().to_vec().try_into().expect("genesis region too long");
				Pallet::<T>::do_register(
					provider.account.clone(),
					provider.services,
					endpoints.try_into().expect("too many genesis endpoints"),
					Location { country, region, hosting: provider.hosting },
					Prices { per_gib: provider.price_per_gib, per_hour: provider.price_per_hour },
					provider.service_key.clone(),
					provider.stake,
				)
				.expect("genesis provider must be valid and its account funded");
			}
		}
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		fn integrity_test() {
			assert!(!T::MinStake::get().is_zero(), "MinStake must be > 0");
			assert!(!T::UnbondingPeriod::get().is_zero(), "UnbondingPeriod must be > 0");
			assert!(T::MaxEndpoints::get() > 0, "MaxEndpoints must be > 0");
			assert!(T::MaxUnbondingChunks::get() > 0, "MaxUnbondingChunks must be > 0");
		}

		#[cfg(feature = "try-runtime")]
		fn try_state(_n: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state()
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Register the caller as a provider and bond its initial stake.
		///
		/// - `origin`: the provider's account (signed); pays the stake from its free balance.
		/// - `services`: VPN, CDN or both.
		/// - `endpoints`: printable ASCII, e.g. `vpn.example.net:51820`. A service offered
		///   without an endpoint of its own is unlisted: clients open sessions with
		///   `open_unlisted_session` and the provider reveals an endpoint to each of them.
		/// - `location`: ISO 3166-1 alpha-2 country (upper case), region (UTF-8), hosting.
		/// - `prices`: per GiB and per hour, in the smallest unit.
		/// - `service_key`: the agent's ML-DSA-65 public key (boxed: 1952 bytes would bloat
		///   every `RuntimeCall`); unique among providers.
		/// - `stake`: at least `MinStake`; held with `HoldReason::ProviderStake`.
		///
		/// Errors: `AlreadyRegistered`, `StakeTooLow`, `InsufficientBalance`,
		/// `InvalidEndpoint`, `InvalidCountryCode`, `InvalidRegion`, `ServiceKeyInUse`.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::register_provider())]
		pub fn register_provider(
			origin: OriginFor<T>,
			services: Services,
			endpoints: EndpointsOf<T>,
			location: LocationOf<T>,
			prices: Prices<BalanceOf<T>>,
			service_key: Box<MlDsaPublicKey>,
			stake: BalanceOf<T>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_register(who, services, endpoints, location, prices, *service_key, stake)
		}

		/// Change any of a provider's services, endpoints, location, prices or service key
		/// (`None` keeps the current value).
		///
		/// - `origin`: the provider (signed).
		///
		/// Errors: `NotRegistered`, `ProviderDeregistered`, `InvalidEndpoint`,
		/// `InvalidCountryCode`, `InvalidRegion`, `ServiceKeyInUse`.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::update_provider())]
		pub fn update_provider(
			origin: OriginFor<T>,
			services: Option<Services>,
			endpoints: Option<EndpointsOf<T>>,
			location: Option<LocationOf<T>>,
			prices: Option<Prices<BalanceOf<T>>>,
			service_key: Option<Box<MlDsaPublicKey>>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_update(who, services, endpoints, location, prices, service_key.map(|k| *k))
		}

		/// Bond more stake.
		///
		/// - `origin`: the provider (signed).
		/// - `amount`: added to the bonded stake, held from the free balance.
		///
		/// Errors: `NotRegistered`, `ProviderDeregistered`, `ZeroAmount`, `InsufficientBalance`.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::bond_extra())]
		pub fn bond_extra(origin: OriginFor<T>, amount: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_bond_extra(who, amount)
		}

		/// Start unbonding stake; it stays held (and slashable) for `UnbondingPeriod` blocks,
		/// then `withdraw_unbonded` releases it. Below `MinStake` the provider is not listed.
		///
		/// - `origin`: the provider (signed).
		/// - `amount`: at most the bonded stake.
		///
		/// Errors: `NotRegistered`, `ProviderDeregistered`, `ZeroAmount`, `UnbondTooLarge`,
		/// `TooManyUnbondingChunks`.
		#[pallet::call_index(3)]
		#[pallet::weight(T::WeightInfo::unbond())]
		pub fn unbond(origin: OriginFor<T>, amount: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_unbond(who, amount)
		}

		/// Release every unbonding chunk whose period is over. A deregistered provider with
		/// nothing left held is removed.
		///
		/// - `origin`: the provider (signed).
		///
		/// Errors: `NotRegistered`, `NothingToWithdraw`.
		#[pallet::call_index(4)]
		#[pallet::weight(T::WeightInfo::withdraw_unbonded())]
		pub fn withdraw_unbonded(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_withdraw_unbonded(who)
		}

		/// Deregister: leave the active set and unbond the whole stake. Open sessions can
		/// still settle with the provider until its stake is withdrawn.
		///
		/// - `origin`: the provider (signed).
		///
		/// Errors: `NotRegistered`, `ProviderDeregistered`, `TooManyUnbondingChunks`.
		#[pallet::call_index(5)]
		#[pallet::weight(T::WeightInfo::deregister_provider())]
		pub fn deregister_provider(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_deregister(who)
		}

		/// Slash a provider's stake by decree.
		///
		/// - `origin`: `SlashOrigin` (root).
		/// - `provider`: the provider to slash.
		/// - `amount`: taken from the bonded stake, then from unbonding chunks (newest first).
		/// - `reason`: why, in words (stored in the event).
		///
		/// Errors: `NotRegistered`, `ZeroAmount`, `SlashTooLarge`.
		#[pallet::call_index(6)]
		#[pallet::weight(T::WeightInfo::force_slash())]
		pub fn force_slash(
			origin: OriginFor<T>,
			provider: T::AccountId,
			amount: BalanceOf<T>,
			reason: SlashReasonOf<T>,
		) -> DispatchResult {
			T::SlashOrigin::ensure_origin(origin)?;
			Self::do_slash(&provider, amount, reason)
		}
	}
}
