//! Benchmark: receipts settled per block when blocks are full of batch settlements, and
//! balance transfers per block, on the same dev chain in one run.
//!
//! The genesis state (built natively) holds `--sessions` open VPN sessions of as many funded
//! clients with the bootstrap provider Charlie. Once the node runs, every client's receipt is
//! signed (ML-DSA-65), packed into `settle_receipts` batches of 500, and all batches are
//! submitted at once; then `--transfers` balance transfers are submitted at once (signed first,
//! then sent by eight threads). Per block,
//! the receipts or transfers included, the block's length and the normal-class weight used
//! are printed, with the limit that binds.
//!
//! ```text
//! source scripts/env.sh && cargo test --workspace --no-run -q
//! cargo run -q -p interlattice-tests --example settlement_throughput -- --sessions 3000 --transfers 12000
//! ```

use std::time::Duration;

use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::{RuntimeCall, RuntimeEvent, RuntimeOrigin, SessionEscrow, MILLI_UNIT, UNIT};
use interlattice_tests::{
	chain,
	throughput::{report, watch},
	Node, NodeConfig,
};
use pallet_provider_registry::{Prices, ServiceKind};
use serde_json::json;
use sp_core::{crypto::AccountId32, sr25519, Pair};
use sp_keyring::Sr25519Keyring;

fn client(i: usize) -> AccountId32 {
	sp_crypto_hashing::blake2_256(format!("throughput-client/{i}").as_bytes()).into()
}

fn client_key(i: usize) -> MlDsaKeyPair {
	let mut seed = [3u8; 32];
	seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
	MlDsaKeyPair::from_seed(seed)
}

fn main() {
	let sessions = interlattice_tests::number_arg("--sessions", 3_000);
	let transfers = interlattice_tests::number_arg("--transfers", 12_000);
	let dir = tempfile::tempdir().unwrap();
	let charlie = Sr25519Keyring::Charlie.to_account_id();

	eprintln!("[bench] genesis with {sessions} open sessions");
	let keys: Vec<MlDsaKeyPair> = (0..sessions).map(client_key).collect();
	let mut patch = interlattice_tests::spec::dev_patch();
	for i in 0..sessions {
		patch["balances"]["balances"].as_array_mut().unwrap().push(json!([client(i), 100 * UNIT]));
	}
	let spec = interlattice_tests::spec::raw_spec_with(dir.path(), "throughput", patch, || {
		for (i, key) in keys.iter().enumerate() {
			SessionEscrow::open_session(
				RuntimeOrigin::signed(client(i)),
				charlie.clone(),
				ServiceKind::Vpn,
				Box::new(key.public().clone()),
				Prices { per_gib: UNIT, per_hour: UNIT },
				10 * UNIT,
				1_000,
			)
			.expect("session opens");
		}
	});
	let mut config = NodeConfig::new(spec.to_str().unwrap(), &dir.path().join("node"));
	config.validator = Some("alice");
	config.extra = vec!["--pool-kbytes".into(), "65536".into(), "--pool-limit".into(), "20000".into()];
	let mut node = Node::start(config).expect("node starts");
	node.wait(Duration::from_secs(300), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	let genesis = chain::genesis_hash(&node.rpc).unwrap();

	// Receipts: 1 GiB at 0.5 LAT per GiB for every session.
	eprintln!("[bench] signing {sessions} receipts");
	let receipts: Vec<SignedUsageReceipt> = keys
		.iter()
		.enumerate()
		.map(|(i, key)| {
			let receipt = chain::usage_receipt(&node.rpc, i as u64, 1, 1 << 30, 0, 500 * MILLI_UNIT);
			let signature = key.sign(&receipt.signing_payload()).unwrap();
			SignedUsageReceipt { receipt, signature }
		})
		.collect();
	// Only the sessions' provider (or its settler) settles their receipts.
	let submitters = [Sr25519Keyring::Charlie];
	let mut nonces: Vec<u32> =
		submitters.iter().map(|s| chain::next_nonce(&node.rpc, &s.to_account_id()).unwrap()).collect();
	let start = node.rpc.best_number().unwrap() + 1;
	for (j, batch) in receipts.chunks(500).enumerate() {
		let k = j % submitters.len();
		let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::settle_receipts {
			receipts: batch.to_vec().try_into().unwrap(),
		});
		let xt = chain::signed_extrinsic(call, submitters[k], nonces[k], genesis);
		nonces[k] += 1;
		chain::submit(&node.rpc, &xt).expect("the pool accepts the batch");
	}
	eprintln!("[bench] {} batches submitted", receipts.len().div_ceil(500));
	let settled = watch(&mut node, start, sessions, |e| {
		matches!(e, RuntimeEvent::SessionEscrow(pallet_session_escrow::Event::ReceiptSettled { .. }))
	});

	// Transfers, from fresh funded senders (one transfer each, so nonces never serialize them).
	eprintln!("[bench] signing {transfers} transfers");
	let alice = Sr25519Keyring::Alice;
	let senders: Vec<sr25519::Pair> = (0..transfers)
		.map(|i| sr25519::Pair::from_string(&format!("//throughput-sender/{i}"), None).unwrap())
		.collect();
	// Fund the senders in batches of 500 transfers through utility.batch_all.
	let first_nonce = chain::next_nonce(&node.rpc, &alice.to_account_id()).unwrap();
	for (nonce, chunk) in (first_nonce..).zip(senders.chunks(500)) {
		let calls = chunk
			.iter()
			.map(|p| {
				RuntimeCall::Balances(pallet_balances::Call::transfer_allow_death {
					dest: sp_runtime::MultiAddress::Id(p.public().into()),
					value: 10 * UNIT,
				})
			})
			.collect();
		let xt = chain::signed_extrinsic(
			RuntimeCall::Utility(pallet_utility::Call::batch_all { calls }),
			alice,
			nonce,
			genesis,
		);
		chain::submit(&node.rpc, &xt).expect("funding batch accepted");
	}
	let funded_from = node.rpc.best_number().unwrap();
	watch(&mut node, funded_from, transfers, |e| {
		matches!(e, RuntimeEvent::Balances(pallet_balances::Event::Endowed { .. }))
	});
	// Sign everything first, then submit from several threads, so that the pool fills faster
	// than blocks drain it and blocks are limited by the chain, not by the client.
	let xts: Vec<_> = senders
		.iter()
		.enumerate()
		.map(|(i, pair)| {
			let call = RuntimeCall::Balances(pallet_balances::Call::transfer_allow_death {
				dest: sp_runtime::MultiAddress::Id(client(i % sessions.max(1))),
				value: UNIT,
			});
			chain::signed_extrinsic_by(call, pair, 0, genesis)
		})
		.collect();
	let start = node.rpc.best_number().unwrap() + 1;
	let rpc = node.rpc;
	std::thread::scope(|scope| {
		for part in xts.chunks(xts.len().div_ceil(8).max(1)) {
			scope.spawn(move || {
				for xt in part {
					chain::submit(&rpc, xt).expect("transfer accepted");
				}
			});
		}
	});
	let transferred = watch(&mut node, start, transfers, |e| {
		matches!(e, RuntimeEvent::Balances(pallet_balances::Event::Transfer { .. }))
	});
	println!("Settlement and transfer throughput, dev chain, one run ({sessions} receipts in batches of 500, {transfers} transfers):");
	report("Blocks with batch settlements", "receipts", &settled);
	report("Blocks with transfers", "transfers", &transferred);
	node.stop();
}
