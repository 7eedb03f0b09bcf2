//! Unit tests: every call's success and every error path; invariants checked after each.

use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
	BoundedVec,
};
use interlattice_pq_crypto::MlDsaPublicKey;
use sp_runtime::{BuildStorage, DispatchError};

use crate::{mock::*, *};

fn key(n: u8) -> MlDsaPublicKey {
	MlDsaPublicKey([n; interlattice_pq_crypto::ML_DSA_65_PUBLIC_KEY_LEN])
}

fn endpoints(list: &[&str]) -> EndpointsOf<Test> {
	let v: Vec<EndpointOf<Test>> = list.iter().map(|e| e.as_bytes().to_vec().try_into().unwrap()).collect();
	v.try_into().unwrap()
}

fn location(country: &[u8; 2]) -> LocationOf<Test> {
	Location { country: *country, region: b"Berlin".to_vec().try_into().unwrap(), hosting: Hosting::Datacenter }
}

fn prices() -> Prices<Balance> {
	Prices { per_gib: 10, per_hour: 1 }
}

fn register(who: AccountId, key_byte: u8, stake: Balance) -> sp_runtime::DispatchResult {
	Registry::register_provider(
		RuntimeOrigin::signed(who),
		Services::Both,
		endpoints(&["vpn.example.net:51820"]),
		location(b"DE"),
		prices(),
		Box::new(key(key_byte)),
		stake,
	)
}

fn held(who: AccountId) -> Balance {
	Balances::balance_on_hold(&HoldReason::ProviderStake.into(), &who)
}

fn record(who: AccountId) -> ProviderRecordOf<Test> {
	Providers::<Test>::get(who).expect("registered")
}

#[test]
fn register_provider_holds_stake_and_lists_provider() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 5_000));
		assert_eq!(held(ALICE), 5_000);
		assert_eq!(Balances::balance(&ALICE), 95_000);
		let r = record(ALICE);
		assert_eq!(r.stake, 5_000);
		assert_eq!(r.status, ProviderStatus::Registered);
		assert_eq!(r.location.country, *b"DE");
		assert!(Registry::is_active(&ALICE));
		assert_eq!(ProviderCount::<Test>::get(), 1);
		System::assert_last_event(
			Event::ProviderRegistered { provider: ALICE, services: Services::Both, country: *b"DE", stake: 5_000 }
				.into(),
		);
	});
}

#[test]
fn register_fails_when_stake_too_low() {
	new_test_ext().execute_with(|| {
		assert_noop!(register(ALICE, 1, MIN_STAKE - 1), Error::<Test>::StakeTooLow);
	});
}

#[test]
fn register_fails_when_balance_cannot_cover_stake() {
	new_test_ext().execute_with(|| {
		assert_noop!(register(POOR, 1, MIN_STAKE), Error::<Test>::InsufficientBalance);
	});
}

#[test]
fn register_fails_when_already_registered() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		assert_noop!(register(ALICE, 2, MIN_STAKE), Error::<Test>::AlreadyRegistered);
	});
}

#[test]
fn register_fails_when_service_key_in_use() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		assert_noop!(register(BOB, 1, MIN_STAKE), Error::<Test>::ServiceKeyInUse);
	});
}

#[test]
fn register_fails_with_bad_endpoints() {
	new_test_ext().execute_with(|| {
		let call = |eps: EndpointsOf<Test>| {
			Registry::register_provider(
				RuntimeOrigin::signed(ALICE),
				Services::Vpn,
				eps,
				location(b"DE"),
				prices(),
				Box::new(key(1)),
				MIN_STAKE,
			)
		};
		assert_noop!(call(endpoints(&[""])), Error::<Test>::InvalidEndpoint);
		assert_noop!(call(endpoints(&["has space:1"])), Error::<Test>::InvalidEndpoint);
		assert_noop!(call(endpoints(&["ok:1", "bad\u{7f}"])), Error::<Test>::InvalidEndpoint);
	});
}

