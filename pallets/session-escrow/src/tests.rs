//! Unit tests: every call's success and every error path, with real ML-DSA-65 signatures;
//! invariants (`try_state`) checked after each; a property test over random operation
//! sequences.

use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
};
use interlattice_pq_crypto::{SignedUsageReceipt, UsageReceipt};
use pallet_provider_registry::{Prices, ServiceKind};
use sp_runtime::{DispatchError, Perbill};

use crate::{mock::*, *};

const LOOSE: Prices<Balance> = Prices { per_gib: u128::MAX, per_hour: u128::MAX };

fn open_with(client: AccountId, provider: AccountId, service: ServiceKind, key: u8, deposit: Balance) -> SessionId {
	let id = NextSessionId::<Test>::get();
	assert_ok!(Escrow::open_session(
		RuntimeOrigin::signed(client),
		provider,
		service,
		Box::new(client_key(key).public().clone()),
		LOOSE,
		deposit,
		100,
	));
	id
}

/// A VPN session of CLIENT (key 1) with a deposit of 1,000.
fn open_vpn() -> SessionId {
	open_with(CLIENT, VPN_PROVIDER, ServiceKind::Vpn, 1, 1_000)
}

/// A receipt for `session_id` naming its provider and nonce (zeros for a session that does
/// not exist).
fn receipt(session_id: SessionId, sequence: u64, bytes: u64, seconds: u64, amount: Balance) -> UsageReceipt {
	let (provider, session_nonce) =
		Sessions::<Test>::get(session_id).map(|s| (account_bytes(&s.provider), s.nonce)).unwrap_or_default();
	UsageReceipt { genesis_hash: GENESIS, provider, session_id, session_nonce, sequence, bytes, seconds, amount }
}

fn signed(key: u8, receipt: UsageReceipt) -> SignedUsageReceipt {
	let signature = client_key(key).sign(&receipt.signing_payload()).unwrap();
	SignedUsageReceipt { receipt, signature }
}

/// Settles `r` as its session's provider (VPN_PROVIDER for a session that does not exist).
fn settle(r: SignedUsageReceipt) -> sp_runtime::DispatchResult {
	let provider = Sessions::<Test>::get(r.receipt.session_id).map_or(VPN_PROVIDER, |s| s.provider);
	Escrow::settle_receipt(RuntimeOrigin::signed(provider), Box::new(r))
}

fn held(who: AccountId) -> Balance {
	Balances::balance_on_hold(&HoldReason::SessionDeposit.into(), &who)
}

fn free(who: AccountId) -> Balance {
	Balances::balance(&who)
}

fn session(id: SessionId) -> Session<Test> {
	Sessions::<Test>::get(id).expect("session exists")
}

fn run_to(n: u64) {
	System::set_block_number(n);
}

#[test]
fn open_session_holds_the_deposit_and_fixes_the_prices() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_eq!(id, 0);
		assert_eq!(held(CLIENT), 1_000);
		assert_eq!(free(CLIENT), INITIAL - 1_000);
		let s = session(id);
		assert_eq!((s.client, s.provider, s.service), (CLIENT, VPN_PROVIDER, ServiceKind::Vpn));
		assert_eq!((s.prices, s.deposit, s.settled, s.sequence), (VPN_PRICES, 1_000, 0, 0));
		assert_eq!((s.opened_at, s.expires_at, s.status), (1, 101, SessionStatus::Open));
		assert_eq!(s.client_key, *client_key(1).public());
		assert_eq!(ClientSessions::<Test>::get(CLIENT).into_inner(), vec![0]);
		assert!(ProviderSessions::<Test>::contains_key(VPN_PROVIDER, 0));
		System::assert_last_event(
			Event::SessionOpened {
				session_id: 0,
				client: CLIENT,
				provider: VPN_PROVIDER,
				service: ServiceKind::Vpn,
				prices: VPN_PRICES,
				deposit: 1_000,
				expires_at: 101,
				nonce: s.nonce,
			}
			.into(),
		);
		// Later price changes do not touch the open session.
		assert_ok!(Registry::update_provider(
			RuntimeOrigin::signed(VPN_PROVIDER),
			None,
			None,
			None,
			Some(Prices { per_gib: 1, per_hour: 1 }),
			None
		));
		assert_eq!(session(id).prices, VPN_PRICES);
	});
}

#[test]
fn open_session_fails_on_every_bad_input() {
	new_test_ext().execute_with(|| {
		let open = |client, provider, service, max: Prices<Balance>, deposit, duration| {
			Escrow::open_session(
				RuntimeOrigin::signed(client),
				provider,
				service,
				Box::new(client_key(1).public().clone()),
				max,
				deposit,
				duration,
			)
		};
		let vpn = ServiceKind::Vpn;
		assert_noop!(open(CLIENT, OTHER_CLIENT, vpn, LOOSE, 500, 10), Error::<Test>::ProviderNotFound);
		assert_noop!(open(CLIENT, VPN_PROVIDER, ServiceKind::Cdn, LOOSE, 500, 10), Error::<Test>::ServiceNotOffered);
		let cheap = Prices { per_gib: 1023, per_hour: 3600 };
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, cheap, 500, 10), Error::<Test>::PriceAboveMaximum);
		let cheap_time = Prices { per_gib: 1024, per_hour: 3599 };
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, cheap_time, 500, 10), Error::<Test>::PriceAboveMaximum);
		assert_ok!(open(CLIENT, VPN_PROVIDER, vpn, VPN_PRICES, 500, 10)); // exactly the maximum is fine
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, LOOSE, MIN_DEPOSIT - 1, 10), Error::<Test>::DepositTooLow);
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, LOOSE, 500, 0), Error::<Test>::InvalidDuration);
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, LOOSE, 500, MAX_DURATION + 1), Error::<Test>::InvalidDuration);
		assert_noop!(open(POOR, VPN_PROVIDER, vpn, LOOSE, 200, 10), Error::<Test>::InsufficientBalance);
		for _ in 1..MAX_SESSIONS {
			assert_ok!(open(CLIENT, VPN_PROVIDER, vpn, LOOSE, 100, 10));
		}
		assert_noop!(open(CLIENT, VPN_PROVIDER, vpn, LOOSE, 100, 10), Error::<Test>::TooManySessions);
		assert_noop!(
			Escrow::open_session(
				RuntimeOrigin::none(),
				VPN_PROVIDER,
				vpn,
				Box::new(client_key(1).public().clone()),
				LOOSE,
				100,
				10
			),
			DispatchError::BadOrigin
		);
		// A provider below the minimum stake is not active.
		assert_ok!(Registry::unbond(RuntimeOrigin::signed(VPN_PROVIDER), 9_500));
		assert_noop!(open(OTHER_CLIENT, VPN_PROVIDER, vpn, LOOSE, 500, 10), Error::<Test>::ProviderNotActive);
	});
}

