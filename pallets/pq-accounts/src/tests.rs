//! The pallet against hostile callers: keys registered twice or without the means to pay,
//! binding proofs by another key, for another account or another chain, locks undone.

use frame_support::{assert_noop, assert_ok, traits::fungible::InspectHold};
use interlattice_pq_crypto::{account, keys::MlDsaKeyPair};

use crate::{mock::*, AccountKeys, Error, Event, HoldReason};

fn key(n: u8) -> MlDsaKeyPair {
	MlDsaKeyPair::from_seed([n; 32])
}

fn genesis() -> [u8; 32] {
	System::block_hash(0).0
}

fn proof(pair: &MlDsaKeyPair, genesis: [u8; 32], who: &AccountId) -> Box<interlattice_pq_crypto::MlDsaSignature> {
	Box::new(pair.sign(&account::binding_message(&genesis, who.as_ref())).unwrap())
}

fn held(who: &AccountId) -> Balance {
	Balances::balance_on_hold(&HoldReason::AccountKey.into(), who)
}

fn ml_dsa_account(pair: &MlDsaKeyPair) -> AccountId {
	AccountId::new(account::account_id(pair.public()))
}

#[test]
fn anyone_registers_an_ml_dsa_accounts_key_once_and_pays_its_deposit() {
	new_test_ext().execute_with(|| {
		let pair = key(7);
		let account = ml_dsa_account(&pair);
		assert_ok!(PqAccounts::register_key(RuntimeOrigin::signed(classical(1)), Box::new(pair.public().clone())));
		let record = AccountKeys::<Test>::get(&account).unwrap();
		assert_eq!(record.public_key, pair.public().clone());
		assert!(record.locked, "an ML-DSA account is locked from the start");
		assert_eq!(record.depositor, classical(1));
		assert_eq!(held(&classical(1)), KEY_DEPOSIT);
		System::assert_last_event(Event::KeyRegistered { account: account.clone(), depositor: classical(1) }.into());
		// Nobody registers it again, not even to take over the deposit.
		assert_noop!(
			PqAccounts::register_key(RuntimeOrigin::signed(classical(2)), Box::new(pair.public().clone())),
			Error::<Test>::KeyAlreadyRegistered
		);
		PqAccounts::do_try_state().unwrap();
	});
}

#[test]
fn a_caller_who_cannot_pay_the_deposit_changes_nothing() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			PqAccounts::register_key(RuntimeOrigin::signed(classical(3)), Box::new(key(7).public().clone())),
			Error::<Test>::CannotPayDeposit
		);
		let pair = key(8);
		assert_noop!(
			PqAccounts::bind_key(
				RuntimeOrigin::signed(classical(3)),
				Box::new(pair.public().clone()),
				proof(&pair, genesis(), &classical(3)),
				true
			),
			Error::<Test>::CannotPayDeposit
		);
	});
}

#[test]
fn a_binding_proof_by_another_key_for_another_account_or_chain_is_refused() {
	new_test_ext().execute_with(|| {
		let pair = key(9);
		let who = classical(1);
		// Signed by another key.
		assert_noop!(
			PqAccounts::bind_key(
				RuntimeOrigin::signed(who.clone()),
				Box::new(pair.public().clone()),
				proof(&key(10), genesis(), &who),
				false
			),
			Error::<Test>::BadBindingProof
		);
		// A proof made for account 2, replayed by account 1 (binding someone else's key).
		assert_noop!(
			PqAccounts::bind_key(
				RuntimeOrigin::signed(who.clone()),
				Box::new(pair.public().clone()),
				proof(&pair, genesis(), &classical(2)),
				false
			),
			Error::<Test>::BadBindingProof
		);
		// A proof made for another chain.
		assert_noop!(
			PqAccounts::bind_key(
				RuntimeOrigin::signed(who.clone()),
				Box::new(pair.public().clone()),
				proof(&pair, [1; 32], &who),
				false
			),
			Error::<Test>::BadBindingProof
		);
		// A proof under another context (an arbitrary-message signature of the same bytes).
		let message = Box::new(pair.sign_message(&account::binding_message(&genesis(), who.as_ref())).unwrap());
		assert_noop!(
			PqAccounts::bind_key(RuntimeOrigin::signed(who.clone()), Box::new(pair.public().clone()), message, false),
			Error::<Test>::BadBindingProof
		);
		assert_ok!(PqAccounts::bind_key(
			RuntimeOrigin::signed(who.clone()),
			Box::new(pair.public().clone()),
			proof(&pair, genesis(), &who),
			false
		));
		assert_eq!(PqAccounts::transaction_key(&who), Some(pair.public().clone()));
		assert!(!PqAccounts::is_locked(&who));
		System::assert_last_event(Event::KeyBound { account: who.clone(), locked: false }.into());
		assert_eq!(held(&who), KEY_DEPOSIT);
		PqAccounts::do_try_state().unwrap();
	});
}

