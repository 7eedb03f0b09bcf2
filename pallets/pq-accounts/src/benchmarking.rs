//! Benchmarks of every call at its worst case. `bind_key` verifies a real ML-DSA-65 binding
//! proof (made in the set-up by the benchmark-only signing host function) and replaces a key
//! whose deposit another account paid.

use alloc::boxed::Box;
use frame_benchmarking::v2::*;
use frame_support::traits::{
	fungible::{Mutate, MutateHold},
	Get,
};
use frame_system::{pallet_prelude::BlockNumberFor, RawOrigin};
use interlattice_pq_crypto::{account, benchmark_sign};
use sp_runtime::{traits::Zero, Saturating};

use crate::*;

fn funded<T: Config>(name: &'static str, index: u32) -> T::AccountId {
	let who: T::AccountId = account(name, index, 0);
	T::Currency::set_balance(
		&who,
		T::KeyDeposit::get().saturating_mul(1_000u32.into()).saturating_add(1_000_000u32.into()),
	);
	who
}

#[benchmarks]
mod benches {
	use super::*;

	#[benchmark]
	fn register_key() {
		let payer = funded::<T>("payer", 0);
		let (public_key, _) = benchmark_sign([1; 32], b"").expect("a 32-byte seed; qed");
		#[extrinsic_call]
		_(RawOrigin::Signed(payer), Box::new(public_key.clone()));
		assert!(AccountKeys::<T>::contains_key(T::AccountId::from(account::account_id(&public_key))));
	}

	#[benchmark]
	fn bind_key() {
		let who = funded::<T>("classical", 0);
		let other = funded::<T>("other", 0);
		let genesis: [u8; 32] = frame_system::Pallet::<T>::block_hash(BlockNumberFor::<T>::zero())
			.as_ref()
			.try_into()
			.expect("32-byte hashes; qed");
		let (old_key, _) = benchmark_sign([2; 32], b"").expect("a 32-byte seed; qed");
		let deposit = T::KeyDeposit::get();
		T::Currency::hold(&HoldReason::AccountKey.into(), &other, deposit).expect("funded above; qed");
		AccountKeys::<T>::insert(&who, AccountKey { public_key: old_key, locked: false, depositor: other, deposit });
		let (public_key, proof) =
			benchmark_sign([3; 32], &account::binding_message(&genesis, who.as_ref())).expect("a 32-byte seed; qed");
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), Box::new(public_key), Box::new(proof), true);
		assert!(Pallet::<T>::is_locked(&who));
	}

	#[benchmark]
	fn lock() {
		let who = funded::<T>("classical", 0);
		let (public_key, _) = benchmark_sign([4; 32], b"").expect("a 32-byte seed; qed");
		AccountKeys::<T>::insert(
			&who,
			AccountKey { public_key, locked: false, depositor: who.clone(), deposit: Zero::zero() },
		);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert!(Pallet::<T>::is_locked(&who));
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
