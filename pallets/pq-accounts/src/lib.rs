#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;

pub mod weights;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

pub use weights::WeightInfo;

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};

/// `InvalidTransaction::Custom` code with which the runtime refuses, before the pool, a
/// classical (sr25519, ed25519, ecdsa) signature for a locked account: sign with the
/// account's ML-DSA key. Chosen far from the small codes other checks use (the escrow's
/// `CheckReceipts` uses its error indices).
pub const VALIDITY_ACCOUNT_LOCKED: u8 = 240;
/// `InvalidTransaction::Custom` code with which the runtime refuses, before the pool, an
/// `MlDsa65` signature for an account whose key is not on chain: send the key along
/// (`MlDsa65WithKey`) to register it, or bind one.
pub const VALIDITY_UNKNOWN_KEY: u8 = 241;
use interlattice_pq_crypto::MlDsaPublicKey;
use scale_info::TypeInfo;

/// The ML-DSA-65 transaction key of an account.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
pub struct AccountKey<AccountId, Balance> {
	/// The key ML-DSA-65 transaction signatures of the account are verified with.
	pub public_key: MlDsaPublicKey,
	/// Whether only ML-DSA signatures may act for the account. Always true for an ML-DSA
	/// account (one whose id is derived from a key); set for a classical account by
	/// `bind_key(.., lock: true)` or `lock`, and never cleared.
	pub locked: bool,
	/// Who paid the storage deposit (held from it for as long as the key is stored).
	pub depositor: AccountId,
	/// The deposit held.
	pub deposit: Balance,
}