#[test]
fn settle_pays_the_provider_exactly_the_difference() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		let provider_before = free(VPN_PROVIDER);
		// 10 MiB and 5 s cost at most 15.
		assert_ok!(settle(signed(1, receipt(id, 1, 10 * MIB, 5, 15))));
		assert_eq!(free(VPN_PROVIDER), provider_before + 15);
		assert_eq!(held(CLIENT), 985);
		System::assert_last_event(
			Event::ReceiptSettled {
				session_id: id,
				sequence: 1,
				bytes: 10 * MIB,
				seconds: 5,
				paid: 15,
				fee: 0,
				settled: 15,
			}
			.into(),
		);
		// The next cumulative receipt pays only the difference; sequence numbers may skip.
		assert_ok!(settle(signed(1, receipt(id, 7, 100 * MIB, 20, 110))));
		assert_eq!(free(VPN_PROVIDER), provider_before + 110);
		assert_eq!(held(CLIENT), 890);
		let s = session(id);
		assert_eq!((s.settled, s.sequence, s.bytes, s.seconds), (110, 7, 100 * MIB, 20));
		// A receipt may ask for less than the usage is worth (a discount); the same amount
		// again, with more usage, has nothing to pay.
		assert_noop!(settle(signed(1, receipt(id, 8, 200 * MIB, 20, 110))), Error::<Test>::ReceiptReplayed);
		assert_eq!(free(VPN_PROVIDER), provider_before + 110);
		// The settler the provider designates may submit on its behalf; the money still goes
		// to the provider.
		assert_ok!(Escrow::set_settler(RuntimeOrigin::signed(VPN_PROVIDER), Some(OTHER_CLIENT)));
		System::assert_last_event(Event::SettlerSet { provider: VPN_PROVIDER, settler: Some(OTHER_CLIENT) }.into());
		assert_ok!(Escrow::settle_receipt(
			RuntimeOrigin::signed(OTHER_CLIENT),
			Box::new(signed(1, receipt(id, 9, 200 * MIB, 21, 120)))
		));
		assert_eq!(free(VPN_PROVIDER), provider_before + 120);
		assert_eq!(free(OTHER_CLIENT), INITIAL);
	});
}

#[test]
fn only_the_provider_or_its_settler_settles() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		let r = signed(1, receipt(id, 1, MIB, 0, 1));
		for stranger in [CLIENT, OTHER_CLIENT, CDN_PROVIDER] {
			assert_noop!(
				Escrow::settle_receipt(RuntimeOrigin::signed(stranger), Box::new(r.clone())),
				Error::<Test>::NotSettler
			);
		}
		assert_ok!(Escrow::set_settler(RuntimeOrigin::signed(VPN_PROVIDER), Some(OTHER_CLIENT)));
		assert_ok!(Escrow::settle_receipt(RuntimeOrigin::signed(OTHER_CLIENT), Box::new(r)));
		// Removed again: only the provider.
		assert_ok!(Escrow::set_settler(RuntimeOrigin::signed(VPN_PROVIDER), None));
		let r2 = signed(1, receipt(id, 2, 2 * MIB, 0, 2));
		assert_noop!(
			Escrow::settle_receipt(RuntimeOrigin::signed(OTHER_CLIENT), Box::new(r2.clone())),
			Error::<Test>::NotSettler
		);
		assert_ok!(settle(r2));
		// Only a registered provider designates a settler.
		assert_noop!(Escrow::set_settler(RuntimeOrigin::signed(CLIENT), Some(CLIENT)), Error::<Test>::ProviderNotFound);
		// In a batch, another provider's receipt is rejected like any invalid one.
		let c = open_with(OTHER_CLIENT, CDN_PROVIDER, ServiceKind::Cdn, 3, 1_000);
		let batch = vec![signed(3, receipt(c, 1, MIB, 0, 2)), signed(1, receipt(id, 3, 3 * MIB, 0, 3))];
		assert_ok!(Escrow::settle_receipts(RuntimeOrigin::signed(VPN_PROVIDER), batch.try_into().unwrap()));
		assert_eq!((session(c).settled, session(id).settled), (0, 3));
	});
}

#[test]
fn settle_fails_unless_the_amount_grows() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		let r = signed(1, receipt(id, 5, MIB, 0, 1));
		assert_ok!(settle(r.clone()));
		assert_noop!(settle(r), Error::<Test>::ReceiptReplayed);
		// The same amount again, whatever the sequence and usage: nothing to pay.
		assert_noop!(settle(signed(1, receipt(id, 6, 2 * MIB, 0, 1))), Error::<Test>::ReceiptReplayed);
		// Less: refused.
		assert_noop!(settle(signed(1, receipt(id, 7, 2 * MIB, 0, 0))), Error::<Test>::ReceiptReplayed);
		// More, even with a lower sequence and less usage than the settled receipt: it pays the
		// difference (the amount decides; usage only has to justify it).
		assert_ok!(settle(signed(1, receipt(id, 2, MIB, 1, 2))));
		assert_eq!(session(id).settled, 2);
	});
}

