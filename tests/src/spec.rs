//! Chain specs with large genesis states, for benchmarks: the dev preset's patch is extended,
//! the genesis state is built natively (the Wasm genesis builder takes its patch in one
//! allocation, limited to 32 MiB in the runtime), optionally changed by running runtime code
//! natively on it, and written as a raw spec with the dev runtime's `:code`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sp_runtime::BuildStorage;

use crate::node::node_binary;

/// `build-spec --chain dev [--raw]` of the node binary.
pub fn dev_spec(raw: bool) -> Value {
	let mut args = vec!["build-spec", "--chain", "dev"];
	if raw {
		args.push("--raw");
	}
	let out = std::process::Command::new(node_binary())
		.args(args)
		.stderr(std::process::Stdio::null())
		.output()
		.expect("node runs");
	assert!(out.status.success(), "build-spec failed");
	serde_json::from_slice(&out.stdout).expect("spec is JSON")
}

/// The dev preset's genesis patch.
pub fn dev_patch() -> Value {
	dev_spec(false)["genesis"]["runtimeGenesis"]["patch"].clone()
}

fn merge(base: &mut Value, patch: Value) {
	match (base, patch) {
		(Value::Object(b), Value::Object(p)) => {
			for (k, v) in p {
				merge(b.entry(k).or_insert(Value::Null), v);
			}
		},
		(b, p) => *b = p,
	}
}

/// Builds the genesis state of `patch` natively, runs `then` on it (runtime code, natively),
/// and writes a raw dev chain spec with that state to `dir/name.json`.
pub fn raw_spec_with(dir: &Path, name: &str, patch: Value, then: impl FnOnce()) -> PathBuf {
	let mut config = serde_json::to_value(interlattice_runtime::RuntimeGenesisConfig::default()).unwrap();
	merge(&mut config, patch);
	let config: interlattice_runtime::RuntimeGenesisConfig =
		serde_json::from_value(config).expect("valid genesis config");
	let storage = config.build_storage().expect("genesis state builds");
	let mut ext = sp_state_machine::BasicExternalities::new(storage);
	ext.execute_with(then);
	let pairs = ext.into_storages().top;
	let mut spec = dev_spec(true);
	let top = spec["genesis"]["raw"]["top"].as_object_mut().unwrap();
	let code_key = format!("0x{}", hex::encode(b":code"));
	let code = top.remove(&code_key).expect("raw spec has :code");
	top.clear();
	for (k, v) in pairs {
		top.insert(format!("0x{}", hex::encode(k)), Value::String(format!("0x{}", hex::encode(v))));
	}
	top.insert(code_key, code);
	let path = dir.join(format!("{name}.json"));
	std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
	path
}

/// Countries the providers of [`registry_spec`] are spread over.
pub const REGISTRY_COUNTRIES: [&str; 25] = [
	"AR", "AU", "BR", "CA", "CH", "DE", "EE", "ES", "FI", "FR", "GB", "IN", "IS", "JP", "KE", "KR", "MX", "NL", "NO",
	"PL", "RO", "SE", "SG", "US", "ZA",
];

/// The account of provider `i` of [`registry_spec`].
pub fn registry_account(i: usize) -> sp_core::crypto::AccountId32 {
	sp_crypto_hashing::blake2_256(format!("registry-bench/{i}").as_bytes()).into()
}

/// A raw dev chain spec whose genesis registers `n` more providers with distinct real
/// ML-DSA-65 service keys, spread over 25 countries, both services and a range of prices and
/// stakes (for the registry benchmark and load tests). The state is built natively from the
/// dev preset plus the providers (the Wasm genesis builder cannot take a 40 MB patch: one
/// allocation in the runtime is limited to 32 MiB), then written into the dev raw spec in
/// place of its state, keeping its `:code`.
pub fn registry_spec(n: usize, dir: &Path) -> PathBuf {
	use interlattice_runtime::{MILLI_UNIT, UNIT};
	use serde_json::json;
	let mut patch = dev_patch();
	let started = std::time::Instant::now();
	for i in 0..n {
		let who = registry_account(i);
		let stake = 1_000 * UNIT + (i as u128 % 97) * 10 * UNIT;
		patch["balances"]["balances"].as_array_mut().unwrap().push(json!([who, 2 * stake]));
		let services = ["Vpn", "Cdn", "Both"][i % 3];
		let mut seed = [0u8; 32];
		seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
		let key = interlattice_pq_crypto::keys::MlDsaKeyPair::from_seed(seed).public().clone();
		patch["providerRegistry"]["providers"].as_array_mut().unwrap().push(json!({
			"account": who,
			"services": services,
			"endpoints": [format!("198.51.100.{}:{}", i % 250, 7000 + i % 1000)],
			"country": REGISTRY_COUNTRIES[i % REGISTRY_COUNTRIES.len()],
			"pricePerGib": (100 + (i as u128 * 7919) % 900) * MILLI_UNIT,
			"pricePerHour": (i as u128 % 11) * 10 * MILLI_UNIT,
			"serviceKey": key,
			"stake": stake,
		}));
	}
	eprintln!("[spec] {n} providers with real ML-DSA-65 keys generated in {:.1?}", started.elapsed());
	let path = raw_spec_with(dir, "registry", patch, || {});
	eprintln!("[spec] chain spec: {} MB", std::fs::metadata(&path).unwrap().len() / 1_000_000);
	path
}
