//! The committed chain specs under `chain-spec/` are what the runtime's genesis presets
//! produce. When this fails, regenerate them with `scripts/generate-chain-specs.sh` and commit
//! the result (a deliberate genesis change), or find what changed the runtime.
//!
//! The runtime's Wasm inside a spec is compared by its version (spec name, spec version,
//! transaction version, APIs), not byte for byte: a Rust build is only reproducible at the
//! same checkout path (symbol hashes include it), so CI's clone produces other bytes for the
//! same source. Everything else in the spec is compared exactly.

use std::{path::PathBuf, process::Command};

use codec::Decode;
use interlattice_tests::node::node_binary;
use serde_json::Value;
use sp_version::RuntimeVersion;

/// Storage key of the runtime code, `:code`, in raw specs.
const CODE_KEY: &str = "0x3a636f6465";

fn chain_spec_dir() -> PathBuf {
	PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../chain-spec")
}

fn export(chain: &str, raw: bool) -> Value {
	let mut cmd = Command::new(node_binary());
	cmd.args(["export-chain-spec", "--chain", chain]);
	if raw {
		cmd.arg("--raw");
	}
	let out = cmd.output().expect("node runs");
	assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
	serde_json::from_slice(&out.stdout).expect("the node exports JSON")
}

/// Removes the Wasm code from a spec and returns it.
fn take_code(spec: &mut Value, raw: bool) -> Vec<u8> {
	let code = if raw {
		spec["genesis"]["raw"]["top"].as_object_mut().and_then(|m| m.remove(CODE_KEY))
	} else {
		spec["genesis"]["runtimeGenesis"].as_object_mut().and_then(|m| m.remove("code"))
	};
	let hex = code.and_then(|c| c.as_str().map(str::to_owned)).expect("spec has code");
	hex::decode(hex.trim_start_matches("0x")).expect("code is hex")
}

/// The `RuntimeVersion` embedded in a (possibly compressed) runtime Wasm blob, with its API
/// list (kept in its own `runtime_apis` section: 8-byte id + little-endian u32 version each).
fn runtime_version(code: &[u8]) -> RuntimeVersion {
	let wasm = sp_maybe_compressed_blob::decompress(code, 50 * 1024 * 1024).expect("decompresses");
	assert_eq!(&wasm[..4], b"\0asm", "not Wasm");
	let (mut version, mut apis) = (None, None);
	let mut rest = &wasm[8..];
	while !rest.is_empty() {
		let id = rest[0];
		let (size, n) = leb128(&rest[1..]);
		let body = &rest[1 + n..1 + n + size];
		if id == 0 {
			let (name_len, m) = leb128(body);
			let content = &body[m + name_len..];
			match &body[m..m + name_len] {
				b"runtime_version" => version = RuntimeVersion::decode(&mut &content[..]).ok(),
				b"runtime_apis" => apis = Some(content.to_vec()),
				_ => {},
			}
		}
		rest = &rest[1 + n + size..];
	}
	let mut version = version.expect("the Wasm has a runtime_version section");
	let apis = apis.expect("the Wasm has a runtime_apis section");
	// The section's order is not stable between builds; the set is what matters.
	let mut list: Vec<([u8; 8], u32)> =
		apis.chunks(12).map(|c| (c[..8].try_into().unwrap(), u32::from_le_bytes(c[8..].try_into().unwrap()))).collect();
	list.sort();
	version.apis = list.into();
	version
}

fn leb128(bytes: &[u8]) -> (usize, usize) {
	let (mut value, mut shift) = (0usize, 0);
	for (i, b) in bytes.iter().enumerate() {
		value |= ((b & 0x7f) as usize) << shift;
		if b & 0x80 == 0 {
			return (value, i + 1);
		}
		shift += 7;
	}
	panic!("truncated LEB128");
}

#[test]
fn committed_chain_specs_match_the_runtime() {
	let mut drifted = Vec::new();
	for preset in ["development", "local_testnet", "testnet"] {
		for raw in [false, true] {
			let file = chain_spec_dir().join(if raw { format!("{preset}-raw.json") } else { format!("{preset}.json") });
			let mut committed: Value =
				serde_json::from_slice(&std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
					.unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
			let mut built = export(preset, raw);
			let committed_version = runtime_version(&take_code(&mut committed, raw));
			let built_version = runtime_version(&take_code(&mut built, raw));
			if committed != built {
				drifted.push(format!("{} (genesis)", file.display()));
			}
			if committed_version != built_version {
				drifted.push(format!(
					"{} (runtime {:?} v{} committed, {:?} v{} built)",
					file.display(),
					committed_version.spec_name,
					committed_version.spec_version,
					built_version.spec_name,
					built_version.spec_version
				));
			}
		}
	}
	assert!(
		drifted.is_empty(),
		"chain specs differ from what the runtime produces: {drifted:#?}\n\
		 regenerate with scripts/generate-chain-specs.sh and commit them if the change is intended"
	);
}

#[test]
fn the_version_check_sees_the_runtime() {
	let mut spec = export("development", false);
	let version = runtime_version(&take_code(&mut spec, false));
	assert_eq!(version.spec_name, "interlattice");
	assert_eq!(version.spec_version, interlattice_runtime::VERSION.spec_version);
	let mut apis = interlattice_runtime::VERSION.apis.to_vec();
	apis.sort();
	assert_eq!(version.apis.to_vec(), apis);
}

#[test]
fn testnet_spec_has_four_validators_and_dev_has_one() {
	let count = |name: &str| {
		let spec: Value =
			serde_json::from_slice(&std::fs::read(chain_spec_dir().join(format!("{name}.json"))).unwrap()).unwrap();
		let patch = &spec["genesis"]["runtimeGenesis"]["patch"];
		(
			patch["aura"]["authorities"].as_array().map(Vec::len),
			patch["grandpa"]["authorities"].as_array().map(Vec::len),
			spec["properties"]["tokenSymbol"].clone(),
		)
	};
	assert_eq!(count("development"), (Some(1), Some(1), "LAT".into()));
	assert_eq!(count("local_testnet"), (Some(2), Some(2), "LAT".into()));
	assert_eq!(count("testnet"), (Some(4), Some(4), "LAT".into()));
}
