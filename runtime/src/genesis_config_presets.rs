//! Genesis presets, as JSON patches over the default genesis config. The node's chain specs
//! (`chain-spec/*.json`) are generated from these; never edit those files by hand.
//!
//! - `development`: one validator (Alice), for a single local node (`--dev`).
//! - `local_testnet`: two validators (Alice, Bob) on one machine.
//! - `testnet`: four validators (Alice, Bob, Charlie, Dave); GRANDPA finalizes with any three.
//!
//! All three use the well-known development keys: they are for development and testing only.
//! Each also endows the development ML-DSA account `alice` (`pq-key generate --dev-account
//! alice`) and puts its key on chain.

use crate::{
	AccountId, BalancesConfig, PqAccountsConfig, ProviderRegistryConfig, RuntimeGenesisConfig, SudoConfig, MILLI_UNIT,
	UNIT,
};
use alloc::{string::String, vec, vec::Vec};
use frame_support::build_struct_json_patch;
use interlattice_pq_crypto::{dev_keys, MlDsaPublicKey};
use pallet_provider_registry::{GenesisProvider, Hosting, Services};
use serde_json::Value;
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_consensus_grandpa::AuthorityId as GrandpaId;
use sp_genesis_builder::{self, PresetId};
use sp_keyring::{Ed25519Keyring, Sr25519Keyring};

/// Name of the four-validator preset.
pub const TESTNET_RUNTIME_PRESET: &str = "testnet";

/// Balance given to each endowed development account: one million LAT.
pub const ENDOWMENT: u128 = 1_000_000 * UNIT;

/// Control-channel endpoint of the bootstrap dVPN provider (Charlie) of every preset.
pub const DEV_VPN_ENDPOINT: &str = "127.0.0.1:7310";
/// HTTP endpoint of the bootstrap dCDN provider (Dave) of every preset.
pub const DEV_CDN_ENDPOINT: &str = "https://127.0.0.1:7320";
/// Stake of each bootstrap provider: ten thousand LAT.
pub const DEV_PROVIDER_STAKE: u128 = 10_000 * UNIT;

/// The bootstrap providers of development networks, with the well-known development service
/// keys (`interlattice_pq_crypto::dev_keys`): Charlie serves the VPN from Germany (0.5 LAT per
/// GiB, 0.1 LAT per hour), Dave the CDN from the Netherlands (0.2 LAT per GiB).
fn bootstrap_providers() -> ProviderRegistryConfig {
	let provider = |who: Sr25519Keyring,
	                key: &[u8; 1952],
	                services,
	                endpoint: &str,
	                country: &str,
	                price_per_gib,
	                price_per_hour| GenesisProvider {
		account: who.to_account_id(),
		services,
		endpoints: vec![String::from(endpoint)],
		country: String::from(country),
		region: String::new(),
		hosting: Hosting::Datacenter,
		price_per_gib,
		price_per_hour,
		service_key: MlDsaPublicKey(*key),
		stake: DEV_PROVIDER_STAKE,
	};
	ProviderRegistryConfig {
		providers: vec![
			provider(
				Sr25519Keyring::Charlie,
				dev_keys::CHARLIE,
				Services::Vpn,
				DEV_VPN_ENDPOINT,
				"DE",
				500 * MILLI_UNIT,
				100 * MILLI_UNIT,
			),
			provider(Sr25519Keyring::Dave, dev_keys::DAVE, Services::Cdn, DEV_CDN_ENDPOINT, "NL", 200 * MILLI_UNIT, 0),
		],
	}
}

/// The key of the development ML-DSA account `alice`.
pub fn dev_ml_dsa_account_key() -> MlDsaPublicKey {
	MlDsaPublicKey(*dev_keys::ALICE_ACCOUNT)
}

fn genesis(initial_authorities: Vec<(AuraId, GrandpaId)>, endowed_accounts: Vec<AccountId>, root: AccountId) -> Value {
	let ml_dsa_alice = dev_ml_dsa_account_key();
	let mut endowed_accounts = endowed_accounts;
	endowed_accounts.push(AccountId::new(ml_dsa_alice.account_id()));
	build_struct_json_patch!(RuntimeGenesisConfig {
		balances: BalancesConfig {
			balances: endowed_accounts.iter().cloned().map(|k| (k, ENDOWMENT)).collect::<Vec<_>>(),
		},
		aura: pallet_aura::GenesisConfig {
			authorities: initial_authorities.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
		},
		grandpa: pallet_grandpa::GenesisConfig {
			authorities: initial_authorities.iter().map(|x| (x.1.clone(), 1)).collect::<Vec<_>>(),
		},
		sudo: SudoConfig { key: Some(root) },
		provider_registry: bootstrap_providers(),
		pq_accounts: PqAccountsConfig { keys: vec![ml_dsa_alice] },
	})
}

