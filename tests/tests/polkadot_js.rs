//! The ecosystem's tools against a dev node: unmodified `@polkadot/api` (the library behind
//! polkadot.js apps, the extension and most wallets and dApps; pinned in
//! `tests/js/package-lock.json`, installed by `scripts/setup.sh`) initialises from our
//! metadata, reads the registry's and the escrow's storage and constants, decodes a block
//! holding a settlement call (3,309-byte ML-DSA-65 signatures inside) and a block holding
//! transactions signed by ML-DSA-65 accounts (the chain's own signature variants), and signs
//! and submits an sr25519 transfer that lands. Also: no fixed array in any metadata version is longer than
//! polkadot.js accepts.

use std::process::Command;

use codec::Encode;
use frame_metadata::RuntimeMetadata;
use interlattice_agent_core::account::AccountKey;
use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaSignature, SignedUsageReceipt};
use interlattice_runtime::{Runtime, RuntimeCall, UNIT};
use interlattice_tests::reference::runtime_metadata_at;
use interlattice_tests::{
	chain::{self, submit_and_wait, submit_extrinsic_and_wait, succeeded},
	Node,
};
use pallet_provider_registry::{Prices, ServiceKind};
use pallet_session_escrow::{Call as EscrowCall, Event as EscrowEvent};
use serde_json::Value;
use sp_keyring::Sr25519Keyring::{Bob, Charlie};

/// polkadot.js refuses `[T; N]` with N above this ("Only support for [Type; <length>], where
/// length <= 2048").
const POLKADOT_JS_MAX_ARRAY: u32 = 2048;

#[test]
fn no_fixed_array_in_any_metadata_version_is_longer_than_polkadot_js_accepts() {
	let versions = Runtime::metadata_versions();
	assert!(versions.contains(&14) && versions.contains(&15), "{versions:?}");
	for version in versions {
		let types = match runtime_metadata_at(version) {
			RuntimeMetadata::V14(m) => m.types,
			RuntimeMetadata::V15(m) => m.types,
			RuntimeMetadata::V16(m) => m.types,
			other => panic!("metadata version {version} is not known to this test: {:?}", other.version()),
		};
		let mut arrays = 0;
		for ty in &types.types {
			if let scale_info::TypeDef::Array(array) = &ty.ty.type_def {
				arrays += 1;
				assert!(
					array.len <= POLKADOT_JS_MAX_ARRAY,
					"metadata v{version}: type {} ({:?}) is an array of {} elements",
					ty.id,
					ty.ty.path,
					array.len
				);
			}
		}
		assert!(arrays > 0, "the walk saw the arrays (e.g. 32-byte hashes)");
	}
}

#[test]
fn the_signature_keeps_its_wire_format_of_3309_bytes() {
	let signature = MlDsaSignature([7u8; 3309]);
	assert_eq!(signature.encode(), vec![7u8; 3309], "no length prefix, no change");
	// What metadata describes it as encodes to the same bytes.
	let described: [[u8; 1103]; 3] = [[7u8; 1103]; 3];
	assert_eq!(described.encode(), signature.encode());
}

fn node_js() -> std::path::PathBuf {
	let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
	assert!(
		root.join("node_modules/@polkadot/api").exists(),
		"@polkadot/api is not installed in {}: run scripts/setup.sh",
		root.display()
	);
	root
}

