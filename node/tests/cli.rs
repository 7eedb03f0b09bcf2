//! The node's command line: the subcommands users of any Substrate node expect exist and
//! work. (Being an integration test of this package also makes `cargo test` build the node
//! binary that the end-to-end tests in `tests/` start.)

use std::process::Command;

fn node() -> Command {
	Command::new(env!("CARGO_BIN_EXE_interlattice-node"))
}

fn run(args: &[&str]) -> (bool, String) {
	let out = node().args(args).output().expect("the node binary runs");
	let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
	(out.status.success(), text)
}

#[test]
fn help_lists_the_standard_subcommands() {
	let (ok, help) = run(&["--help"]);
	assert!(ok, "{help}");
	for sub in [
		"key",
		"build-spec",
		"export-chain-spec",
		"purge-chain",
		"export-blocks",
		"import-blocks",
		"revert",
		"chain-info",
	] {
		assert!(help.contains(sub), "`{sub}` missing from --help:\n{help}");
	}
	// litep2p stays selectable (libp2p, the default, is checked on a running node).
	assert!(help.contains("--network-backend"), "{help}");
}

#[test]
fn key_generate_and_inspect_node_key_work() {
	let (ok, out) = run(&["key", "generate", "--scheme", "sr25519", "--output-type", "json"]);
	assert!(ok, "{out}");
	let v: serde_json::Value = serde_json::from_str(&out).expect("json");
	assert!(v["ss58Address"].as_str().is_some_and(|a| !a.is_empty()), "{v}");

	let dir = tempfile::tempdir().unwrap();
	let file = dir.path().join("node-key");
	std::fs::write(&file, "0000000000000000000000000000000000000000000000000000000000000001").unwrap();
	let (ok, peer) = run(&["key", "inspect-node-key", "--file", file.to_str().unwrap()]);
	assert!(ok, "{peer}");
	assert!(peer.trim().starts_with("12D3KooW"), "{peer}");
}

#[test]
fn build_spec_and_purge_chain_work_and_unknown_chains_fail_clearly() {
	let (ok, spec) = run(&["build-spec", "--chain", "local", "--disable-default-bootnode"]);
	assert!(ok, "{spec}");
	assert!(spec.contains("Interlattice Local Testnet"));

	let dir = tempfile::tempdir().unwrap();
	let base = dir.path().to_str().unwrap();
	let (ok, out) = run(&["purge-chain", "--chain", "dev", "--base-path", base, "-y"]);
	assert!(ok, "purging an empty base path is fine: {out}");

	let (ok, out) = run(&["export-chain-spec", "--chain", "/no/such/spec.json"]);
	assert!(!ok);
	assert!(out.contains("No such file") || out.contains("Error"), "{out}");
}
