//! The provider registry in the running runtime: real signed extrinsics register two
//! providers in different countries, their stake is held, storage shows their records, and
//! unbonding below the minimum stake takes one out of the active set.

use std::time::Duration;

use codec::Encode;
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::{Runtime, RuntimeCall, RuntimeEvent, UNIT};
use interlattice_tests::{chain, Node, NodeConfig};
use pallet_provider_registry::{
	Call as RegistryCall, Hosting, Location, Prices, ProviderRecord, ProviderStatus, Services,
};
use sp_keyring::Sr25519Keyring;

const MINUTE: Duration = Duration::from_secs(60);

fn register_call(country: &[u8; 2], endpoint: &str, key_seed: u8, stake: u128) -> RuntimeCall {
	RuntimeCall::ProviderRegistry(RegistryCall::register_provider {
		services: Services::Both,
		endpoints: vec![endpoint.as_bytes().to_vec().try_into().unwrap()].try_into().unwrap(),
		location: Location {
			country: *country,
			region: b"somewhere".to_vec().try_into().unwrap(),
			hosting: Hosting::Datacenter,
		},
		prices: Prices { per_gib: UNIT / 10, per_hour: UNIT / 100 },
		service_key: Box::new(MlDsaKeyPair::from_seed([key_seed; 32]).public().clone()),
		stake,
	})
}

/// Submits `call` signed by `who` and waits for it to be included; returns the block hash
/// and the events of that extrinsic.
fn submit_and_wait(
	node: &mut Node,
	who: Sr25519Keyring,
	call: RuntimeCall,
) -> (String, Vec<RuntimeEvent>) {
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let nonce = chain::next_nonce(&node.rpc, &who.to_account_id()).unwrap();
	let xt = chain::signed_extrinsic(call, who, nonce, genesis);
	let xt_hex = format!("0x{}", hex::encode(xt.encode()));
	let start = node.rpc.best_number().unwrap();
	chain::submit(&node.rpc, &xt).expect("the pool accepts the extrinsic");
	let (block, index) = node
		.wait(MINUTE, "inclusion", |n| chain::find_extrinsic(&n.rpc, &xt_hex, start))
		.unwrap();
	let events = chain::events(&node.rpc, &block)
		.unwrap()
		.into_iter()
		.filter(|e| e.phase == frame_system::Phase::ApplyExtrinsic(index as u32))
		.map(|e| e.event)
		.collect();
	(block, events)
}

fn record(node: &Node, who: Sr25519Keyring, at: &str) -> Option<ProviderRecord<Runtime>> {
	let key = pallet_provider_registry::Providers::<Runtime>::hashed_key_for(who.to_account_id());
	chain::storage(&node.rpc, &key, Some(at)).unwrap()
}

#[test]
fn providers_register_with_real_extrinsics_and_unbonding_delists() {
	let dir = tempfile::tempdir().unwrap();
	let mut config = NodeConfig::new("dev", dir.path());
	config.validator = Some("alice");
	let mut node = Node::start(config).expect("dev node starts");
	node.wait(MINUTE, "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();

	let stake = 2_000 * UNIT;
	let (block, events) =
		submit_and_wait(&mut node, Sr25519Keyring::Bob, register_call(b"DE", "vpn.bob.example:51820", 1, stake));
	assert!(
		events.iter().any(|e| matches!(e,
			RuntimeEvent::ProviderRegistry(pallet_provider_registry::Event::ProviderRegistered { country, .. })
				if country == b"DE")),
		"{events:?}"
	);
	let bob = record(&node, Sr25519Keyring::Bob, &block).expect("Bob is registered");
	assert_eq!(bob.stake, stake);
	assert_eq!(bob.status, ProviderStatus::Registered);
	let account = chain::account(&node.rpc, &Sr25519Keyring::Bob.to_account_id(), Some(&block)).unwrap();
	assert!(account.data.reserved >= stake, "the stake is held: {:?}", account.data);

	let (_, events) = submit_and_wait(
		&mut node,
		Sr25519Keyring::Charlie,
		register_call(b"BR", "cdn.charlie.example:443", 2, stake),
	);
	assert!(matches!(events.last(), Some(RuntimeEvent::System(frame_system::Event::ExtrinsicSuccess { .. }))));

	// A third registration with Bob's service key fails on-chain with a named error.
	let (_, events) =
		submit_and_wait(&mut node, Sr25519Keyring::Dave, register_call(b"FR", "x.example:1", 1, stake));
	assert!(
		events.iter().any(|e| matches!(e, RuntimeEvent::System(frame_system::Event::ExtrinsicFailed { .. }))),
		"{events:?}"
	);

	// Charlie unbonds below the minimum stake: still registered, no longer active.
	let (block, _) = submit_and_wait(
		&mut node,
		Sr25519Keyring::Charlie,
		RuntimeCall::ProviderRegistry(RegistryCall::unbond { amount: 1_500 * UNIT }),
	);
	let charlie = record(&node, Sr25519Keyring::Charlie, &block).unwrap();
	assert_eq!(charlie.stake, 500 * UNIT);
	assert!(!charlie.is_active(1_000 * UNIT));
	assert!(record(&node, Sr25519Keyring::Bob, &block).unwrap().is_active(1_000 * UNIT));
	assert!(record(&node, Sr25519Keyring::Dave, &block).is_none());
}
