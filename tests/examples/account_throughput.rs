//! Benchmark (issue 19): balance transfers per block signed by sr25519 accounts and by ML-DSA-65
//! accounts (keys on chain), on the same dev chain in one run, with blocks kept full.
//!
//! The genesis state endows `--transfers` sr25519 senders and `--ml-dsa-transfers` ML-DSA
//! senders, whose keys it registers. (More sr25519 transfers are needed to keep blocks full:
//! they are submitted one by one over RPC, and a block takes twice as many of them.) Once the node runs, one transfer per sender is signed (so nonces never
//! serialize them) and all of a kind are submitted at once from eight threads: first the
//! sr25519 ones, then, once they are all included, the ML-DSA ones. Per block, the transfers
//! included, the block's length and the normal-class weight used are printed, then the ratio
//! of the best blocks.
//!
//! ```text
//! source scripts/env.sh && cargo test --workspace --no-run -q
//! cargo run -q -p interlattice-tests --example account_throughput -- --transfers 12000 --ml-dsa-transfers 4000
//! ```

use std::time::Duration;

use interlattice_agent_core::account::AccountKey;
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::{RuntimeCall, RuntimeEvent, UncheckedExtrinsic, UNIT};
use interlattice_tests::{
	chain,
	throughput::{report, watch, BlockStats},
	Node, NodeConfig,
};
use serde_json::json;
use sp_core::{sr25519, Pair};

fn ml_dsa_sender(i: usize) -> MlDsaKeyPair {
	let mut seed = [5u8; 32];
	seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
	MlDsaKeyPair::from_seed(seed)
}

fn transfer(i: usize) -> RuntimeCall {
	let dest: sp_core::crypto::AccountId32 = sp_crypto_hashing::blake2_256(format!("recipient/{i}").as_bytes()).into();
	RuntimeCall::Balances(pallet_balances::Call::transfer_allow_death { dest: dest.into(), value: UNIT })
}

/// Submits `xts` from eight threads and watches blocks until all of them are included.
fn run(node: &mut Node, xts: &[UncheckedExtrinsic]) -> Vec<BlockStats> {
	let start = node.rpc.best_number().unwrap() + 1;
	let rpc = &node.rpc;
	std::thread::scope(|scope| {
		for part in xts.chunks(xts.len().div_ceil(8).max(1)) {
			scope.spawn(move || {
				for xt in part {
					chain::submit(rpc, xt).expect("transfer accepted");
				}
			});
		}
	});
	watch(node, start, xts.len(), |e| matches!(e, RuntimeEvent::Balances(pallet_balances::Event::Transfer { .. })))
}

fn main() {
	let transfers = interlattice_tests::number_arg("--transfers", 12_000);
	let ml_dsa_transfers = interlattice_tests::number_arg("--ml-dsa-transfers", 4_000);
	let dir = tempfile::tempdir().unwrap();

	eprintln!("[bench] genesis with {transfers} sr25519 and {ml_dsa_transfers} ML-DSA senders");
	let classical: Vec<AccountKey> = (0..transfers)
		.map(|i| sr25519::Pair::from_string(&format!("//throughput-sender/{i}"), None).unwrap().into())
		.collect();
	let ml_dsa: Vec<AccountKey> = (0..ml_dsa_transfers).map(|i| AccountKey::ml_dsa(ml_dsa_sender(i))).collect();
	let mut patch = interlattice_tests::spec::dev_patch();
	for key in classical.iter().chain(&ml_dsa) {
		patch["balances"]["balances"].as_array_mut().unwrap().push(json!([key.account_id(), 100 * UNIT]));
	}
	let keys: Vec<String> =
		(0..ml_dsa_transfers).map(|i| format!("0x{}", hex::encode(ml_dsa_sender(i).public().as_ref()))).collect();
	let registered = patch["pqAccounts"]["keys"].as_array().map(Vec::len).unwrap_or(0);
	for key in keys {
		patch["pqAccounts"]["keys"].as_array_mut().expect("the dev preset registers keys").push(json!(key));
	}
	let spec = interlattice_tests::spec::raw_spec_with(dir.path(), "accounts", patch, || {});
	let mut config = NodeConfig::new(spec.to_str().unwrap(), &dir.path().join("node"));
	config.validator = Some("alice");
	config.extra = vec!["--pool-kbytes".into(), "65536".into(), "--pool-limit".into(), "20000".into()];
	let mut node = Node::start(config).expect("node starts");
	node.wait(Duration::from_secs(300), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	eprintln!("[bench] {} ML-DSA keys on chain at genesis", registered + ml_dsa_transfers);

	eprintln!("[bench] signing {transfers} sr25519 transfers");
	let xts: Vec<_> = classical
		.iter()
		.enumerate()
		.map(|(i, k)| chain::signed_extrinsic_with(transfer(i), k, 0, genesis, false))
		.collect();
	let sr25519_stats = run(&mut node, &xts);

	eprintln!("[bench] signing {ml_dsa_transfers} ML-DSA transfers");
	let xts: Vec<_> = ml_dsa
		.iter()
		.enumerate()
		.map(|(i, k)| chain::signed_extrinsic_with(transfer(i), k, 0, genesis, true))
		.collect();
	let sizes = (chain::signed_extrinsic_with(transfer(0), &classical[0], 0, genesis, false), &xts[0]);
	let ml_dsa_stats = run(&mut node, &xts);

	println!(
		"Transfers per block, dev chain, one run ({transfers} sr25519 then {ml_dsa_transfers} ML-DSA-65 transfers):"
	);
	println!(
		"\nencoded transfer: sr25519 {} bytes, ML-DSA-65 {} bytes",
		codec::Encode::encoded_size(&sizes.0),
		codec::Encode::encoded_size(sizes.1)
	);
	report("Blocks with sr25519 transfers", "transfers", &sr25519_stats);
	report("Blocks with ML-DSA-65 transfers", "transfers", &ml_dsa_stats);
	let best = |s: &[BlockStats]| s.iter().map(|b| b.items).max().unwrap_or(0);
	println!(
		"\nML-DSA / sr25519 (most per block): {} / {} = {:.2}",
		best(&ml_dsa_stats),
		best(&sr25519_stats),
		best(&ml_dsa_stats) as f64 / best(&sr25519_stats).max(1) as f64
	);
	node.stop();
}
