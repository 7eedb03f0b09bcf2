//! Benchmarks of every call at its worst case. `settle_receipts` verifies `n` real ML-DSA-65
//! signatures (made in the set-up by the benchmark-only signing host function), each for a
//! different session, with a protocol fee to pay.

use alloc::vec::Vec;
use frame_benchmarking::v2::*;
use frame_support::traits::{fungible::Mutate, Get};
use frame_system::{pallet_prelude::BlockNumberFor, RawOrigin};
use interlattice_pq_crypto::{
	benchmark_sign,
	reveal::{MlKemCiphertext, MlKemEncapsulationKey, SealedEndpoint, SealedEndpointCiphertext},
	MlDsaPublicKey, SignedUsageReceipt, UsageReceipt,
};
use pallet_provider_registry::{Prices, ProviderRegistry, ServiceKind};
use sp_runtime::traits::{Saturating, Zero};

use crate::*;

const PRICES: Prices<u128> = Prices { per_gib: 1 << 30, per_hour: 3_600 };

fn funded<T: Config>(name: &'static str, index: u32) -> T::AccountId {
	let who: T::AccountId = account(name, index, 0);
	T::Currency::set_balance(&who, u128::MAX / 1024);
	who
}

fn provider<T: Config>() -> T::AccountId {
	let who = funded::<T>("provider", 0);
	if T::Registry::provider(&who).is_none() {
		T::Registry::register_for_benchmarks(&who, PRICES)
			.expect("the account was funded above the minimum stake and is not registered (checked above); qed");
	}
	who
}

fn seed(n: u32) -> [u8; 32] {
	let mut seed = [9u8; 32];
	seed[..4].copy_from_slice(&n.to_le_bytes());
	seed
}

fn deposit<T: Config>() -> u128 {
	T::MinDeposit::get().saturating_mul(1_000)
}

/// Opens a session for client `n` with the benchmark key of seed `n`; returns its id.
fn open<T: Config>(client: &T::AccountId, provider: &T::AccountId, key: MlDsaPublicKey) -> SessionId {
	Pallet::<T>::do_open_session(
		client.clone(),
		provider.clone(),
		ServiceKind::Vpn,
		key,
		PRICES,
		deposit::<T>(),
		T::MaxSessionDuration::get(),
	)
	.expect(
		"the provider is active and offers the VPN at PRICES, the client is funded far beyond the \
		 deposits and callers open fewer than MaxSessionsPerClient sessions per client, the \
		 duration is the maximum allowed; qed",
	)
}

/// A valid ML-KEM-768 encapsulation key (every coefficient zero passes the modulus check).
fn reveal_key() -> MlKemEncapsulationKey {
	MlKemEncapsulationKey([0u8; MlKemEncapsulationKey::LEN])
}

/// A sealed endpoint (its bytes do not matter to the runtime).
fn sealed() -> SealedEndpoint {
	SealedEndpoint {
		kem_ciphertext: MlKemCiphertext([7u8; MlKemCiphertext::LEN]),
		ciphertext: SealedEndpointCiphertext([8u8; SealedEndpointCiphertext::LEN]),
	}
}

/// Makes session `id` an unlisted one with an endpoint revealed (what finalization removes).
fn make_unlisted<T: Config>(id: SessionId) {
	RevealKeys::<T>::insert(id, reveal_key());
	SealedEndpoints::<T>::insert(id, sealed());
}

/// The benchmark key of seed `n`.
fn key(n: u32) -> MlDsaPublicKey {
	benchmark_sign(seed(n), b"")
		.expect("benchmarks run in a node that registers the benchmark signing host function; qed")
		.0
}

/// A receipt for `session_id` worth half the deposit, signed with the key of seed `n`.
fn signed_receipt<T: Config>(n: u32, session_id: SessionId) -> SignedUsageReceipt {
	let amount = deposit::<T>() / 2;
	let session = Sessions::<T>::get(session_id).expect("the benchmark opened the session; qed");
	let receipt = UsageReceipt {
		genesis_hash: Pallet::<T>::genesis_hash(),
		provider: account_bytes(&session.provider),
		session_id,
		session_nonce: session.nonce,
		sequence: 1,
		bytes: amount as u64,
		seconds: 0,
		amount,
	};
	let (_, signature) = benchmark_sign(seed(n), &receipt.signing_payload()).expect("benchmark signing");
	SignedUsageReceipt { receipt, signature }
}

/// The provider's settler account, designated (the worst case of the origin check: one more
/// storage read than the provider itself).
fn settler<T: Config>(provider: &T::AccountId) -> T::AccountId {
	let settler = funded::<T>("settler", 0);
	Settlers::<T>::insert(provider, &settler);
	settler
}

#[benchmarks]
mod benchmarks {
	use super::*;

	/// The client has `MaxSessionsPerClient - 1` sessions already.
	#[benchmark]
	fn open_session() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		for _ in 1..T::MaxSessionsPerClient::get() {
			open::<T>(&client, &provider, key(0));
		}
		let client_key = alloc::boxed::Box::new(key(0));

