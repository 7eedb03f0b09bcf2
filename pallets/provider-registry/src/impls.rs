//! The registry's logic: every check before any write.

use frame_support::{
	ensure,
	pallet_prelude::*,
	traits::{
		fungible::{InspectHold, MutateHold},
		tokens::{Fortitude, Precision, Restriction},
	},
};
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::MlDsaPublicKey;
use sp_runtime::{
	traits::{CheckedAdd, CheckedSub, Saturating, Zero},
	DispatchError, DispatchResult,
};

use crate::{
	pallet::*, BalanceOf, EndpointsOf, LocationOf, Prices, ProviderRecord, ProviderRegistry, ProviderSlashing,
	ProviderStatus, ProviderSummary, Services, SlashReasonOf, UnbondingChunk,
};

impl<T: Config> Pallet<T> {
	fn hold_reason() -> T::RuntimeHoldReason {
		HoldReason::ProviderStake.into()
	}

	fn validate_endpoints(endpoints: &EndpointsOf<T>) -> DispatchResult {
		for e in endpoints.iter() {
			ensure!(!e.is_empty() && e.iter().all(|b| b.is_ascii_graphic()), Error::<T>::InvalidEndpoint);
		}
		Ok(())
	}

	fn validate_location(location: &LocationOf<T>) -> DispatchResult {
		ensure!(location.country.iter().all(u8::is_ascii_uppercase), Error::<T>::InvalidCountryCode);
		ensure!(core::str::from_utf8(&location.region).is_ok(), Error::<T>::InvalidRegion);
		Ok(())
	}

	fn ensure_service_key_free(key: &MlDsaPublicKey, who: &T::AccountId) -> DispatchResult {
		match ServiceKeyOwners::<T>::get(key.key_id()) {
			Some(owner) if &owner != who => Err(Error::<T>::ServiceKeyInUse.into()),
			_ => Ok(()),
		}
	}

	fn ensure_can_hold(who: &T::AccountId, amount: BalanceOf<T>) -> DispatchResult {
		ensure!(
			T::Currency::ensure_can_hold(&Self::hold_reason(), who, amount).is_ok(),
			Error::<T>::InsufficientBalance
		);
		Ok(())
	}

	pub(crate) fn do_register(
		who: T::AccountId,
		services: Services,
		endpoints: EndpointsOf<T>,
		location: LocationOf<T>,
		prices: Prices<BalanceOf<T>>,
		service_key: MlDsaPublicKey,
		stake: BalanceOf<T>,
	) -> DispatchResult {
		ensure!(!Providers::<T>::contains_key(&who), Error::<T>::AlreadyRegistered);
		ensure!(stake >= T::MinStake::get(), Error::<T>::StakeTooLow);
		Self::validate_endpoints(&endpoints)?;
		Self::validate_location(&location)?;
		Self::ensure_service_key_free(&service_key, &who)?;
		Self::ensure_can_hold(&who, stake)?;
		let count = ProviderCount::<T>::get().checked_add(1).ok_or(Error::<T>::Overflow)?;

		T::Currency::hold(&Self::hold_reason(), &who, stake)?;
		let country = location.country;
		ServiceKeyOwners::<T>::insert(service_key.key_id(), &who);
		Providers::<T>::insert(
			&who,
			ProviderRecord {
				services,
				endpoints,
				location,
				prices,
				service_key,
				stake,
				unbonding: Default::default(),
				status: ProviderStatus::Registered,
				registered_at: frame_system::Pallet::<T>::block_number(),
			},
		);
		ProviderCount::<T>::put(count);
		Self::deposit_event(Event::ProviderRegistered { provider: who, services, country, stake });
		Ok(())
	}

	pub(crate) fn do_update(
		who: T::AccountId,
		services: Option<Services>,
		endpoints: Option<EndpointsOf<T>>,
		location: Option<LocationOf<T>>,
		prices: Option<Prices<BalanceOf<T>>>,
		service_key: Option<MlDsaPublicKey>,
	) -> DispatchResult {
		let mut record = Providers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
		ensure!(record.status == ProviderStatus::Registered, Error::<T>::ProviderDeregistered);
		if let Some(e) = &endpoints {
			Self::validate_endpoints(e)?;
		}
		if let Some(l) = &location {
			Self::validate_location(l)?;
		}
		if let Some(k) = &service_key {
			Self::ensure_service_key_free(k, &who)?;
		}

		if let Some(s) = services {
			record.services = s;
		}
		if let Some(e) = endpoints {
			record.endpoints = e;
		}
		if let Some(l) = location {
			record.location = l;
		}
		if let Some(p) = prices {
			record.prices = p;
		}
		if let Some(k) = service_key {
			ServiceKeyOwners::<T>::remove(record.service_key.key_id());
			ServiceKeyOwners::<T>::insert(k.key_id(), &who);
			record.service_key = k;
		}
		Providers::<T>::insert(&who, record);
		Self::deposit_event(Event::ProviderUpdated { provider: who });
		Ok(())
	}