/// Issue 21: a provider may register without endpoints (unlisted), and a listed one may
/// become unlisted; everything a client chooses by stays on record.
#[test]
fn a_provider_without_endpoints_is_unlisted() {
	new_test_ext().execute_with(|| {
		assert_ok!(Registry::register_provider(
			RuntimeOrigin::signed(ALICE),
			Services::Vpn,
			endpoints(&[]),
			location(b"DE"),
			prices(),
			Box::new(key(1)),
			MIN_STAKE,
		));
		let record = Providers::<Test>::get(ALICE).expect("registered");
		assert!(record.endpoints.is_empty());
		assert_eq!(record.location.country, *b"DE");
		assert_ok!(register(BOB, 2, MIN_STAKE));
		assert_ok!(Registry::update_provider(RuntimeOrigin::signed(BOB), None, Some(endpoints(&[])), None, None, None));
		assert!(Providers::<Test>::get(BOB).expect("registered").endpoints.is_empty());
		Registry::do_try_state().expect("invariants hold");
	});
}

#[test]
fn oversized_endpoints_cannot_even_be_encoded_into_a_call() {
	new_test_ext().execute_with(|| {
		// Bounds are enforced at decoding: an endpoint longer than MaxEndpointLen (64) or
		// more than MaxEndpoints (4) makes the extrinsic undecodable, so it never dispatches.
		let too_long: Result<EndpointOf<Test>, _> = vec![b'a'; 65].try_into();
		assert!(too_long.is_err());
		let too_many: Result<EndpointsOf<Test>, _> =
			vec![EndpointOf::<Test>::try_from(b"a:1".to_vec()).unwrap(); 5].try_into();
		assert!(too_many.is_err());
		use codec::{Decode, Encode};
		let encoded = (vec![vec![b'a'; 65]]).encode();
		assert!(EndpointsOf::<Test>::decode(&mut &encoded[..]).is_err());
	});
}

#[test]
fn register_fails_with_bad_location() {
	new_test_ext().execute_with(|| {
		let call = |loc: LocationOf<Test>| {
			Registry::register_provider(
				RuntimeOrigin::signed(ALICE),
				Services::Cdn,
				endpoints(&["cdn.example.net:443"]),
				loc,
				prices(),
				Box::new(key(1)),
				MIN_STAKE,
			)
		};
		assert_noop!(call(location(b"de")), Error::<Test>::InvalidCountryCode);
		assert_noop!(call(location(b"D1")), Error::<Test>::InvalidCountryCode);
		let mut loc = location(b"DE");
		loc.region = BoundedVec::try_from(vec![0xff, 0xfe]).unwrap();
		assert_noop!(call(loc), Error::<Test>::InvalidRegion);
	});
}

#[test]
fn unsigned_origin_cannot_register() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Registry::register_provider(
				RuntimeOrigin::none(),
				Services::Vpn,
				endpoints(&["a:1"]),
				location(b"DE"),
				prices(),
				Box::new(key(1)),
				MIN_STAKE,
			),
			DispatchError::BadOrigin
		);
	});
}

#[test]
fn update_provider_changes_only_given_fields() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		let new_prices = Prices { per_gib: 99, per_hour: 7 };
		assert_ok!(Registry::update_provider(
			RuntimeOrigin::signed(ALICE),
			Some(Services::Cdn),
			None,
			Some(location(b"BR")),
			Some(new_prices),
			Some(Box::new(key(5))),
		));
		let r = record(ALICE);
		assert_eq!(r.services, Services::Cdn);
		assert_eq!(r.endpoints, endpoints(&["vpn.example.net:51820"]));
		assert_eq!(r.location.country, *b"BR");
		assert_eq!(r.prices, new_prices);
		assert_eq!(r.service_key, key(5));
		// The old key is free again, the new one taken.
		assert_eq!(ServiceKeyOwners::<Test>::get(key(1).key_id()), None);
		assert_ok!(register(BOB, 1, MIN_STAKE));
		assert_noop!(register(CHARLIE, 5, MIN_STAKE), Error::<Test>::ServiceKeyInUse);
		System::assert_has_event(Event::ProviderUpdated { provider: ALICE }.into());
	});
}

#[test]
fn update_fails_for_non_owner_and_bad_input() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		assert_ok!(register(BOB, 2, MIN_STAKE));
		// Bob cannot touch Alice's record: updates apply to the caller's own record only,
		// and Charlie has none.
		assert_noop!(
			Registry::update_provider(RuntimeOrigin::signed(CHARLIE), Some(Services::Vpn), None, None, None, None),
			Error::<Test>::NotRegistered
		);
		assert_noop!(
			Registry::update_provider(RuntimeOrigin::signed(BOB), None, None, None, None, Some(Box::new(key(1)))),
			Error::<Test>::ServiceKeyInUse
		);
		assert_noop!(
			Registry::update_provider(RuntimeOrigin::signed(ALICE), None, None, Some(location(b"x1")), None, None),
			Error::<Test>::InvalidCountryCode
		);
		// Keeping one's own key is fine.
		assert_ok!(Registry::update_provider(
			RuntimeOrigin::signed(ALICE),
			None,
			None,
			None,
			None,
			Some(Box::new(key(1)))
		));
	});
}