/// The attack of issue 16: the client signs a receipt with its own session key that would
/// make itself the floor (sequence u64::MAX at the settled amount, or huge usage at amount 0
/// right after opening) and submits it. Before receipt format v2 it settled and blocked every
/// later receipt of the provider (`ReceiptReplayed`).
#[test]
fn a_client_cannot_poison_its_session() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		// Right after opening: u64::MAX usage for nothing.
		let poison = signed(1, receipt(id, u64::MAX, u64::MAX, u64::MAX, 0));
		assert_noop!(
			Escrow::settle_receipt(RuntimeOrigin::signed(CLIENT), Box::new(poison.clone())),
			Error::<Test>::NotSettler
		);
		// Even a provider tricked into submitting it settles nothing.
		assert_noop!(settle(poison), Error::<Test>::ReceiptReplayed);
		assert_ok!(settle(signed(1, receipt(id, 1, 10 * MIB, 0, 10))));
		// After a settlement: u64::MAX sequence at the settled amount.
		let poison = signed(1, receipt(id, u64::MAX, 10 * MIB, 0, 10));
		assert_noop!(
			Escrow::settle_receipt(RuntimeOrigin::signed(CLIENT), Box::new(poison.clone())),
			Error::<Test>::NotSettler
		);
		assert_noop!(settle(poison), Error::<Test>::ReceiptReplayed);
		// The provider's later receipts still settle in full.
		assert_ok!(settle(signed(1, receipt(id, 2, 50 * MIB, 0, 50))));
		assert_ok!(settle(signed(1, receipt(id, 3, 80 * MIB, 0, 80))));
		assert_eq!(session(id).settled, 80);
	});
}

#[test]
fn settle_fails_when_amount_exceeds_usage_times_price() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		// 10 MiB + 5 s are worth 15; 10 MiB - 1 byte + 5 s are worth 14 (rounded down).
		assert_noop!(settle(signed(1, receipt(id, 1, 10 * MIB, 5, 16))), Error::<Test>::AmountExceedsUsage);
		assert_noop!(settle(signed(1, receipt(id, 1, 10 * MIB - 1, 5, 15))), Error::<Test>::AmountExceedsUsage);
		assert_ok!(settle(signed(1, receipt(id, 1, 10 * MIB - 1, 5, 14))));
		// Usage so large that its price overflows u128 is refused, not wrapped.
		let cdn = open_with(OTHER_CLIENT, CDN_PROVIDER, ServiceKind::Cdn, 2, 1_000);
		assert_noop!(
			Escrow::settle_receipt(
				RuntimeOrigin::signed(CDN_PROVIDER),
				Box::new(signed(2, receipt(cdn, 1, u64::MAX, u64::MAX, 1_001)))
			),
			Error::<Test>::AmountExceedsDeposit
		);
	});
}

#[test]
fn settle_fails_when_amount_exceeds_deposit() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_noop!(settle(signed(1, receipt(id, 1, 2_000 * MIB, 0, 1_001))), Error::<Test>::AmountExceedsDeposit);
		assert_ok!(settle(signed(1, receipt(id, 1, 2_000 * MIB, 0, 1_000))));
		assert_eq!(held(CLIENT), 0);
	});
}

#[test]
fn settle_fails_with_the_wrong_signer_or_a_tampered_receipt() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_noop!(settle(signed(9, receipt(id, 1, MIB, 0, 1))), Error::<Test>::BadSignature);
		let mut tampered = signed(1, receipt(id, 1, MIB, 0, 1));
		tampered.receipt.bytes = 100 * MIB;
		tampered.receipt.amount = 100;
		assert_noop!(settle(tampered), Error::<Test>::BadSignature);
		let mut bad_sig = signed(1, receipt(id, 1, MIB, 0, 1));
		bad_sig.signature.0[100] ^= 1;
		assert_noop!(settle(bad_sig), Error::<Test>::BadSignature);
	});
}

#[test]
fn settle_fails_for_a_receipt_from_another_chain() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		let mut r = receipt(id, 1, MIB, 0, 1);
		r.genesis_hash = [0x43; 32];
		assert_noop!(settle(signed(1, r)), Error::<Test>::WrongChain);
	});
}

#[test]
fn a_receipt_for_one_session_never_settles_another() {
	new_test_ext().execute_with(|| {
		// The same client key for two sessions: the session id and nonce are inside the
		// signed bytes.
		let a = open_vpn();
		let b = open_vpn();
		assert_ne!(session(a).nonce, session(b).nonce);
		let mut moved = signed(1, receipt(a, 1, MIB, 0, 1));
		moved.receipt.session_id = b;
		assert_noop!(settle(moved.clone()), Error::<Test>::WrongSessionNonce);
		moved.receipt.session_nonce = session(b).nonce;
		assert_noop!(settle(moved), Error::<Test>::BadSignature);
		assert_noop!(settle(signed(1, receipt(99, 1, MIB, 0, 1))), Error::<Test>::SessionNotFound);
	});
}

/// A receipt binds its provider and its session's opening: after a relaunch from the same
/// genesis (or on another fork), a session with the same id but another opening refuses it.
#[test]
fn a_receipt_binds_the_provider_and_the_opening() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		let mut other_provider = receipt(id, 1, MIB, 0, 1);
		other_provider.provider = account_bytes(&CDN_PROVIDER);
		assert_noop!(settle(signed(1, other_provider)), Error::<Test>::WrongProvider);
		let mut other_opening = receipt(id, 1, MIB, 0, 1);
		other_opening.session_nonce = [7; 32];
		assert_noop!(settle(signed(1, other_opening)), Error::<Test>::WrongSessionNonce);
	});
	// Two chains from the same genesis: the same session id, different nonces (the parent
	// block differs).
	let nonce_at = |parent: [u8; 32]| {
		new_test_ext().execute_with(|| {
			frame_system::Pallet::<Test>::set_parent_hash(sp_core::H256(parent));
			let id = open_vpn();
			session(id).nonce
		})
	};
	assert_ne!(nonce_at([1; 32]), nonce_at([2; 32]));
}

#[test]
fn top_up_adds_to_the_deposit_while_open() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_ok!(Escrow::top_up_deposit(RuntimeOrigin::signed(CLIENT), id, 500));
		assert_eq!((session(id).deposit, held(CLIENT)), (1_500, 1_500));
		System::assert_last_event(Event::DepositToppedUp { session_id: id, amount: 500, deposit: 1_500 }.into());
		assert_noop!(Escrow::top_up_deposit(RuntimeOrigin::signed(OTHER_CLIENT), id, 5), Error::<Test>::NotClient);
		assert_noop!(Escrow::top_up_deposit(RuntimeOrigin::signed(CLIENT), id, 0), Error::<Test>::ZeroAmount);
		assert_noop!(
			Escrow::top_up_deposit(RuntimeOrigin::signed(CLIENT), id, INITIAL),
			Error::<Test>::InsufficientBalance
		);
		assert_noop!(Escrow::top_up_deposit(RuntimeOrigin::signed(CLIENT), 7, 5), Error::<Test>::SessionNotFound);
		// The larger deposit can be settled against.
		assert_ok!(settle(signed(1, receipt(id, 1, 1_500 * MIB, 0, 1_500))));
		assert_ok!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id));
		assert_noop!(Escrow::top_up_deposit(RuntimeOrigin::signed(CLIENT), id, 5), Error::<Test>::SessionClosing);
	});
}

