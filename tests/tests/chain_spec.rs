//! The committed chain specs under `chain-spec/` are exactly what the runtime's genesis
//! presets produce. When this fails, regenerate them with `scripts/generate-chain-specs.sh`
//! and commit the result (a deliberate genesis change), or find what changed the runtime.

use std::{path::PathBuf, process::Command};

use interlattice_tests::node::node_binary;

fn chain_spec_dir() -> PathBuf {
	PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../chain-spec")
}

fn export(chain: &str, raw: bool) -> serde_json::Value {
	let mut cmd = Command::new(node_binary());
	cmd.args(["export-chain-spec", "--chain", chain]);
	if raw {
		cmd.arg("--raw");
	}
	let out = cmd.output().expect("node runs");
	assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
	serde_json::from_slice(&out.stdout).expect("the node exports JSON")
}

#[test]
fn committed_chain_specs_match_the_runtime() {
	let mut drifted = Vec::new();
	for preset in ["development", "local_testnet", "testnet"] {
		for raw in [false, true] {
			let file = chain_spec_dir().join(if raw {
				format!("{preset}-raw.json")
			} else {
				format!("{preset}.json")
			});
			let committed: serde_json::Value = serde_json::from_slice(
				&std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
			)
			.unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
			if committed != export(preset, raw) {
				drifted.push(file.display().to_string());
			}
		}
	}
	assert!(
		drifted.is_empty(),
		"chain specs differ from what the runtime produces: {drifted:?}\n\
		 regenerate with scripts/generate-chain-specs.sh and commit them if the change is intended"
	);
}

#[test]
fn testnet_spec_has_four_validators_and_dev_has_one() {
	let count = |name: &str| {
		let spec: serde_json::Value = serde_json::from_slice(
			&std::fs::read(chain_spec_dir().join(format!("{name}.json"))).unwrap(),
		)
		.unwrap();
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