	pub(crate) fn do_bond_extra(who: T::AccountId, amount: BalanceOf<T>) -> DispatchResult {
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		let mut record = Providers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
		ensure!(record.status == ProviderStatus::Registered, Error::<T>::ProviderDeregistered);
		record.stake = record.stake.checked_add(&amount).ok_or(Error::<T>::Overflow)?;
		Self::ensure_can_hold(&who, amount)?;

		T::Currency::hold(&Self::hold_reason(), &who, amount)?;
		let stake = record.stake;
		Providers::<T>::insert(&who, record);
		Self::deposit_event(Event::StakeBonded { provider: who, amount, stake });
		Ok(())
	}

	fn unlock_block() -> BlockNumberFor<T> {
		frame_system::Pallet::<T>::block_number().saturating_add(T::UnbondingPeriod::get())
	}

	pub(crate) fn do_unbond(who: T::AccountId, amount: BalanceOf<T>) -> DispatchResult {
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		let mut record = Providers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
		ensure!(record.status == ProviderStatus::Registered, Error::<T>::ProviderDeregistered);
		record.stake = record.stake.checked_sub(&amount).ok_or(Error::<T>::UnbondTooLarge)?;
		let unlock_at = Self::unlock_block();
		record
			.unbonding
			.try_push(UnbondingChunk { amount, unlock_at })
			.map_err(|_| Error::<T>::TooManyUnbondingChunks)?;

		let stake = record.stake;
		Providers::<T>::insert(&who, record);
		Self::deposit_event(Event::StakeUnbonded { provider: who, amount, unlock_at, stake });
		Ok(())
	}

	pub(crate) fn do_deregister(who: T::AccountId) -> DispatchResult {
		let mut record = Providers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
		ensure!(record.status == ProviderStatus::Registered, Error::<T>::ProviderDeregistered);
		let unlock_at = Self::unlock_block();
		if !record.stake.is_zero() {
			record
				.unbonding
				.try_push(UnbondingChunk { amount: record.stake, unlock_at })
				.map_err(|_| Error::<T>::TooManyUnbondingChunks)?;
			record.stake = Zero::zero();
		}
		record.status = ProviderStatus::Deregistered;
		Providers::<T>::insert(&who, record);
		Self::deposit_event(Event::ProviderDeregistered { provider: who, unlock_at });
		Ok(())
	}

	pub(crate) fn do_withdraw_unbonded(who: T::AccountId) -> DispatchResult {
		let mut record = Providers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
		let now = frame_system::Pallet::<T>::block_number();
		let mut amount: BalanceOf<T> = Zero::zero();
		for chunk in record.unbonding.iter().filter(|c| c.unlock_at <= now) {
			amount = amount.checked_add(&chunk.amount).ok_or(Error::<T>::Overflow)?;
		}
		let removable = record.status == ProviderStatus::Deregistered
			&& record.stake.is_zero()
			&& record.unbonding.iter().all(|c| c.unlock_at <= now);
		// A deregistered provider whose stake was slashed to nothing has nothing to release
		// but must still be removable.
		ensure!(!amount.is_zero() || removable, Error::<T>::NothingToWithdraw);

		T::Currency::release(&Self::hold_reason(), &who, amount, Precision::Exact)?;
		record.unbonding.retain(|c| c.unlock_at > now);
		if !amount.is_zero() {
			Self::deposit_event(Event::StakeWithdrawn { provider: who.clone(), amount });
		}
		if removable {
			ServiceKeyOwners::<T>::remove(record.service_key.key_id());
			Providers::<T>::remove(&who);
			ProviderCount::<T>::mutate(|c| *c = c.saturating_sub(1));
			Self::deposit_event(Event::ProviderRemoved { provider: who });
		} else {
			Providers::<T>::insert(&who, record);
		}
		Ok(())
	}