#[test]
fn client_close_leaves_a_settlement_window_then_refunds() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_ok!(settle(signed(1, receipt(id, 1, 100 * MIB, 0, 100))));
		run_to(10);
		assert_ok!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id));
		System::assert_last_event(Event::SessionClosing { session_id: id, settle_until: 10 + WINDOW }.into());
		assert_noop!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id), Error::<Test>::SessionClosing);
		assert_noop!(Escrow::close_session(RuntimeOrigin::signed(OTHER_CLIENT), id), Error::<Test>::NotParticipant);
		// The provider's last receipt still settles inside the window.
		run_to(10 + WINDOW);
		assert_ok!(settle(signed(1, receipt(id, 2, 300 * MIB, 0, 300))));
		assert_noop!(
			Escrow::finalize_session(RuntimeOrigin::signed(OTHER_CLIENT), id),
			Error::<Test>::SettlementWindowOpen
		);
		run_to(11 + WINDOW);
		assert_noop!(settle(signed(1, receipt(id, 3, 400 * MIB, 0, 400))), Error::<Test>::SettlementWindowOver);
		let client_free = free(CLIENT);
		assert_ok!(Escrow::finalize_session(RuntimeOrigin::signed(OTHER_CLIENT), id));
		System::assert_last_event(Event::SessionClosed { session_id: id, settled: 300, refunded: 700 }.into());
		assert_eq!(free(CLIENT), client_free + 700);
		assert_eq!(held(CLIENT), 0);
		assert!(Sessions::<Test>::get(id).is_none());
		assert!(!ClientSessions::<Test>::contains_key(CLIENT));
		assert!(!ProviderSessions::<Test>::contains_key(VPN_PROVIDER, id));
		// Everything about a finalized session is gone; its receipts find nothing.
		assert_noop!(settle(signed(1, receipt(id, 9, 500 * MIB, 0, 500))), Error::<Test>::SessionNotFound);
		assert_noop!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id), Error::<Test>::SessionNotFound);
		assert_noop!(Escrow::finalize_session(RuntimeOrigin::signed(CLIENT), id), Error::<Test>::SessionNotFound);
	});
}

#[test]
fn provider_close_finalizes_at_once() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_ok!(settle(signed(1, receipt(id, 1, 40 * MIB, 2, 42))));
		assert_ok!(Escrow::close_session(RuntimeOrigin::signed(VPN_PROVIDER), id));
		System::assert_last_event(Event::SessionClosed { session_id: id, settled: 42, refunded: 958 }.into());
		assert_eq!(free(CLIENT), INITIAL - 42);
		assert!(Sessions::<Test>::get(id).is_none());
	});
}

#[test]
fn expired_sessions_settle_in_the_window_and_are_refunded_by_anyone() {
	new_test_ext().execute_with(|| {
		let id = open_vpn(); // expires at 101
		run_to(101 + WINDOW);
		assert_ok!(settle(signed(1, receipt(id, 1, 5 * MIB, 0, 5))));
		assert_noop!(
			Escrow::finalize_session(RuntimeOrigin::signed(VPN_PROVIDER), id),
			Error::<Test>::SettlementWindowOpen
		);
		// A client closing after expiry does not extend the window.
		assert_ok!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id));
		assert_eq!(session(id).settle_until(WINDOW), 101 + WINDOW);
		run_to(102 + WINDOW);
		assert_noop!(settle(signed(1, receipt(id, 2, 6 * MIB, 0, 6))), Error::<Test>::SettlementWindowOver);
		assert_ok!(Escrow::finalize_session(RuntimeOrigin::signed(VPN_PROVIDER), id));
		assert_eq!(free(CLIENT), INITIAL - 5);
		assert_eq!(held(CLIENT), 0);
	});
}

#[test]
fn session_ids_never_repeat() {
	new_test_ext().execute_with(|| {
		let a = open_vpn();
		assert_ok!(Escrow::close_session(RuntimeOrigin::signed(VPN_PROVIDER), a));
		let b = open_vpn();
		assert!(b > a);
		// A receipt signed for the finalized session `a` cannot touch `b`.
		assert_noop!(settle(signed(1, receipt(a, 1, MIB, 0, 1))), Error::<Test>::SessionNotFound);
	});
}

#[test]
fn protocol_fee_goes_to_the_treasury_or_is_burned() {
	new_test_ext().execute_with(|| {
		Fee::set(Perbill::from_percent(10));
		let id = open_vpn();
		let provider = free(VPN_PROVIDER);
		let issuance = Balances::total_issuance();
		assert_ok!(settle(signed(1, receipt(id, 1, 100 * MIB, 0, 100))));
		assert_eq!(free(VPN_PROVIDER), provider + 90);
		assert_eq!(free(TREASURY), 10 + 10);
		assert_eq!(held(CLIENT), 900);
		assert_eq!(Balances::total_issuance(), issuance);
		// The fee is taken on the cumulative amount, rounded down: 10 % of 155 is 15, so this
		// receipt's 55 carry a fee of 5.
		assert_ok!(settle(signed(1, receipt(id, 2, 155 * MIB, 0, 155))));
		assert_eq!(free(VPN_PROVIDER), provider + 90 + 50);
		System::assert_last_event(
			Event::ReceiptSettled {
				session_id: id,
				sequence: 2,
				bytes: 155 * MIB,
				seconds: 0,
				paid: 50,
				fee: 5,
				settled: 155,
			}
			.into(),
		);
		// Burning: issuance falls by exactly the fee (10 % of 255 is 25: 10 more).
		FeeTo::set(None);
		assert_ok!(settle(signed(1, receipt(id, 3, 255 * MIB, 0, 255))));
		assert_eq!(Balances::total_issuance(), issuance - 10);
		assert_eq!(free(TREASURY), 10 + 10 + 5);
		Fee::set(Perbill::zero());
		FeeTo::set(Some(TREASURY));
	});
}