#[test]
fn bond_extra_adds_to_stake_and_hold() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		assert_ok!(Registry::bond_extra(RuntimeOrigin::signed(ALICE), 500));
		assert_eq!(record(ALICE).stake, MIN_STAKE + 500);
		assert_eq!(held(ALICE), MIN_STAKE + 500);
		System::assert_last_event(Event::StakeBonded { provider: ALICE, amount: 500, stake: MIN_STAKE + 500 }.into());
		assert_noop!(Registry::bond_extra(RuntimeOrigin::signed(ALICE), 0), Error::<Test>::ZeroAmount);
		assert_noop!(Registry::bond_extra(RuntimeOrigin::signed(BOB), 1), Error::<Test>::NotRegistered);
		assert_noop!(Registry::bond_extra(RuntimeOrigin::signed(ALICE), 1_000_000), Error::<Test>::InsufficientBalance);
	});
}

#[test]
fn unbond_moves_stake_to_a_chunk_and_below_minimum_delists() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 2_000));
		assert_ok!(Registry::unbond(RuntimeOrigin::signed(ALICE), 1_500));
		let r = record(ALICE);
		assert_eq!(r.stake, 500);
		assert_eq!(r.unbonding[0], UnbondingChunk { amount: 1_500, unlock_at: 1 + UNBONDING_PERIOD });
		// Still held in full until withdrawn.
		assert_eq!(held(ALICE), 2_000);
		assert!(!Registry::is_active(&ALICE), "below the minimum stake: not active");
		System::assert_last_event(
			Event::StakeUnbonded { provider: ALICE, amount: 1_500, unlock_at: 101, stake: 500 }.into(),
		);
		assert_noop!(Registry::unbond(RuntimeOrigin::signed(ALICE), 501), Error::<Test>::UnbondTooLarge);
		assert_noop!(Registry::unbond(RuntimeOrigin::signed(ALICE), 0), Error::<Test>::ZeroAmount);
		assert_noop!(Registry::unbond(RuntimeOrigin::signed(BOB), 1), Error::<Test>::NotRegistered);
	});
}

#[test]
fn unbond_fails_when_too_many_chunks() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 5_000));
		for _ in 0..3 {
			assert_ok!(Registry::unbond(RuntimeOrigin::signed(ALICE), 10));
		}
		assert_noop!(Registry::unbond(RuntimeOrigin::signed(ALICE), 10), Error::<Test>::TooManyUnbondingChunks);
	});
}

#[test]
fn withdraw_fails_before_the_unbonding_period_and_works_after() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 2_000));
		assert_ok!(Registry::unbond(RuntimeOrigin::signed(ALICE), 700));
		System::set_block_number(UNBONDING_PERIOD); // one block early
		assert_noop!(Registry::withdraw_unbonded(RuntimeOrigin::signed(ALICE)), Error::<Test>::NothingToWithdraw);
		System::set_block_number(1 + UNBONDING_PERIOD);
		assert_ok!(Registry::withdraw_unbonded(RuntimeOrigin::signed(ALICE)));
		assert_eq!(held(ALICE), 1_300);
		assert_eq!(Balances::balance(&ALICE), 100_000 - 1_300);
		assert!(record(ALICE).unbonding.is_empty());
		System::assert_last_event(Event::StakeWithdrawn { provider: ALICE, amount: 700 }.into());
		// Withdrawing twice releases nothing more.
		assert_noop!(Registry::withdraw_unbonded(RuntimeOrigin::signed(ALICE)), Error::<Test>::NothingToWithdraw);
		assert_noop!(Registry::withdraw_unbonded(RuntimeOrigin::signed(BOB)), Error::<Test>::NotRegistered);
	});
}

