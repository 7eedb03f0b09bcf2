//! Benchmarks of every call, at their worst case (full endpoint lists, longest strings, the
//! most unbonding chunks).

use frame_benchmarking::v2::*;
use frame_support::traits::fungible::Mutate;
use frame_system::RawOrigin;
use interlattice_pq_crypto::MlDsaPublicKey;
use sp_runtime::traits::{Bounded, Saturating};

use frame_support::traits::Get;

use crate::*;

fn funded<T: Config>(name: &'static str, index: u32) -> T::AccountId {
	let who: T::AccountId = account(name, index, 0);
	T::Currency::set_balance(&who, BalanceOf::<T>::max_value() / 4u32.into());
	who
}

fn service_key(n: u32) -> MlDsaPublicKey {
	let mut key = [7u8; interlattice_pq_crypto::ML_DSA_65_PUBLIC_KEY_LEN];
	key[..4].copy_from_slice(&n.to_le_bytes());
	MlDsaPublicKey(key)
}

fn max_endpoints<T: Config>() -> EndpointsOf<T> {
	let one: EndpointOf<T> = alloc::vec![b'e'; T::MaxEndpointLen::get() as usize].try_into().unwrap();
	alloc::vec![one; T::MaxEndpoints::get() as usize].try_into().unwrap()
}

fn max_location<T: Config>() -> LocationOf<T> {
	Location {
		country: *b"DE",
		region: alloc::vec![b'r'; T::MaxRegionLen::get() as usize].try_into().unwrap(),
		hosting: Hosting::Residential,
	}
}

fn stake<T: Config>() -> BalanceOf<T> {
	T::MinStake::get().saturating_mul(10u32.into())
}

fn registered<T: Config>(index: u32) -> T::AccountId {
	let who = funded::<T>("provider", index);
	Pallet::<T>::do_register(
		who.clone(),
		Services::Both,
		max_endpoints::<T>(),
		max_location::<T>(),
		Prices::default(),
		service_key(index),
		stake::<T>(),
	)
	.unwrap();
	who
}

/// Fills the provider's unbonding chunks up to one below the bound.
fn with_chunks<T: Config>(who: &T::AccountId) {
	for _ in 1..T::MaxUnbondingChunks::get() {
		Pallet::<T>::do_unbond(who.clone(), 1u32.into()).unwrap();
	}
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn register_provider() {
		let who = funded::<T>("provider", 0);
		#[extrinsic_call]
		_(
			RawOrigin::Signed(who.clone()),
			Services::Both,
			max_endpoints::<T>(),
			max_location::<T>(),
			Prices::default(),
			alloc::boxed::Box::new(service_key(0)),
			stake::<T>(),
		);
		assert!(Providers::<T>::contains_key(&who));
	}

	#[benchmark]
	fn update_provider() {
		let who = registered::<T>(0);
		#[extrinsic_call]
		_(
			RawOrigin::Signed(who.clone()),
			Some(Services::Vpn),
			Some(max_endpoints::<T>()),
			Some(max_location::<T>()),
			Some(Prices::default()),
			Some(alloc::boxed::Box::new(service_key(1))),
		);
		assert_eq!(Providers::<T>::get(&who).unwrap().service_key, service_key(1));
	}

	#[benchmark]
	fn bond_extra() {
		let who = registered::<T>(0);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), T::MinStake::get());
		assert_eq!(Providers::<T>::get(&who).unwrap().stake, stake::<T>() + T::MinStake::get());
	}

	#[benchmark]
	fn unbond() {
		let who = registered::<T>(0);
		with_chunks::<T>(&who);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), 1u32.into());
		assert_eq!(Providers::<T>::get(&who).unwrap().unbonding.len() as u32, T::MaxUnbondingChunks::get());
	}

	#[benchmark]
	fn withdraw_unbonded() {
		// Worst case: a deregistered provider with full chunks, all unlocked, is removed.
		let who = registered::<T>(0);
		with_chunks::<T>(&who);
		Pallet::<T>::do_deregister(who.clone()).unwrap();
		let later = frame_system::Pallet::<T>::block_number().saturating_add(T::UnbondingPeriod::get());
		frame_system::Pallet::<T>::set_block_number(later);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert!(!Providers::<T>::contains_key(&who));
	}

	#[benchmark]
	fn deregister_provider() {
		let who = registered::<T>(0);
		with_chunks::<T>(&who);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert_eq!(Providers::<T>::get(&who).unwrap().status, ProviderStatus::Deregistered);
	}

	#[benchmark]
	fn force_slash() {
		// Worst case: the slash runs through the stake and every chunk.
		let who = registered::<T>(0);
		with_chunks::<T>(&who);
		let total = Providers::<T>::get(&who).unwrap().total_held();
		let reason: SlashReasonOf<T> = alloc::vec![b's'; T::MaxSlashReasonLen::get() as usize].try_into().unwrap();
		#[extrinsic_call]
		_(RawOrigin::Root, who.clone(), total, reason);
		assert!(Providers::<T>::get(&who).unwrap().total_held() == 0u32.into());
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext_for_benchmarks(), crate::mock::Test);
}