/// Receipts too small for a per-receipt fee (under 100 units at 1 %) still pay it: the fee
/// is taken on the cumulative amount. Before, each was rounded down to zero.
#[test]
fn small_receipts_do_not_escape_the_fee() {
	new_test_ext().execute_with(|| {
		Fee::set(Perbill::from_percent(1));
		let id = open_vpn();
		let treasury = free(TREASURY);
		for n in 1..=10u64 {
			assert_ok!(settle(signed(1, receipt(id, n, 99 * n * MIB, 0, 99 * u128::from(n)))));
		}
		// 1 % of 990, rounded down, whatever the steps.
		assert_eq!(free(TREASURY), treasury + 9);
		assert_eq!(free(VPN_PROVIDER), INITIAL - 10_000 + 990 - 9);
		Fee::set(Perbill::zero());
	});
}

/// A fee destination that does not exist yet is created by the pallet's genesis with a
/// provider reference, so a fee below the existential deposit can be paid into it.
#[test]
fn the_fee_destination_exists_from_genesis() {
	const NEW_TREASURY: AccountId = 77;
	FeeTo::set(Some(NEW_TREASURY));
	new_test_ext().execute_with(|| {
		assert!(frame_system::Pallet::<Test>::account_exists(&NEW_TREASURY));
		Fee::set(Perbill::from_percent(1));
		let id = open_vpn();
		assert_ok!(settle(signed(1, receipt(id, 1, 100 * MIB, 0, 100))));
		assert_eq!(free(NEW_TREASURY), 1);
		Fee::set(Perbill::zero());
	});
	FeeTo::set(Some(TREASURY));
}

#[test]
fn a_batch_settles_valid_receipts_and_reports_invalid_ones() {
	new_test_ext().execute_with(|| {
		let a = open_vpn();
		let b = open_with(OTHER_CLIENT, VPN_PROVIDER, ServiceKind::Vpn, 2, 1_000);
		let c = open_with(OTHER_CLIENT, CDN_PROVIDER, ServiceKind::Cdn, 3, 1_000);
		let vpn_before = free(VPN_PROVIDER);
		let cdn_before = free(CDN_PROVIDER);
		let batch = vec![
			signed(1, receipt(a, 1, 10 * MIB, 0, 10)),
			signed(1, receipt(b, 1, 10 * MIB, 0, 10)), // wrong signer for b
			signed(2, receipt(b, 1, 20 * MIB, 0, 20)),
			signed(3, receipt(c, 1, 10 * MIB, 0, 20)), // another provider's session
			signed(1, receipt(a, 1, 10 * MIB, 0, 10)), // replay inside the batch
			signed(1, receipt(a, 2, 30 * MIB, 0, 30)),
		];
		assert_ok!(Escrow::settle_receipts(RuntimeOrigin::signed(VPN_PROVIDER), batch.try_into().unwrap()));
		assert_eq!(free(VPN_PROVIDER), vpn_before + 30 + 20);
		assert_eq!(free(CDN_PROVIDER), cdn_before);
		let events: Vec<_> = System::events().into_iter().map(|e| e.event).collect();
		let rejected: Vec<_> = events
			.iter()
			.filter_map(|e| match e {
				RuntimeEvent::Escrow(Event::ReceiptRejected { session_id, sequence, error }) => {
					Some((*session_id, *sequence, *error))
				},
				_ => None,
			})
			.collect();
		assert_eq!(
			rejected,
			vec![
				(b, 1, Error::<Test>::BadSignature.into()),
				(c, 1, Error::<Test>::NotSettler.into()),
				(a, 1, Error::<Test>::ReceiptReplayed.into())
			]
		);
		System::assert_last_event(Event::ReceiptsSettled { accepted: 3, rejected: 3, paid: 50, fees: 0 }.into());
		assert_noop!(
			Escrow::settle_receipts(RuntimeOrigin::signed(VPN_PROVIDER), Default::default()),
			Error::<Test>::EmptyBatch
		);
	});
}

#[test]
fn a_deregistered_provider_can_still_settle_open_sessions() {
	new_test_ext().execute_with(|| {
		let id = open_vpn();
		assert_ok!(Registry::deregister_provider(RuntimeOrigin::signed(VPN_PROVIDER)));
		assert_ok!(settle(signed(1, receipt(id, 1, 7 * MIB, 0, 7))));
		assert_noop!(
			Escrow::open_session(
				RuntimeOrigin::signed(CLIENT),
				VPN_PROVIDER,
				ServiceKind::Vpn,
				Box::new(client_key(1).public().clone()),
				LOOSE,
				500,
				10
			),
			Error::<Test>::ProviderNotActive
		);
	});
}

#[test]
fn queries_show_sessions_by_id_client_and_provider() {
	new_test_ext().execute_with(|| {
		let a = open_vpn();
		let b = open_with(CLIENT, CDN_PROVIDER, ServiceKind::Cdn, 1, 300);
		let c = open_with(OTHER_CLIENT, VPN_PROVIDER, ServiceKind::Vpn, 2, 200);
		assert_ok!(settle(signed(1, receipt(a, 3, 4 * MIB, 1, 5))));
		let info = Escrow::query_session(a).unwrap();
		assert_eq!(
			(info.session_id, info.client, info.provider, info.deposit, info.settled),
			(a, CLIENT, VPN_PROVIDER, 1_000, 5)
		);
		assert_eq!(
			(info.sequence, info.bytes, info.seconds, info.closing, info.settle_until),
			(3, 4 * MIB, 1, false, 101 + WINDOW)
		);
		let ids = |v: Vec<SessionInfoOf<Test>>| v.into_iter().map(|s| s.session_id).collect::<Vec<_>>();
		assert_eq!(ids(Escrow::query_client_sessions(CLIENT)), vec![a, b]);
		assert_eq!(info.nonce, session(a).nonce);
		// Pages in storage order, by cursor: every session once, none of another provider.
		let all = ids(Escrow::query_provider_sessions(VPN_PROVIDER, None, 10));
		let mut sorted = all.clone();
		sorted.sort();
		assert_eq!(sorted, vec![a, c]);
		let first = ids(Escrow::query_provider_sessions(VPN_PROVIDER, None, 1));
		assert_eq!(first, vec![all[0]]);
		assert_eq!(ids(Escrow::query_provider_sessions(VPN_PROVIDER, Some(all[0]), 10)), vec![all[1]]);
		assert_eq!(ids(Escrow::query_provider_sessions(VPN_PROVIDER, Some(all[1]), 10)), Vec::<SessionId>::new());
		assert_eq!(Escrow::query_session(99), None);
		assert_eq!(Escrow::genesis_hash(), GENESIS);
	});
}