#[test]
fn unmodified_polkadot_js_reads_decodes_and_submits() {
	let js = node_js();
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(&dir.path().join("node"));
	// Bob opens a VPN session with Charlie; Charlie settles a receipt Bob signed.
	let client_key = MlDsaKeyPair::generate().unwrap();
	let open = RuntimeCall::SessionEscrow(EscrowCall::open_session {
		provider: Charlie.to_account_id(),
		service: ServiceKind::Vpn,
		client_key: Box::new(client_key.public().clone()),
		max_prices: Prices { per_gib: UNIT, per_hour: UNIT },
		deposit: 5 * UNIT,
		duration: 1_000,
	});
	let (_, events) = submit_and_wait(&mut node, Bob, open);
	assert!(succeeded(&events), "{events:?}");
	let session_id = events
		.iter()
		.find_map(|e| match e {
			interlattice_runtime::RuntimeEvent::SessionEscrow(EscrowEvent::SessionOpened { session_id, .. }) => {
				Some(*session_id)
			},
			_ => None,
		})
		.expect("SessionOpened");
	let receipt = chain::usage_receipt(&node.rpc, session_id, 1, 1 << 30, 0, UNIT / 4);
	let signature = client_key.sign(&receipt.signing_payload()).unwrap();
	let signed = SignedUsageReceipt { receipt, signature };
	let settle = RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(signed) });
	let (settlement_block, events) = submit_and_wait(&mut node, Charlie, settle);
	assert!(succeeded(&events), "{events:?}");
	// The dev ML-DSA account (key on chain) pays a fresh ML-DSA account, whose first
	// transaction carries its key and registers it.
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let ml_dsa = AccountKey::ml_dsa(MlDsaKeyPair::dev_account("alice"));
	let fresh_pair = MlDsaKeyPair::generate().unwrap();
	let fresh_key = fresh_pair.public().clone();
	let fresh = AccountKey::ml_dsa(fresh_pair);
	let fund = RuntimeCall::Balances(interlattice_runtime::BalancesCall::transfer_keep_alive {
		dest: fresh.account_id().into(),
		value: 3 * UNIT,
	});
	let nonce = chain::next_nonce(&node.rpc, &ml_dsa.account_id()).unwrap();
	let (_, events) =
		submit_extrinsic_and_wait(&mut node, &chain::signed_extrinsic_with(fund, &ml_dsa, nonce, genesis, true));
	assert!(succeeded(&events), "{events:?}");
	let register = RuntimeCall::PqAccounts(pallet_pq_accounts::Call::register_key { public_key: Box::new(fresh_key) });
	let (ml_dsa_block, events) =
		submit_extrinsic_and_wait(&mut node, &chain::signed_extrinsic_with(register, &fresh, 0, genesis, false));
	assert!(succeeded(&events), "{events:?}");

	let out = Command::new("node")
		.arg(js.join("check.mjs"))
		.arg(format!("ws://127.0.0.1:{}", node.rpc.port))
		.arg(&settlement_block)
		.arg(&ml_dsa_block)
		.current_dir(&js)
		.output()
		.expect("node (Node.js) runs: scripts/setup.sh installs it");
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(out.status.success(), "polkadot.js failed:\n{stderr}");
	let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
	eprintln!("{report:#}");

	// Initialised, with the chain's properties.
	assert_eq!(report["specName"], "interlattice");
	assert_eq!(report["ss58Prefix"], interlattice_runtime::SS58_PREFIX);
	assert_eq!(report["tokenSymbol"], "LAT");
	assert_eq!(report["tokenDecimals"], 12);
	// Constants.
	assert_eq!(report["constants"]["minDeposit"], UNIT.to_string());
	assert_eq!(report["constants"]["maxSessionsPerClient"], 32);
	assert_eq!(report["constants"]["maxReceiptsPerBatch"], 500);
	// The registry's genesis providers, with their 1952-byte service keys.
	let providers = report["providers"].as_array().unwrap();
	let countries: Vec<&str> = providers.iter().map(|p| p["country"].as_str().unwrap()).collect();
	assert!(countries.contains(&"DE") && countries.contains(&"NL"), "{providers:?}");
	assert!(providers.iter().all(|p| p["serviceKeyBytes"] == 1952));
	// The escrow's session, settled as the chain says.
	let session =
		report["sessions"].as_array().unwrap().iter().find(|s| s["id"] == session_id).expect("the session is listed");
	assert_eq!(session["deposit"], (5 * UNIT).to_string());
	assert_eq!(session["settled"], (UNIT / 4).to_string());
	assert_eq!(session["clientKeyBytes"], 1952);
	assert_eq!(report["nextSessionId"], session_id + 1);
	// The settlement block, decoded: the receipt's fields and its 3309-byte signature.
	let xts = report["settlementBlock"]["extrinsics"].as_array().unwrap();
	let settlement =
		xts.iter().find(|x| x["call"] == "sessionEscrow.settleReceipt").expect("the settlement call is decoded");
	assert_eq!(settlement["receipts"][0]["sessionId"], session_id);
	assert_eq!(settlement["receipts"][0]["amount"], (UNIT / 4).to_string());
	assert_eq!(settlement["receipts"][0]["signatureBytes"], 3309);
	assert!(xts.iter().all(|x| x["roundTrip"] == true), "{xts:?}");
	// The block with the ML-DSA account's first transaction, decoded: its signer and its
	// signature (variant MlDsa65WithKey: its index, the key, the signature), re-encoded unchanged.
	let xts = report["mlDsaBlock"]["extrinsics"].as_array().unwrap();
	let registration = xts.iter().find(|x| x["call"] == "pqAccounts.registerKey").expect("the registration is decoded");
	let ss58 = |a: &interlattice_runtime::AccountId| {
		use sp_core::crypto::{Ss58AddressFormat, Ss58Codec};
		a.to_ss58check_with_version(Ss58AddressFormat::custom(interlattice_runtime::SS58_PREFIX))
	};
	assert_eq!(registration["signer"], ss58(&fresh.account_id()));
	assert_eq!(registration["signatureType"], "MlDsa65WithKey");
	assert_eq!(registration["signatureBytes"], 1 + 1952 + 3309);
	assert!(xts.iter().all(|x| x["roundTrip"] == true), "{xts:?}");
	// The transfer landed with every extension, ours included.
	let extensions: Vec<&str> =
		report["signedExtensions"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
	assert!(extensions.contains(&"CheckReceipts"), "{extensions:?}");
	let transfer = &report["transfer"];
	let events: Vec<&str> = transfer["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
	assert!(events.contains(&"balances.Transfer") && events.contains(&"system.ExtrinsicSuccess"), "{events:?}");
	assert_eq!(transfer["destFree"], transfer["amount"]);
}