	/// Slashes exactly `amount` from `who`: bonded stake first, then unbonding chunks from
	/// the newest. The entry point for root's `force_slash` and for future evidence-based
	/// slashing ([`ProviderSlashing`]).
	pub fn do_slash(who: &T::AccountId, amount: BalanceOf<T>, reason: SlashReasonOf<T>) -> DispatchResult {
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		let mut record = Providers::<T>::get(who).ok_or(Error::<T>::NotRegistered)?;
		ensure!(amount <= record.total_held(), Error::<T>::SlashTooLarge);

		let mut rest = amount;
		let from_stake = rest.min(record.stake);
		record.stake = record.stake.saturating_sub(from_stake);
		rest = rest.saturating_sub(from_stake);
		for chunk in record.unbonding.iter_mut().rev() {
			let take = rest.min(chunk.amount);
			chunk.amount = chunk.amount.saturating_sub(take);
			rest = rest.saturating_sub(take);
		}
		record.unbonding.retain(|c| !c.amount.is_zero());

		let reason_id = Self::hold_reason();
		let destination = T::SlashDestination::get();
		match &destination {
			Some(dest) => {
				T::Currency::transfer_on_hold(
					&reason_id,
					who,
					dest,
					amount,
					Precision::Exact,
					Restriction::Free,
					Fortitude::Force,
				)?;
			},
			None => {
				T::Currency::burn_held(&reason_id, who, amount, Precision::Exact, Fortitude::Force)?;
			},
		}
		Providers::<T>::insert(who, record);
		Self::deposit_event(Event::ProviderSlashed { provider: who.clone(), amount, reason, destination });
		Ok(())
	}

	/// Whether `who` is an active provider (registered, stake at least `MinStake`).
	pub fn is_active(who: &T::AccountId) -> bool {
		Providers::<T>::get(who).is_some_and(|r| r.is_active(T::MinStake::get()))
	}

	/// The pallet's invariants:
	/// - every provider's hold equals its bonded stake plus its unbonding chunks;
	/// - [`ProviderCount`] equals the number of providers;
	/// - every provider's service key maps back to it, and no other key maps anywhere;
	/// - unbonding chunks are never zero and never more than the bound.
	#[cfg(any(feature = "try-runtime", test))]
	pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
		let mut count = 0u32;
		for (who, record) in Providers::<T>::iter() {
			count += 1;
			let held = T::Currency::balance_on_hold(&Self::hold_reason(), &who);
			ensure!(held == record.total_held(), "provider hold differs from its recorded stake");
			ensure!(
				ServiceKeyOwners::<T>::get(record.service_key.key_id()).as_ref() == Some(&who),
				"service key owner missing"
			);
			ensure!(record.unbonding.iter().all(|c| !c.amount.is_zero()), "empty unbonding chunk");
		}
		ensure!(count == ProviderCount::<T>::get(), "ProviderCount is wrong");
		ensure!(ServiceKeyOwners::<T>::iter().count() as u32 == count, "dangling service key owners");
		Ok(())
	}
}

impl<T: Config> ProviderRegistry<T::AccountId, BalanceOf<T>> for Pallet<T> {
	fn provider(who: &T::AccountId) -> Option<ProviderSummary<BalanceOf<T>>> {
		Providers::<T>::get(who).map(|r| ProviderSummary {
			services: r.services,
			prices: r.prices,
			active: r.is_active(T::MinStake::get()),
			service_key: r.service_key,
		})
	}

	#[cfg(feature = "runtime-benchmarks")]
	fn register_for_benchmarks(who: &T::AccountId, prices: Prices<BalanceOf<T>>) -> DispatchResult {
		use sp_runtime::traits::Hash;
		let seed = who.using_encoded(sp_runtime::traits::BlakeTwo256::hash);
		let mut key = [0u8; interlattice_pq_crypto::ML_DSA_65_PUBLIC_KEY_LEN];
		key[..32].copy_from_slice(seed.as_ref());
		let endpoint: crate::EndpointOf<T> =
			alloc::vec![b'e'; 16].try_into().map_err(|_| Error::<T>::InvalidEndpoint)?;
		Self::do_register(
			who.clone(),
			Services::Both,
			alloc::vec![endpoint].try_into().map_err(|_| Error::<T>::InvalidEndpoint)?,
			crate::Location { country: *b"DE", region: Default::default(), hosting: crate::Hosting::Datacenter },
			prices,
			MlDsaPublicKey(key),
			T::MinStake::get(),
		)
	}
}

impl<T: Config> ProviderSlashing<T::AccountId, BalanceOf<T>> for Pallet<T> {
	fn slash(who: &T::AccountId, amount: BalanceOf<T>, reason: &[u8]) -> Result<(), DispatchError> {
		let reason: SlashReasonOf<T> = reason.to_vec().try_into().map_err(|_| Error::<T>::SlashReasonTooLong)?;
		Self::do_slash(who, amount, reason)
	}
}