#[test]
fn integrity_test_passes() {
	new_test_ext().execute_with(|| {
		<Escrow as frame_support::traits::Hooks<u64>>::integrity_test();
	});
}

mod properties {
	//! Random sequences of open / settle / top-up / close / finalize / time passing: the
	//! invariants hold after every step (`try_state`), no balance is created or destroyed,
	//! and no provider is ever paid more than its clients signed for.

	use super::*;
	use proptest::prelude::*;

	#[derive(Clone, Debug)]
	enum Op {
		Open { client: bool, cdn: bool, deposit: u16 },
		Settle { session: u8, mib: u16, seconds: u8, ask: Ask, wrong_key: bool },
		TopUp { session: u8, amount: u16 },
		Close { session: u8, by_provider: bool },
		Finalize { session: u8 },
		Wait { blocks: u8 },
	}

	/// What a receipt asks for.
	#[derive(Clone, Copy, Debug, PartialEq)]
	enum Ask {
		/// What the usage is worth, capped at the deposit: valid.
		Fair,
		/// One more than the usage is worth.
		OverUsage,
		/// One more than the deposit, with usage worth it.
		OverDeposit,
	}

	fn op() -> impl Strategy<Value = Op> {
		prop_oneof![
			(any::<bool>(), any::<bool>(), 100u16..3_000).prop_map(|(client, cdn, deposit)| Op::Open {
				client,
				cdn,
				deposit
			}),
			(
				any::<u8>(),
				0u16..2_000,
				any::<u8>(),
				prop_oneof![4 => Just(Ask::Fair), 1 => Just(Ask::OverUsage), 1 => Just(Ask::OverDeposit)],
				prop::bool::weighted(0.1)
			)
				.prop_map(|(session, mib, seconds, ask, wrong_key)| Op::Settle {
					session,
					mib,
					seconds,
					ask,
					wrong_key
				}),
			(any::<u8>(), 0u16..500).prop_map(|(session, amount)| Op::TopUp { session, amount }),
			(any::<u8>(), any::<bool>()).prop_map(|(session, by_provider)| Op::Close { session, by_provider }),
			any::<u8>().prop_map(|session| Op::Finalize { session }),
			(0u8..80).prop_map(|blocks| Op::Wait { blocks }),
		]
	}

	fn total(who: AccountId) -> Balance {
		Balances::total_balance(&who)
	}

	proptest! {
		#![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
		#[test]
		fn invariants_hold_and_no_money_is_created_or_destroyed(ops in prop::collection::vec(op(), 1..30)) {
			new_test_ext().execute_with(|| {
				let accounts = [CLIENT, OTHER_CLIENT, VPN_PROVIDER, CDN_PROVIDER, TREASURY, POOR];
				let sum = || accounts.iter().map(|a| total(*a)).sum::<Balance>();
				let start = sum();
				let issuance = Balances::total_issuance();
				// Per session: (client, key, provider, last signed amount, last sequence).
				let mut signed_total: Balance = 0;
				let mut opened: Vec<(AccountId, u8, AccountId)> = Vec::new();
				let providers_start = total(VPN_PROVIDER) + total(CDN_PROVIDER);
				for op in ops {
					match op {
						Op::Open { client, cdn, deposit } => {
							let (who, key) = if client { (CLIENT, 1) } else { (OTHER_CLIENT, 2) };
							let (provider, service) = if cdn { (CDN_PROVIDER, ServiceKind::Cdn) } else { (VPN_PROVIDER, ServiceKind::Vpn) };
							let id = NextSessionId::<Test>::get();
							if Escrow::open_session(RuntimeOrigin::signed(who), provider, service, Box::new(client_key(key).public().clone()), LOOSE, deposit.into(), 60).is_ok() {
								assert_eq!(id as usize, opened.len());
								opened.push((who, key, provider));
							}
						},
						Op::Settle { session, mib, seconds, ask, wrong_key } => {
							if opened.is_empty() { continue; }
							let id = session as u64 % opened.len() as u64;
							let (_, key, provider) = opened[id as usize];
							let Some(s) = Sessions::<Test>::get(id) else { continue };
							let mut bytes = s.bytes + u64::from(mib) * MIB / 4;
							if ask == Ask::OverDeposit {
								bytes += 4_000 * MIB; // worth more than any deposit here
							}
							let secs = s.seconds + u64::from(seconds);
							let owed = max_amount_owed(&s.prices, bytes, secs).unwrap();
							let amount = match ask {
								Ask::Fair => owed.min(s.deposit),
								Ask::OverUsage => owed + 1,
								Ask::OverDeposit => s.deposit + 1,
							};
							let r = signed(if wrong_key { 77 } else { key }, receipt(id, s.sequence + 1, bytes, secs, amount));
							let before = total(provider);
							let ok = Escrow::settle_receipt(RuntimeOrigin::signed(provider), Box::new(r)).is_ok();
							assert!(!ok || (ask == Ask::Fair && !wrong_key), "an invalid receipt settled: {ask:?}");
							if ok {
								signed_total += amount - s.settled;
								assert_eq!(total(provider), before + amount - s.settled);
							}
						},
						Op::TopUp { session, amount } => {
							if opened.is_empty() { continue; }
							let id = session as u64 % opened.len() as u64;
							let _ = Escrow::top_up_deposit(RuntimeOrigin::signed(opened[id as usize].0), id, amount.into());
						},
						Op::Close { session, by_provider } => {
							if opened.is_empty() { continue; }
							let id = session as u64 % opened.len() as u64;
							let (client, _, provider) = opened[id as usize];
							let _ = Escrow::close_session(RuntimeOrigin::signed(if by_provider { provider } else { client }), id);
						},
						Op::Finalize { session } => {
							if opened.is_empty() { continue; }
							let id = session as u64 % opened.len() as u64;
							let _ = Escrow::finalize_session(RuntimeOrigin::signed(POOR), id);
						},
						Op::Wait { blocks } => run_to(System::block_number() + u64::from(blocks)),
					}
					Escrow::do_try_state().expect("invariants hold after every step");
					assert_eq!(sum(), start, "balances moved in or out of the known accounts");
					assert_eq!(Balances::total_issuance(), issuance, "issuance changed without a fee");
					assert_eq!(total(VPN_PROVIDER) + total(CDN_PROVIDER), providers_start + signed_total, "providers got other than what was signed");
				}
			});
		}
	}
}