#[test]
fn the_lock_is_one_way() {
	new_test_ext().execute_with(|| {
		let who = classical(1);
		assert_noop!(PqAccounts::lock(RuntimeOrigin::signed(who.clone())), Error::<Test>::NoKey);
		let pair = key(11);
		assert_ok!(PqAccounts::bind_key(
			RuntimeOrigin::signed(who.clone()),
			Box::new(pair.public().clone()),
			proof(&pair, genesis(), &who),
			false
		));
		assert_ok!(PqAccounts::lock(RuntimeOrigin::signed(who.clone())));
		System::assert_last_event(Event::AccountLocked { account: who.clone() }.into());
		assert!(PqAccounts::is_locked(&who));
		assert_noop!(PqAccounts::lock(RuntimeOrigin::signed(who.clone())), Error::<Test>::AlreadyLocked);
		// Replacing the key (which only an ML-DSA signature can reach once locked) keeps the
		// lock, whatever `lock` says.
		let next = key(12);
		assert_ok!(PqAccounts::bind_key(
			RuntimeOrigin::signed(who.clone()),
			Box::new(next.public().clone()),
			proof(&next, genesis(), &who),
			false
		));
		assert!(PqAccounts::is_locked(&who));
		assert_eq!(PqAccounts::transaction_key(&who), Some(next.public().clone()));
		assert_eq!(held(&who), KEY_DEPOSIT, "the deposit is held once");
		PqAccounts::do_try_state().unwrap();
	});
}

#[test]
fn binding_and_locking_in_one_call_and_an_ml_dsa_account_never_unlocks() {
	new_test_ext().execute_with(|| {
		let who = classical(2);
		let pair = key(13);
		assert_ok!(PqAccounts::bind_key(
			RuntimeOrigin::signed(who.clone()),
			Box::new(pair.public().clone()),
			proof(&pair, genesis(), &who),
			true
		));
		assert!(PqAccounts::is_locked(&who));
		System::assert_last_event(Event::AccountLocked { account: who.clone() }.into());

		// An ML-DSA account whose key someone else registered, rotating to a new key: its old
		// depositor gets the deposit back, the account pays its own, and it stays locked.
		let ml = key(14);
		let account = ml_dsa_account(&ml);
		assert_ok!(PqAccounts::register_key(RuntimeOrigin::signed(classical(1)), Box::new(ml.public().clone())));
		assert_ok!(<Balances as frame_support::traits::fungible::Mutate<_>>::mint_into(&account, 5_000));
		let next = key(15);
		assert_ok!(PqAccounts::bind_key(
			RuntimeOrigin::signed(account.clone()),
			Box::new(next.public().clone()),
			proof(&next, genesis(), &account),
			false
		));
		assert!(PqAccounts::is_locked(&account));
		assert_eq!(held(&classical(1)), 0);
		assert_eq!(held(&account), KEY_DEPOSIT);
		PqAccounts::do_try_state().unwrap();
	});
}