#[test]
fn deregister_unbonds_everything_and_withdraw_removes_the_provider() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 3_000));
		assert_ok!(Registry::deregister_provider(RuntimeOrigin::signed(ALICE)));
		let r = record(ALICE);
		assert_eq!(r.status, ProviderStatus::Deregistered);
		assert_eq!(r.stake, 0);
		assert!(!Registry::is_active(&ALICE));
		// Still known to the escrow (sessions can settle) but not active.
		let summary = <Registry as ProviderRegistry<_, _>>::provider(&ALICE).unwrap();
		assert!(!summary.active);
		System::assert_last_event(
			Event::ProviderDeregistered { provider: ALICE, unlock_at: 1 + UNBONDING_PERIOD }.into(),
		);
		// Nothing else is possible but withdrawing.
		assert_noop!(Registry::deregister_provider(RuntimeOrigin::signed(ALICE)), Error::<Test>::ProviderDeregistered);
		assert_noop!(Registry::bond_extra(RuntimeOrigin::signed(ALICE), 1), Error::<Test>::ProviderDeregistered);
		assert_noop!(Registry::unbond(RuntimeOrigin::signed(ALICE), 1), Error::<Test>::ProviderDeregistered);
		assert_noop!(
			Registry::update_provider(RuntimeOrigin::signed(ALICE), Some(Services::Vpn), None, None, None, None),
			Error::<Test>::ProviderDeregistered
		);

		System::set_block_number(1 + UNBONDING_PERIOD);
		assert_ok!(Registry::withdraw_unbonded(RuntimeOrigin::signed(ALICE)));
		assert!(Providers::<Test>::get(ALICE).is_none());
		assert_eq!(ProviderCount::<Test>::get(), 0);
		assert_eq!(held(ALICE), 0);
		assert_eq!(Balances::balance(&ALICE), 100_000);
		System::assert_last_event(Event::ProviderRemoved { provider: ALICE }.into());
		// The key is free again and Alice can come back.
		assert_ok!(register(ALICE, 1, MIN_STAKE));
	});
}

#[test]
fn deregister_fails_for_unknown_account() {
	new_test_ext().execute_with(|| {
		assert_noop!(Registry::deregister_provider(RuntimeOrigin::signed(BOB)), Error::<Test>::NotRegistered);
	});
}

fn reason(s: &str) -> SlashReasonOf<Test> {
	s.as_bytes().to_vec().try_into().unwrap()
}

#[test]
fn force_slash_takes_stake_then_unbonding_and_pays_the_destination() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 3_000));
		assert_ok!(Registry::unbond(RuntimeOrigin::signed(ALICE), 1_000));
		assert_ok!(Registry::unbond(RuntimeOrigin::signed(ALICE), 500));
		// stake 1_500; chunks [1_000, 500]
		assert_ok!(Registry::force_slash(RuntimeOrigin::root(), ALICE, 2_200, reason("double billing")));
		let r = record(ALICE);
		assert_eq!(r.stake, 0);
		// Newest chunk (500) taken first, then 200 of the older one.
		assert_eq!(r.unbonding.iter().map(|c| c.amount).collect::<Vec<_>>(), vec![800]);
		assert_eq!(held(ALICE), 800);
		assert_eq!(Balances::balance(&TREASURY), 10 + 2_200);
		System::assert_last_event(
			Event::ProviderSlashed {
				provider: ALICE,
				amount: 2_200,
				reason: reason("double billing"),
				destination: Some(TREASURY),
			}
			.into(),
		);
	});
}

#[test]
fn force_slash_can_burn() {
	new_test_ext().execute_with(|| {
		SlashTo::set(None);
		assert_ok!(register(ALICE, 1, 3_000));
		let issuance = Balances::total_issuance();
		assert_ok!(Registry::force_slash(RuntimeOrigin::root(), ALICE, 1_000, reason("fraud")));
		assert_eq!(Balances::total_issuance(), issuance - 1_000);
		assert_eq!(record(ALICE).stake, 2_000);
		SlashTo::set(Some(TREASURY));
	});
}

#[test]
fn force_slash_errors() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, 3_000));
		assert_noop!(
			Registry::force_slash(RuntimeOrigin::signed(BOB), ALICE, 1, reason("x")),
			DispatchError::BadOrigin
		);
		assert_noop!(
			Registry::force_slash(RuntimeOrigin::root(), ALICE, 3_001, reason("x")),
			Error::<Test>::SlashTooLarge
		);
		assert_noop!(Registry::force_slash(RuntimeOrigin::root(), ALICE, 0, reason("x")), Error::<Test>::ZeroAmount);
		assert_noop!(Registry::force_slash(RuntimeOrigin::root(), BOB, 1, reason("x")), Error::<Test>::NotRegistered);
	});
}