mod pool_check {
	//! `CheckReceipts` in the pool: cheap checks only (no signature is verified), a stranger
	//! refused at the first receipt, a batch kept when one receipt went stale, settlement
	//! calls without a signer refused; nothing checked inside blocks.

	use super::*;
	use frame_support::dispatch::DispatchInfo;
	use interlattice_pq_crypto::stats::thread_verifications;
	use sp_runtime::{
		traits::DispatchTransaction,
		transaction_validity::{InvalidTransaction, TransactionSource, TransactionValidityError},
	};

	fn validate_as(
		who: Option<AccountId>,
		call: RuntimeCall,
		source: TransactionSource,
	) -> Result<(), TransactionValidityError> {
		let origin = match who {
			Some(who) => RuntimeOrigin::signed(who),
			None => RuntimeOrigin::none(),
		};
		CheckReceipts::<Test>::new().validate_only(origin, &call, &DispatchInfo::default(), 0, source, 0).map(|_| ())
	}

	fn validate(call: RuntimeCall, source: TransactionSource) -> Result<(), TransactionValidityError> {
		validate_as(Some(VPN_PROVIDER), call, source)
	}

	fn one(r: SignedUsageReceipt) -> RuntimeCall {
		RuntimeCall::Escrow(Call::settle_receipt { receipt: Box::new(r) })
	}

	fn batch(list: Vec<SignedUsageReceipt>) -> RuntimeCall {
		RuntimeCall::Escrow(Call::settle_receipts { receipts: list.try_into().unwrap() })
	}

	fn custom(error: Error<Test>) -> TransactionValidityError {
		match DispatchError::from(error) {
			DispatchError::Module(m) => InvalidTransaction::Custom(m.error[0]).into(),
			_ => unreachable!("a pallet error is a module error"),
		}
	}

	#[test]
	fn cheap_checks_decide_and_no_signature_is_verified() {
		new_test_ext().execute_with(|| {
			let id = open_vpn();
			let external = TransactionSource::External;
			let before = thread_verifications();
			assert_eq!(validate(one(signed(1, receipt(id, 1, MIB, 0, 1))), external), Ok(()));
			// A wrong signature passes the pool: dispatch verifies it, at the submitter's cost.
			assert_eq!(validate(one(signed(9, receipt(id, 1, MIB, 0, 1))), TransactionSource::Local), Ok(()));
			assert_eq!(thread_verifications(), before, "the pool verified a signature");
			assert_ok!(settle(signed(1, receipt(id, 1, MIB, 0, 1))));
			assert_eq!(
				validate(one(signed(1, receipt(id, 2, MIB, 0, 1))), external),
				Err(InvalidTransaction::Stale.into())
			);
			let mut other_chain = receipt(id, 2, 2 * MIB, 0, 2);
			other_chain.genesis_hash = [0; 32];
			assert_eq!(validate(one(signed(1, other_chain)), external), Err(custom(Error::<Test>::WrongChain)));
			assert_eq!(
				validate(one(signed(1, receipt(id, 2, MIB, 0, 2_000))), external),
				Err(custom(Error::<Test>::AmountExceedsUsage))
			);
			// Other calls are not looked at.
			assert_eq!(validate(RuntimeCall::Escrow(Call::finalize_session { session_id: id }), external), Ok(()));
		});
	}

	/// Issue 16 item 2: 8 (the batch bound here; 500 in the runtime) invalid receipts from an
	/// account that is not the provider cost no signature verification and at most one
	/// storage read: refused at the first receipt. Before, every signature was verified.
	#[test]
	fn a_stranger_is_refused_at_the_first_receipt_for_free() {
		new_test_ext().execute_with(|| {
			let id = open_vpn();
			let receipts: Vec<_> =
				(1..=MAX_BATCH as u64).map(|n| signed(9, receipt(id, n, n * MIB, 0, n.into()))).collect();
			let before = thread_verifications();
			for stranger in [POOR, CLIENT, CDN_PROVIDER] {
				assert_eq!(
					validate_as(Some(stranger), batch(receipts.clone()), TransactionSource::External),
					Err(custom(Error::<Test>::NotSettler))
				);
			}
			assert_eq!(thread_verifications(), before);
		});
	}

	/// Issue 16 item 2: anyone who front-runs one receipt of a provider's batch (the client
	/// settling it through another provider's… or the provider's own earlier batch) must not
	/// evict the whole batch from the pool. Before, one stale receipt made it invalid.
	#[test]
	fn one_stale_receipt_does_not_evict_a_batch() {
		new_test_ext().execute_with(|| {
			let a = open_vpn();
			let b = open_with(OTHER_CLIENT, VPN_PROVIDER, ServiceKind::Vpn, 2, 1_000);
			let stale = signed(1, receipt(a, 1, MIB, 0, 1));
			assert_ok!(settle(stale.clone()));
			let good = signed(2, receipt(b, 1, MIB, 0, 1));
			assert_eq!(validate(batch(vec![stale.clone(), good.clone()]), TransactionSource::External), Ok(()));
			// Only stale receipts: nothing to gain, refused.
			assert_eq!(
				validate(batch(vec![stale.clone()]), TransactionSource::External),
				Err(InvalidTransaction::Stale.into())
			);
			// At dispatch the stale one is rejected on its own and the rest settles.
			assert_ok!(Escrow::settle_receipts(
				RuntimeOrigin::signed(VPN_PROVIDER),
				vec![stale, good].try_into().unwrap()
			));
			assert_eq!(session(b).settled, 1);
		});
	}

	/// Issue 16 item 2: a settlement call in a transaction without a signer (a v5 general
	/// transaction runs the extensions with no origin) is refused before any receipt is read.
	#[test]
	fn a_settlement_without_a_signer_is_refused() {
		new_test_ext().execute_with(|| {
			let id = open_vpn();
			let before = thread_verifications();
			assert_eq!(
				validate_as(None, one(signed(1, receipt(id, 1, MIB, 0, 1))), TransactionSource::External),
				Err(InvalidTransaction::BadSigner.into())
			);
			assert_eq!(thread_verifications(), before);
		});
	}

