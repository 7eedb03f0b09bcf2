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
		(Value::Object(b), Value::Object(p)) =>
			for (k, v) in p {
				merge(b.entry(k).or_insert(Value::Null), v);
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