/// Aura (sr25519) and GRANDPA (ed25519) keys of a well-known development validator.
fn authority(who: Sr25519Keyring) -> (AuraId, GrandpaId) {
	let ed = match who {
		Sr25519Keyring::Alice => Ed25519Keyring::Alice,
		Sr25519Keyring::Bob => Ed25519Keyring::Bob,
		Sr25519Keyring::Charlie => Ed25519Keyring::Charlie,
		Sr25519Keyring::Dave => Ed25519Keyring::Dave,
		Sr25519Keyring::Eve => Ed25519Keyring::Eve,
		Sr25519Keyring::Ferdie => Ed25519Keyring::Ferdie,
		_ => Ed25519Keyring::One,
	};
	(who.public().into(), ed.public().into())
}

/// The well-known development accounts (Alice … Ferdie and their stashes), all endowed.
fn dev_accounts() -> Vec<AccountId> {
	Sr25519Keyring::iter()
		.filter(|k| k != &Sr25519Keyring::One && k != &Sr25519Keyring::Two)
		.map(|k| k.to_account_id())
		.collect()
}

/// The `development` preset: Alice alone produces and finalizes blocks.
pub fn development_config_genesis() -> Value {
	genesis(vec![authority(Sr25519Keyring::Alice)], dev_accounts(), Sr25519Keyring::Alice.to_account_id())
}

/// The `local_testnet` preset: Alice and Bob.
pub fn local_testnet_config_genesis() -> Value {
	genesis(
		vec![authority(Sr25519Keyring::Alice), authority(Sr25519Keyring::Bob)],
		dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
	)
}

/// The `testnet` preset: Alice, Bob, Charlie and Dave.
pub fn testnet_config_genesis() -> Value {
	genesis(
		vec![
			authority(Sr25519Keyring::Alice),
			authority(Sr25519Keyring::Bob),
			authority(Sr25519Keyring::Charlie),
			authority(Sr25519Keyring::Dave),
		],
		dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
	)
}

/// The JSON patch of the preset named `id`, if there is one.
pub fn get_preset(id: &PresetId) -> Option<Vec<u8>> {
	let patch = match id.as_ref() {
		sp_genesis_builder::DEV_RUNTIME_PRESET => development_config_genesis(),
		sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET => local_testnet_config_genesis(),
		TESTNET_RUNTIME_PRESET => testnet_config_genesis(),
		_ => return None,
	};
	// Serializing a `serde_json::Value` cannot fail; an empty answer would still be caught by
	// the chain-spec tests rather than panic inside the runtime.
	serde_json::to_string(&patch).ok().map(String::into_bytes)
}

/// Names of the presets this runtime provides.
pub fn preset_names() -> Vec<PresetId> {
	vec![
		PresetId::from(sp_genesis_builder::DEV_RUNTIME_PRESET),
		PresetId::from(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET),
		PresetId::from(TESTNET_RUNTIME_PRESET),
	]
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn every_named_preset_builds_a_valid_genesis() {
		for name in preset_names() {
			let patch = get_preset(&name).expect("every listed preset exists");
			let value: Value = serde_json::from_slice(&patch).expect("preset is JSON");
			let mut config = RuntimeGenesisConfig::default();
			let mut full = serde_json::to_value(&config).expect("default config serializes");
			json_patch_merge(&mut full, value);
			config = serde_json::from_value(full).expect("patched preset is a valid config");
			sp_runtime::BuildStorage::build_storage(&config).expect("genesis storage builds");
		}
	}

	#[test]
	fn presets_have_one_two_and_four_validators() {
		let count = |v: Value| v["aura"]["authorities"].as_array().map(|a| a.len());
		assert_eq!(count(development_config_genesis()), Some(1));
		assert_eq!(count(local_testnet_config_genesis()), Some(2));
		assert_eq!(count(testnet_config_genesis()), Some(4));
		assert!(get_preset(&PresetId::from("no_such_preset")).is_none());
	}

	#[test]
	fn presets_ship_the_bootstrap_providers_with_the_development_service_keys() {
		for name in preset_names() {
			let patch: Value = serde_json::from_slice(&get_preset(&name).unwrap()).unwrap();
			let providers = patch["providerRegistry"]["providers"].as_array().expect("providers");
			assert_eq!(providers.len(), 2, "{name:?}");
			let key = |i: usize| serde_json::from_value::<MlDsaPublicKey>(providers[i]["serviceKey"].clone()).unwrap();
			assert_eq!(Some(key(0)), dev_keys::dev_public_key("charlie"));
			assert_eq!(Some(key(1)), dev_keys::dev_public_key("dave"));
		}
	}

	fn json_patch_merge(base: &mut Value, patch: Value) {
		match (base, patch) {
			(Value::Object(b), Value::Object(p)) => {
				for (k, v) in p {
					json_patch_merge(b.entry(k).or_insert(Value::Null), v);
				}
			},
			(b, p) => *b = p,
		}
	}
}