	#[test]
	fn inside_a_block_dispatch_decides() {
		new_test_ext().execute_with(|| {
			let id = open_vpn();
			let stale = signed(1, receipt(id, 1, MIB, 0, 1));
			assert_ok!(settle(stale.clone()));
			assert_eq!(validate_as(Some(POOR), one(stale), TransactionSource::InBlock), Ok(()));
		});
	}
}

mod unlisted {
	//! Issue 21: the sealed reveal of an unlisted provider's endpoint.
	use super::*;
	use interlattice_pq_crypto::reveal::{
		MlKemCiphertext, MlKemEncapsulationKey, SealedEndpoint, SealedEndpointCiphertext,
	};

	fn reveal_key() -> MlKemEncapsulationKey {
		MlKemEncapsulationKey([0x11; MlKemEncapsulationKey::LEN])
	}

	fn sealed(byte: u8) -> SealedEndpoint {
		SealedEndpoint {
			kem_ciphertext: MlKemCiphertext([byte; MlKemCiphertext::LEN]),
			ciphertext: SealedEndpointCiphertext([byte; SealedEndpointCiphertext::LEN]),
		}
	}

	fn open_unlisted(key: MlKemEncapsulationKey) -> sp_runtime::DispatchResult {
		Escrow::open_unlisted_session(
			RuntimeOrigin::signed(CLIENT),
			VPN_PROVIDER,
			ServiceKind::Vpn,
			Box::new(client_key(1).public().clone()),
			LOOSE,
			1_000,
			100,
			Box::new(key),
		)
	}

	#[test]
	fn the_key_is_kept_the_reveal_stored_and_both_removed_at_finalization() {
		new_test_ext().execute_with(|| {
			let id = NextSessionId::<Test>::get();
			assert_ok!(open_unlisted(reveal_key()));
			assert_eq!(RevealKeys::<Test>::get(id), Some(reveal_key()));
			System::assert_has_event(Event::EndpointRequested { session_id: id, provider: VPN_PROVIDER }.into());
			assert_eq!(held(CLIENT), 1_000);

			assert_ok!(Escrow::reveal_endpoint(RuntimeOrigin::signed(VPN_PROVIDER), id, Box::new(sealed(1))));
			assert_eq!(SealedEndpoints::<Test>::get(id), Some(sealed(1)));
			System::assert_has_event(Event::EndpointRevealed { session_id: id, provider: VPN_PROVIDER }.into());
			// The provider moves the client to another address: the reveal is replaced.
			assert_ok!(Escrow::reveal_endpoint(RuntimeOrigin::signed(VPN_PROVIDER), id, Box::new(sealed(2))));
			assert_eq!(SealedEndpoints::<Test>::get(id), Some(sealed(2)));

			assert_ok!(Escrow::report_unreachable(RuntimeOrigin::signed(CLIENT), id));
			System::assert_has_event(
				Event::EndpointReported { session_id: id, client: CLIENT, provider: VPN_PROVIDER }.into(),
			);
			Escrow::do_try_state().expect("invariants hold");

			assert_ok!(Escrow::close_session(RuntimeOrigin::signed(VPN_PROVIDER), id));
			assert!(RevealKeys::<Test>::get(id).is_none());
			assert!(SealedEndpoints::<Test>::get(id).is_none());
			Escrow::do_try_state().expect("invariants hold");
		});
	}

	#[test]
	fn a_key_failing_the_modulus_check_opens_nothing() {
		new_test_ext().execute_with(|| {
			let mut bad = reveal_key();
			bad.0[0] = 0xff;
			bad.0[1] = 0x0f; // first coefficient 0xfff >= q
			assert_noop!(open_unlisted(bad), Error::<Test>::InvalidRevealKey);
			assert_eq!(held(CLIENT), 0);
		});
	}

	#[test]
	fn only_the_provider_or_its_settler_reveals_and_only_to_a_session_that_asked() {
		new_test_ext().execute_with(|| {
			let listed = open_vpn();
			assert_noop!(
				Escrow::reveal_endpoint(RuntimeOrigin::signed(VPN_PROVIDER), listed, Box::new(sealed(1))),
				Error::<Test>::NoRevealRequested
			);
			let id = NextSessionId::<Test>::get();
			assert_ok!(open_unlisted(reveal_key()));
			// A stranger, the client itself, another provider: refused.
			for who in [CLIENT, CDN_PROVIDER, 99] {
				assert_noop!(
					Escrow::reveal_endpoint(RuntimeOrigin::signed(who), id, Box::new(sealed(1))),
					Error::<Test>::NotSettler
				);
			}
			assert_noop!(
				Escrow::reveal_endpoint(RuntimeOrigin::signed(VPN_PROVIDER), 77, Box::new(sealed(1))),
				Error::<Test>::SessionNotFound
			);
			// Nothing to report before a reveal; only the client reports.
			assert_noop!(Escrow::report_unreachable(RuntimeOrigin::signed(CLIENT), id), Error::<Test>::NotRevealed);
			assert_ok!(Escrow::set_settler(RuntimeOrigin::signed(VPN_PROVIDER), Some(42)));
			assert_ok!(Escrow::reveal_endpoint(RuntimeOrigin::signed(42), id, Box::new(sealed(3))));
			assert_noop!(Escrow::report_unreachable(RuntimeOrigin::signed(VPN_PROVIDER), id), Error::<Test>::NotClient);
			// A closing session gets no new reveal.
			assert_ok!(Escrow::close_session(RuntimeOrigin::signed(CLIENT), id));
			assert_noop!(
				Escrow::reveal_endpoint(RuntimeOrigin::signed(VPN_PROVIDER), id, Box::new(sealed(4))),
				Error::<Test>::SessionClosing
			);
			Escrow::do_try_state().expect("invariants hold");
		});
	}

	#[test]
	fn an_oversized_or_truncated_reveal_does_not_decode() {
		use codec::{Decode, Encode};
		let call = Call::<Test>::reveal_endpoint { session_id: 0, sealed: Box::new(sealed(1)) };
		let bytes = call.encode();
		assert!(Call::<Test>::decode(&mut &bytes[..bytes.len() - 1]).is_err());
		let mut longer = bytes.clone();
		longer.push(0);
		let mut input = &longer[..];
		let decoded = Call::<Test>::decode(&mut input).expect("the prefix decodes");
		assert_eq!(decoded, call);
		assert_eq!(input.len(), 1, "a trailing byte is left over, which makes an extrinsic invalid");
	}
}