		#[extrinsic_call]
		_(
			RawOrigin::Signed(client.clone()),
			provider,
			ServiceKind::Vpn,
			client_key,
			PRICES,
			deposit::<T>(),
			T::MaxSessionDuration::get(),
		);

		assert_eq!(ClientSessions::<T>::get(&client).len() as u32, T::MaxSessionsPerClient::get());
	}

	#[benchmark]
	fn top_up_deposit() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));

		#[extrinsic_call]
		_(RawOrigin::Signed(client), id, deposit::<T>());

		assert_eq!(Sessions::<T>::get(id).map(|s| s.deposit), Some(deposit::<T>() * 2));
	}

	/// One receipt, valid, with a protocol fee to pay.
	#[benchmark]
	fn settle_receipt() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));
		let receipt = alloc::boxed::Box::new(signed_receipt::<T>(0, id));
		let settler = settler::<T>(&provider);

		#[extrinsic_call]
		_(RawOrigin::Signed(settler), receipt);

		assert_eq!(Sessions::<T>::get(id).map(|s| s.sequence), Some(1));
	}

	/// `n` receipts for `n` sessions of `n` clients, all valid.
	#[benchmark]
	fn settle_receipts(n: Linear<1, { T::MaxReceiptsPerBatch::get() }>) {
		let provider = provider::<T>();
		let mut receipts = Vec::new();
		for i in 0..n {
			let client = funded::<T>("client", i);
			let id = open::<T>(&client, &provider, key(i));
			receipts.push(signed_receipt::<T>(i, id));
		}
		let receipts: frame_support::BoundedVec<_, T::MaxReceiptsPerBatch> =
			receipts.try_into().expect("n is within the bound");
		let settler = settler::<T>(&provider);

		#[extrinsic_call]
		_(RawOrigin::Signed(settler), receipts);

		for i in 0..n {
			let s = Sessions::<T>::get(u64::from(i)).expect("session exists");
			assert_eq!(s.sequence, 1, "every receipt settled");
		}
	}

	/// The provider closes: the session is finalized at once (the costlier branch).
	#[benchmark]
	fn close_session() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));
		make_unlisted::<T>(id);
		Pallet::<T>::do_settle(&provider, &signed_receipt::<T>(0, id)).expect("settles");

		#[extrinsic_call]
		_(RawOrigin::Signed(provider), id);

		assert!(Sessions::<T>::get(id).is_none());
	}

	#[benchmark]
	fn finalize_session() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));
		make_unlisted::<T>(id);
		Pallet::<T>::do_settle(&provider, &signed_receipt::<T>(0, id)).expect("settles");
		let end: BlockNumberFor<T> = frame_system::Pallet::<T>::block_number()
			.saturating_add(T::MaxSessionDuration::get())
			.saturating_add(T::SettlementWindow::get())
			.saturating_add(1u32.into());
		frame_system::Pallet::<T>::set_block_number(end);
		let caller = funded::<T>("caller", 0);

		#[extrinsic_call]
		_(RawOrigin::Signed(caller), id);

		assert!(Sessions::<T>::get(id).is_none());
		assert!(!BlockNumberFor::<T>::is_zero(&end));
	}

	#[benchmark]
	fn set_settler() {
		let provider = provider::<T>();
		let settler = funded::<T>("settler", 0);

		#[extrinsic_call]
		_(RawOrigin::Signed(provider.clone()), Some(settler.clone()));

		assert_eq!(Settlers::<T>::get(&provider), Some(settler));
	}

	/// The client has `MaxSessionsPerClient - 1` sessions already; the key passes the
	/// modulus check (all of it is read).
	#[benchmark]
	fn open_unlisted_session() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		for _ in 1..T::MaxSessionsPerClient::get() {
			open::<T>(&client, &provider, key(0));
		}
		let client_key = alloc::boxed::Box::new(key(0));

		#[extrinsic_call]
		_(
			RawOrigin::Signed(client.clone()),
			provider,
			ServiceKind::Vpn,
			client_key,
			PRICES,
			deposit::<T>(),
			T::MaxSessionDuration::get(),
			alloc::boxed::Box::new(reveal_key()),
		);

		let id = NextSessionId::<T>::get() - 1;
		assert!(RevealKeys::<T>::contains_key(id));
	}

	/// By the settler (one more read than by the provider), replacing an earlier reveal.
	#[benchmark]
	fn reveal_endpoint() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));
		make_unlisted::<T>(id);
		let settler = settler::<T>(&provider);

		#[extrinsic_call]
		_(RawOrigin::Signed(settler), id, alloc::boxed::Box::new(sealed()));

		assert!(SealedEndpoints::<T>::contains_key(id));
	}

	#[benchmark]
	fn report_unreachable() {
		let provider = provider::<T>();
		let client = funded::<T>("client", 0);
		let id = open::<T>(&client, &provider, key(0));
		make_unlisted::<T>(id);

		#[extrinsic_call]
		_(RawOrigin::Signed(client), id);

		assert!(SealedEndpoints::<T>::contains_key(id));
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext().0, crate::mock::Test);
}