#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use alloc::boxed::Box;
	use frame_support::{
		pallet_prelude::*,
		traits::{
			fungible::{Inspect, InspectHold, Mutate, MutateHold},
			tokens::Precision,
		},
	};
	use frame_system::pallet_prelude::*;
	use interlattice_pq_crypto::{account, MlDsaSignature};

	/// The balance type of the currency deposits are held in.
	pub type BalanceOf<T> = <<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;
	/// The stored key record of this runtime.
	pub type AccountKeyOf<T> = AccountKey<<T as frame_system::Config>::AccountId, BalanceOf<T>>;

	#[pallet::pallet]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config<AccountId: From<[u8; 32]> + AsRef<[u8; 32]>> {
		/// The currency key deposits are held in.
		type Currency: InspectHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
			+ Mutate<Self::AccountId>
			+ MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>;

		/// The runtime's hold reason, which includes this pallet's.
		type RuntimeHoldReason: From<HoldReason>;

		/// Deposit held for each stored key (1,952 bytes of state plus the record).
		#[pallet::constant]
		type KeyDeposit: Get<BalanceOf<Self>>;

		/// Weights of the calls, from benchmarks.
		type WeightInfo: WeightInfo;
	}

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// The storage deposit of an ML-DSA transaction key.
		#[codec(index = 0)]
		AccountKey,
	}

	/// The ML-DSA-65 transaction key of each account that has one: every ML-DSA account whose
	/// key has been registered, and every classical account that bound one.
	#[pallet::storage]
	pub type AccountKeys<T: Config> = StorageMap<_, Blake2_128Concat, T::AccountId, AccountKeyOf<T>, OptionQuery>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// The key of the ML-DSA account `account` is on chain: its transactions carry only a
		/// signature from now on. `depositor` pays the storage deposit.
		KeyRegistered { account: T::AccountId, depositor: T::AccountId },
		/// The classical account `account` bound an ML-DSA key (or replaced its key): ML-DSA
		/// signatures by it act for the account. `locked`: whether classical signatures are
		/// refused from now on.
		KeyBound { account: T::AccountId, locked: bool },
		/// `account` is locked: only ML-DSA signatures act for it, for good.
		AccountLocked { account: T::AccountId },
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The ML-DSA account of this key already has its key on chain.
		KeyAlreadyRegistered,
		/// The proof is not the key's ML-DSA-65 signature of the binding message for this
		/// account on this chain (`docs/pq-accounts.md`).
		BadBindingProof,
		/// The account has no ML-DSA key: bind one first.
		NoKey,
		/// The account is already locked.
		AlreadyLocked,
		/// The caller cannot pay the key's storage deposit.
		CannotPayDeposit,
	}

	#[pallet::genesis_config]
	#[derive(frame_support::DefaultNoBound)]
	pub struct GenesisConfig<T: Config> {
		/// Keys of ML-DSA accounts registered at genesis (development accounts), without a
		/// deposit.
		pub keys: alloc::vec::Vec<MlDsaPublicKey>,
		#[serde(skip)]
		pub _config: core::marker::PhantomData<T>,
	}

	#[pallet::genesis_build]
	impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
		fn build(&self) {
			for public_key in &self.keys {
				let account = T::AccountId::from(account::account_id(public_key));
				assert!(!AccountKeys::<T>::contains_key(&account), "genesis registers a key twice");
				let record = AccountKey {
					public_key: public_key.clone(),
					locked: true,
					depositor: account.clone(),
					deposit: Zero::zero(),
				};
				AccountKeys::<T>::insert(account, record);
			}
		}
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		#[cfg(feature = "try-runtime")]
		fn try_state(_n: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state()
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Put the key of an ML-DSA account on chain, so that its transactions carry only the
		/// 3,309-byte signature, not the 1,952-byte key. The account id is derived from the key
		/// (`interlattice_pq_crypto::account::account_id`), so anyone may register it: the
		/// caller pays the deposit (`KeyDeposit`, held for as long as the key is stored). An
		/// ML-DSA account registers its own key with its first transaction, signed with the
		/// `MlDsa65WithKey` signature that carries the key.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::register_key())]
		pub fn register_key(origin: OriginFor<T>, public_key: Box<MlDsaPublicKey>) -> DispatchResult {
			let depositor = ensure_signed(origin)?;
			let public_key = *public_key;
			let account = T::AccountId::from(account::account_id(&public_key));
			ensure!(!AccountKeys::<T>::contains_key(&account), Error::<T>::KeyAlreadyRegistered);
			let deposit = T::KeyDeposit::get();
			T::Currency::hold(&HoldReason::AccountKey.into(), &depositor, deposit)
				.map_err(|_| Error::<T>::CannotPayDeposit)?;
			AccountKeys::<T>::insert(
				&account,
				AccountKey { public_key, locked: true, depositor: depositor.clone(), deposit },
			);
			Self::deposit_event(Event::KeyRegistered { account, depositor });
			Ok(())
		}

		/// Bind an ML-DSA key to the calling (classical) account, or replace its key: from
		/// then on ML-DSA signatures by the key act for the account too. Signed by both keys:
		/// the transaction by the account, and `proof` by the ML-DSA key (its signature of
		/// `binding_message(genesis hash, account)`, `docs/pq-accounts.md`). With `lock` the
		/// account is locked at once (see [`Pallet::lock`]). The caller pays the deposit. A
		/// locked account keeps its lock: replacing its key takes an ML-DSA signature, since
		/// classical ones no longer reach this call.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::bind_key())]
		pub fn bind_key(
			origin: OriginFor<T>,
			public_key: Box<MlDsaPublicKey>,
			proof: Box<MlDsaSignature>,
			lock: bool,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let public_key = *public_key;
			let genesis = frame_system::Pallet::<T>::block_hash(BlockNumberFor::<T>::zero());
			let genesis: [u8; 32] = genesis.as_ref().try_into().map_err(|_| Error::<T>::BadBindingProof)?;
			ensure!(account::verify_binding(&public_key, &genesis, who.as_ref(), &proof), Error::<T>::BadBindingProof);
			let previous = AccountKeys::<T>::get(&who);
			let deposit = T::KeyDeposit::get();
			let keep_hold = previous.as_ref().is_some_and(|p| p.depositor == who && p.deposit == deposit);
			if !keep_hold {
				T::Currency::ensure_can_hold(&HoldReason::AccountKey.into(), &who, deposit)
					.map_err(|_| Error::<T>::CannotPayDeposit)?;
				if let Some(p) = &previous {
					T::Currency::release(
						&HoldReason::AccountKey.into(),
						&p.depositor,
						p.deposit,
						Precision::BestEffort,
					)?;
				}
				T::Currency::hold(&HoldReason::AccountKey.into(), &who, deposit)
					.map_err(|_| Error::<T>::CannotPayDeposit)?;
			}
			// An ML-DSA account (id derived from a key) stays locked whatever `lock` says.
			let ml_dsa_account = who == T::AccountId::from(account::account_id(&public_key));
			let locked = lock || ml_dsa_account || previous.is_some_and(|p| p.locked);
			AccountKeys::<T>::insert(&who, AccountKey { public_key, locked, depositor: who.clone(), deposit });
			Self::deposit_event(Event::KeyBound { account: who.clone(), locked });
			if lock {
				Self::deposit_event(Event::AccountLocked { account: who });
			}
			Ok(())
		}

		/// Lock the calling account: from the next transaction on, classical signatures for it
		/// are refused before the pool (`InvalidTransaction::Custom(`[`VALIDITY_ACCOUNT_LOCKED`]`)`)
		/// and in blocks, and only its ML-DSA key acts for it. There
		/// is no unlock: a quantum adversary holding the classical key can do nothing with it.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::lock())]
		pub fn lock(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			AccountKeys::<T>::try_mutate(&who, |key| {
				let key = key.as_mut().ok_or(Error::<T>::NoKey)?;
				ensure!(!key.locked, Error::<T>::AlreadyLocked);
				key.locked = true;
				Ok::<_, DispatchError>(())
			})?;
			Self::deposit_event(Event::AccountLocked { account: who });
			Ok(())
		}
	}

	impl<T: Config> Pallet<T> {
		/// The ML-DSA key transactions of `who` are verified with, if any.
		pub fn transaction_key(who: &T::AccountId) -> Option<MlDsaPublicKey> {
			AccountKeys::<T>::get(who).map(|k| k.public_key)
		}

		/// Whether classical signatures for `who` are refused.
		pub fn is_locked(who: &T::AccountId) -> bool {
			AccountKeys::<T>::get(who).is_some_and(|k| k.locked)
		}

		/// Checks the pallet's invariants: each depositor's held balance covers the deposits
		/// of the keys it pays for, and every ML-DSA account's record is locked.
		#[cfg(any(feature = "try-runtime", test))]
		pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
			use alloc::collections::BTreeMap;
			use sp_runtime::Saturating;
			let mut owed: BTreeMap<T::AccountId, BalanceOf<T>> = BTreeMap::new();
			for (account, key) in AccountKeys::<T>::iter() {
				let entry = owed.entry(key.depositor.clone()).or_insert_with(Zero::zero);
				*entry = Saturating::saturating_add(*entry, key.deposit);
				if account == T::AccountId::from(account::account_id(&key.public_key)) {
					ensure!(key.locked, "an ML-DSA account's key record is not locked");
				}
			}
			for (depositor, sum) in owed {
				let held = T::Currency::balance_on_hold(&HoldReason::AccountKey.into(), &depositor);
				ensure!(held >= sum, "key deposits are not all held");
			}
			Ok(())
		}
	}
}