#[test]
fn slashing_trait_enforces_reason_length_and_a_fully_slashed_provider_can_leave() {
	new_test_ext().execute_with(|| {
		assert_ok!(register(ALICE, 1, MIN_STAKE));
		assert_noop!(
			<Registry as ProviderSlashing<_, _>>::slash(&ALICE, 1, &[b'x'; 65]),
			Error::<Test>::SlashReasonTooLong
		);
		assert_ok!(Registry::deregister_provider(RuntimeOrigin::signed(ALICE)));
		assert_ok!(<Registry as ProviderSlashing<_, _>>::slash(&ALICE, MIN_STAKE, b"all of it"));
		assert_eq!(held(ALICE), 0);
		System::set_block_number(1 + UNBONDING_PERIOD);
		assert_ok!(Registry::withdraw_unbonded(RuntimeOrigin::signed(ALICE)));
		assert!(Providers::<Test>::get(ALICE).is_none());
	});
}

#[test]
fn genesis_config_registers_bootstrap_providers() {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> { balances: vec![(ALICE, 10_000)], ..Default::default() }
		.assimilate_storage(&mut storage)
		.unwrap();
	crate::GenesisConfig::<Test> {
		providers: vec![GenesisProvider {
			account: ALICE,
			services: Services::Vpn,
			endpoints: vec!["127.0.0.1:51820".into()],
			country: "NL".into(),
			region: "Amsterdam".into(),
			hosting: Hosting::Residential,
			price_per_gib: 10,
			price_per_hour: 1,
			service_key: key(3),
			stake: MIN_STAKE,
		}],
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	sp_io::TestExternalities::new(storage).execute_with(|| {
		assert!(Registry::is_active(&ALICE));
		assert_eq!(held(ALICE), MIN_STAKE);
		let record = Providers::<Test>::get(ALICE).unwrap();
		assert_eq!(&record.location.region[..], b"Amsterdam");
		assert_eq!(record.location.hosting, Hosting::Residential);
		assert_eq!(record.prices, Prices { per_gib: 10, per_hour: 1 });
		Registry::do_try_state().unwrap();
	});
}

#[test]
fn a_genesis_provider_reads_from_a_chain_spec_with_defaults_and_refuses_unknown_fields() {
	let key_hex = format!("0x{}", "03".repeat(1952));
	let json = format!(
		r#"{{"account":1,"services":"Both","endpoints":["x:1"],"country":"DE","pricePerGib":5,"pricePerHour":0,"serviceKey":"{key_hex}","stake":100}}"#
	);
	let provider: GenesisProvider<u64, u128> = serde_json::from_str(&json).unwrap();
	assert_eq!(provider.region, "");
	assert_eq!(provider.hosting, Hosting::Datacenter);
	assert_eq!(provider.service_key, key(3));
	let typo = json.replace("pricePerGib", "pricePerGiB");
	assert!(serde_json::from_str::<GenesisProvider<u64, u128>>(&typo).is_err());
}

#[test]
fn integrity_test_passes() {
	new_test_ext().execute_with(|| {
		use frame_support::traits::Hooks;
		<Registry as Hooks<u64>>::integrity_test();
	});
}

/// Registers `who` with the given services, country, hosting, price per GiB, price per hour
/// and stake (key byte = account id).
fn register_with(
	who: AccountId,
	services: Services,
	country: &[u8; 2],
	hosting: Hosting,
	per_gib: Balance,
	per_hour: Balance,
	stake: Balance,
) {
	assert_ok!(Registry::register_provider(
		RuntimeOrigin::signed(who),
		services,
		endpoints(&["203.0.113.1:51820"]),
		Location { country: *country, region: Default::default(), hosting },
		Prices { per_gib, per_hour },
		Box::new(key(who as u8)),
		stake,
	));
}

fn listed(filter: ProviderFilter<Balance>, order: ProviderOrder, offset: u32, limit: u32) -> (u32, Vec<AccountId>) {
	let page = Registry::query_providers(filter, order, offset, limit);
	(page.total, page.providers.into_iter().map(|p| p.account).collect())
}

/// Five providers: ALICE VPN/DE/dc, BOB CDN/BR/res, CHARLIE both/DE/res, 5 VPN/BR/dc (below
/// the minimum after unbonding), 6 CDN/DE/dc (deregistered).
fn query_fixture() {
	for who in [5, 6] {
		<Balances as frame_support::traits::fungible::Mutate<_>>::set_balance(&who, 100_000);
	}
	register_with(ALICE, Services::Vpn, b"DE", Hosting::Datacenter, 30, 5, 5_000);
	register_with(BOB, Services::Cdn, b"BR", Hosting::Residential, 10, 0, 2_000);
	register_with(CHARLIE, Services::Both, b"DE", Hosting::Residential, 20, 7, 3_000);
	register_with(5, Services::Vpn, b"BR", Hosting::Datacenter, 5, 1, 1_500);
	assert_ok!(Registry::unbond(RuntimeOrigin::signed(5), 600));
	register_with(6, Services::Cdn, b"DE", Hosting::Datacenter, 1, 0, 4_000);
	assert_ok!(Registry::deregister_provider(RuntimeOrigin::signed(6)));
}

#[test]
fn listing_filters_orders_and_pages() {
	new_test_ext().execute_with(|| {
		query_fixture();
		let all = ProviderFilter { active_only: false, ..Default::default() };
		let by_stake = ProviderOrder::StakeDescending;
		// Active only by default: 5 (below minimum) and 6 (deregistered) are not listed.
		assert_eq!(listed(Default::default(), by_stake, 0, 10), (3, vec![ALICE, CHARLIE, BOB]));
		// Bonded stake: 6 has none left (all unbonding), 5 has 900.
		assert_eq!(listed(all.clone(), by_stake, 0, 10), (5, vec![ALICE, CHARLIE, BOB, 5, 6]));
		assert_eq!(
			listed(all.clone(), ProviderOrder::PricePerGibAscending, 0, 10),
			(5, vec![6, 5, BOB, CHARLIE, ALICE])
		);
		// Equal prices per hour (BOB and 6 at 0) are ordered by account.
		assert_eq!(
			listed(all.clone(), ProviderOrder::PricePerHourAscending, 0, 10),
			(5, vec![BOB, 6, 5, ALICE, CHARLIE])
		);
		assert_eq!(listed(all.clone(), ProviderOrder::RegisteredAtAscending, 0, 10).0, 5);
		// Filters.
		let f = |f: ProviderFilter<Balance>| listed(f, by_stake, 0, 10);
		assert_eq!(
			f(ProviderFilter { service: Some(ServiceKind::Vpn), ..Default::default() }),
			(2, vec![ALICE, CHARLIE])
		);
		assert_eq!(
			f(ProviderFilter { service: Some(ServiceKind::Cdn), ..Default::default() }),
			(2, vec![CHARLIE, BOB])
		);
		assert_eq!(f(ProviderFilter { country: Some(*b"BR"), ..all.clone() }), (2, vec![BOB, 5]));
		assert_eq!(
			f(ProviderFilter { hosting: Some(Hosting::Residential), ..Default::default() }),
			(2, vec![CHARLIE, BOB])
		);
		assert_eq!(f(ProviderFilter { max_price_per_gib: Some(20), ..Default::default() }), (2, vec![CHARLIE, BOB]));
		assert_eq!(f(ProviderFilter { max_price_per_hour: Some(5), ..Default::default() }), (2, vec![ALICE, BOB]));
		assert_eq!(f(ProviderFilter { min_stake: Some(3_000), ..Default::default() }), (2, vec![ALICE, CHARLIE]));
		assert_eq!(
			f(ProviderFilter {
				service: Some(ServiceKind::Vpn),
				country: Some(*b"DE"),
				max_price_per_gib: Some(25),
				..Default::default()
			}),
			(1, vec![CHARLIE])
		);
		assert_eq!(f(ProviderFilter { country: Some(*b"FR"), ..Default::default() }), (0, vec![]));
		// Pages: stable, disjoint, and the total counts all matches.
		assert_eq!(listed(all.clone(), by_stake, 0, 2), (5, vec![ALICE, CHARLIE]));
		assert_eq!(listed(all.clone(), by_stake, 2, 2), (5, vec![BOB, 5]));
		assert_eq!(listed(all.clone(), by_stake, 4, 2), (5, vec![6]));
		assert_eq!(listed(all.clone(), by_stake, 5, 2), (5, vec![]));
		assert_eq!(listed(all, by_stake, u32::MAX, u32::MAX), (5, vec![]));
	});
}

#[test]
fn listing_limit_is_clamped() {
	new_test_ext().execute_with(|| {
		for who in 10..(10 + MAX_PAGE_LIMIT as u64 + 5) {
			<Balances as frame_support::traits::fungible::Mutate<_>>::set_balance(&who, 10_000);
			register_with(who, Services::Vpn, b"DE", Hosting::Datacenter, 1, 1, 1_000);
		}
		let (total, page) = listed(Default::default(), ProviderOrder::StakeDescending, 0, u32::MAX);
		assert_eq!(total, MAX_PAGE_LIMIT + 5);
		assert_eq!(page.len(), MAX_PAGE_LIMIT as usize);
		assert_eq!(listed(Default::default(), ProviderOrder::StakeDescending, 0, 0).1.len(), 0);
	});
}

#[test]
fn provider_query_shows_every_field() {
	new_test_ext().execute_with(|| {
		query_fixture();
		let p = Registry::query_provider(5).expect("registered");
		assert_eq!(p.account, 5);
		assert_eq!(p.services, Services::Vpn);
		assert_eq!(p.endpoints, vec![b"203.0.113.1:51820".to_vec()]);
		assert_eq!(p.country, *b"BR");
		assert_eq!(p.hosting, Hosting::Datacenter);
		assert_eq!(p.prices, Prices { per_gib: 5, per_hour: 1 });
		assert_eq!(p.service_key, key(5));
		assert_eq!((p.stake, p.unbonding), (900, 600));
		assert_eq!((p.status, p.active), (ProviderStatus::Registered, false));
		assert_eq!(p.registered_at, 1);
		let d = Registry::query_provider(6).expect("deregistered providers stay visible");
		assert_eq!((d.status, d.active, d.stake, d.unbonding), (ProviderStatus::Deregistered, false, 0, 4_000));
		assert_eq!(Registry::query_provider(POOR), None);
	});
}

#[test]
fn stats_count_services_countries_and_stake() {
	new_test_ext().execute_with(|| {
		let empty = Registry::query_stats();
		assert_eq!(empty.providers, ProviderCounts::default());
		assert!(empty.countries.is_empty());
		assert_eq!(empty.min_stake, MIN_STAKE);
		query_fixture();
		let s = Registry::query_stats();
		let c = |registered, active| ProviderCounts { registered, active };
		assert_eq!(s.providers, c(5, 3));
		assert_eq!(s.vpn, c(3, 2));
		assert_eq!(s.cdn, c(3, 2));
		assert_eq!(s.countries, vec![(*b"BR", c(2, 1)), (*b"DE", c(3, 2))]);
		assert_eq!(s.total_stake, 5_000 + 2_000 + 3_000 + 900);
		assert_eq!(s.total_unbonding, 600 + 4_000);
	});
}

mod index {
	use proptest::prelude::*;

	use super::*;
	use crate::index::{ProviderChange, ProviderIndex};

	/// One provider's record: what the listing filters and orders look at, drawn small so
	/// ties (equal stakes, prices, blocks) are common.
	fn arbitrary_record() -> impl Strategy<Value = ProviderRecordOf<Test>> {
		(0u8..3, 0u8..3, any::<bool>(), (0u128..4, 0u128..4), 0u128..4, 0u128..3, any::<bool>(), 0u64..4, any::<u8>())
			.prop_map(|(services, country, residential, (per_gib, per_hour), stake, unbonding, gone, at, key_byte)| {
				let mut unbonding_chunks = Vec::new();
				if unbonding > 0 {
					unbonding_chunks.push(UnbondingChunk { amount: unbonding * 100, unlock_at: 9 });
				}
				ProviderRecord {
					services: [Services::Vpn, Services::Cdn, Services::Both][usize::from(services)],
					endpoints: endpoints(&["vpn.example.net:51820"]),
					location: Location {
						country: [b"DE", b"BR", b"JP"][usize::from(country)].to_owned(),
						region: Default::default(),
						hosting: if residential { Hosting::Residential } else { Hosting::Datacenter },
					},
					prices: Prices { per_gib, per_hour },
					service_key: key(key_byte),
					stake: stake * MIN_STAKE / 2,
					unbonding: unbonding_chunks.try_into().unwrap(),
					status: if gone { ProviderStatus::Deregistered } else { ProviderStatus::Registered },
					registered_at: at,
				}
			})
	}

	fn arbitrary_filter() -> impl Strategy<Value = ProviderFilter<Balance>> {
		(
			proptest::option::of(prop_oneof![Just(ServiceKind::Vpn), Just(ServiceKind::Cdn)]),
			proptest::option::of(prop_oneof![Just(*b"DE"), Just(*b"BR"), Just(*b"US")]),
			proptest::option::of(prop_oneof![Just(Hosting::Datacenter), Just(Hosting::Residential)]),
			proptest::option::of(0u128..4),
			proptest::option::of(0u128..4),
			proptest::option::of(0u128..2000),
			any::<bool>(),
		)
			.prop_map(
				|(service, country, hosting, max_price_per_gib, max_price_per_hour, min_stake, active_only)| {
					ProviderFilter {
						service,
						country,
						hosting,
						max_price_per_gib,
						max_price_per_hour,
						min_stake,
						active_only,
					}
				},
			)
	}

	fn arbitrary_order() -> impl Strategy<Value = ProviderOrder> {
		prop_oneof![
			Just(ProviderOrder::StakeDescending),
			Just(ProviderOrder::PricePerGibAscending),
			Just(ProviderOrder::PricePerHourAscending),
			Just(ProviderOrder::RegisteredAtAscending),
		]
	}

	proptest! {
		#![proptest_config(ProptestConfig::with_cases(64))]

		/// Random registry changes (records set and removed in any order) applied to the state
		/// and, as the node does, to the index: every listing, lookup and the statistics agree.
		#[test]
		fn the_index_answers_as_the_runtime_does(
			changes in proptest::collection::vec((0u64..12, proptest::option::of(arbitrary_record())), 1..40),
			queries in proptest::collection::vec((arbitrary_filter(), arbitrary_order(), 0u32..14, 0u32..120), 1..12),
		) {
			new_unchecked_ext().execute_with(|| {
				let mut index = ProviderIndex::new(MIN_STAKE);
				// One listing between changes too: what a change leaves of the index's lists
				// for listings (made at the first listing after a change) is current.
				let (between_filter, between_order, between_offset, between_limit) = queries[0].clone();
				for (who, record) in changes {
					let listed = index.providers(&between_filter, between_order, between_offset, between_limit);
					prop_assert_eq!(
						listed,
						Registry::query_providers(between_filter.clone(), between_order, between_offset, between_limit)
					);
					match record {
						Some(r) => Providers::<Test>::insert(who, r),
						None => Providers::<Test>::remove(who),
					}
					let change = index.apply(who, Registry::query_provider(who));
					if let Some(ProviderChange::Added(p) | ProviderChange::Changed(p)) = &change {
						let runtime = Registry::query_provider(who);
						prop_assert_eq!(Some(p), runtime.as_ref());
					}
				}
				for who in 0..12 {
					prop_assert_eq!(index.provider(&who).cloned(), Registry::query_provider(who));
				}
				prop_assert_eq!(index.stats(), Registry::query_stats());
				for (filter, order, offset, limit) in queries {
					prop_assert_eq!(
						index.providers(&filter, order, offset, limit),
						Registry::query_providers(filter.clone(), order, offset, limit),
						"{:?} {:?} {} {}", filter, order, offset, limit
					);
				}
				Ok(())
			})?;
		}
	}

	#[test]
	fn the_index_reports_additions_changes_and_removals_once() {
		new_unchecked_ext().execute_with(|| {
			let mut index = ProviderIndex::new(MIN_STAKE);
			assert_ok!(register(1, 1, MIN_STAKE));
			let added = index.apply(1, Registry::query_provider(1));
			assert!(matches!(added, Some(ProviderChange::Added(p)) if p.account == 1));
			assert_eq!(index.apply(1, Registry::query_provider(1)), None, "nothing changed");
			assert_ok!(Registry::bond_extra(RuntimeOrigin::signed(1), 5));
			let changed = index.apply(1, Registry::query_provider(1));
			assert!(matches!(changed, Some(ProviderChange::Changed(p)) if p.stake == MIN_STAKE + 5));
			Providers::<Test>::remove(1);
			assert_eq!(index.apply(1, None), Some(ProviderChange::Removed(1)));
			assert_eq!(index.apply(1, None), None);
			assert!(index.is_empty());
		});
	}
}
