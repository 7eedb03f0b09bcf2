//! The transaction pool against strangers who would make the node verify signatures for
//! free (issue 16 item 2): 500 invalid receipts in one `settle_receipts`, sent from an account
//! holding only the existential deposit, from a funded account that is not the sessions'
//! provider, and as bare and general (v5) transactions without a signer. Each is refused, and
//! the node runs **no** ML-DSA verification for any of them (its
//! `interlattice_ml_dsa_verifications_total` metric); before, every signature was verified
//! first. Meanwhile the node keeps producing blocks.

use codec::Encode;
use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaSignature, SignedUsageReceipt};
use interlattice_runtime::{RuntimeCall, UncheckedExtrinsic, EXISTENTIAL_DEPOSIT, UNIT};
use interlattice_tests::{
	chain::{self, submit_and_wait, succeeded},
	prometheus_value,
	rpc::RpcError,
	Node, NodeConfig,
};
use pallet_provider_registry::{Prices, ServiceKind};
use pallet_session_escrow::{Call as EscrowCall, Event as EscrowEvent};
use serde_json::json;
use sp_core::{sr25519, Pair};
use sp_keyring::Sr25519Keyring::{Alice, Bob, Charlie, Ferdie};

fn verifications(node: &Node) -> f64 {
	let port = node.config.prometheus_port.expect("metrics are on");
	prometheus_value(port, "interlattice_ml_dsa_verifications_total").expect("the node exports the metric")
}

/// Submits `xt`; returns the pool's refusal (`data` of error 1010, or the message).
fn refusal(node: &Node, xt: &UncheckedExtrinsic) -> String {
	match node.rpc.call("author_submitExtrinsic", json!([format!("0x{}", hex::encode(xt.encode()))])) {
		Err(RpcError::Server(e)) => format!("{} {}", e["message"], e["data"]),
		other => panic!("the pool accepted a hostile transaction: {other:?}"),
	}
}

#[test]
fn settlement_spam_from_strangers_costs_no_signature_verification() {
	let dir = tempfile::tempdir().unwrap();
	let mut config = NodeConfig::new("dev", &dir.path().join("node"));
	config.validator = Some("alice");
	config.prometheus_port = Some(interlattice_tests::free_port());
	let mut node = Node::start(config).expect("node starts");
	node.wait(std::time::Duration::from_secs(60), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();

	// A real session of Bob's with Charlie, so that the receipts name an existing session.
	let key = MlDsaKeyPair::generate().unwrap();
	let open = RuntimeCall::SessionEscrow(EscrowCall::open_session {
		provider: Charlie.to_account_id(),
		service: ServiceKind::Vpn,
		client_key: Box::new(key.public().clone()),
		max_prices: Prices { per_gib: UNIT, per_hour: UNIT },
		deposit: 10 * UNIT,
		duration: 1_000,
	});
	let (_, events) = submit_and_wait(&mut node, Bob, open);
	assert!(succeeded(&events), "{events:?}");
	let session = events
		.iter()
		.find_map(|e| match e {
			interlattice_runtime::RuntimeEvent::SessionEscrow(EscrowEvent::SessionOpened { session_id, .. }) => {
				Some(*session_id)
			},
			_ => None,
		})
		.unwrap();

	// An account with only the existential deposit.
	let poor = sr25519::Pair::generate().0;
	let fund = RuntimeCall::Balances(pallet_balances::Call::transfer_allow_death {
		dest: sp_runtime::MultiAddress::Id(poor.public().into()),
		value: EXISTENTIAL_DEPOSIT,
	});
	let (_, events) = submit_and_wait(&mut node, Alice, fund);
	assert!(succeeded(&events), "{events:?}");

	// 500 receipts with garbage signatures, amounts growing: each would be a full ML-DSA-65
	// verification if the pool looked at signatures.
	let receipts: Vec<SignedUsageReceipt> = (1..=500u64)
		.map(|n| SignedUsageReceipt {
			receipt: chain::usage_receipt(&node.rpc, session, n, n << 20, 0, u128::from(n) * 1_000),
			signature: MlDsaSignature([n as u8; 3309]),
		})
		.collect();
	let batch = RuntimeCall::SessionEscrow(EscrowCall::settle_receipts { receipts: receipts.try_into().unwrap() });
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let before = verifications(&node);

	let from_poor = chain::signed_extrinsic_by(batch.clone(), &poor, 0, genesis);
	let why = refusal(&node, &from_poor);
	assert!(why.contains("1010") || why.contains("Invalid"), "{why}");
	let ferdie_nonce = chain::next_nonce(&node.rpc, &Ferdie.to_account_id()).unwrap();
	let from_stranger = chain::signed_extrinsic(batch.clone(), Ferdie, ferdie_nonce, genesis);
	let why = refusal(&node, &from_stranger);
	assert!(why.contains("Custom error"), "a stranger is not the sessions' settler: {why}");
	let bare = UncheckedExtrinsic::new_bare(batch.clone());
	let _ = refusal(&node, &bare);
	let general = UncheckedExtrinsic::new_transaction(batch, chain::tx_extension(0));
	let _ = refusal(&node, &general);

	// The metric is brought up to date every second.
	std::thread::sleep(std::time::Duration::from_millis(2_500));
	assert_eq!(verifications(&node), before, "the pool verified signatures for strangers");
	// The node kept going.
	let best = node.rpc.best_number().unwrap();
	node.wait(std::time::Duration::from_secs(30), "another block", |n| n.rpc.best_number().filter(|&b| b > best))
		.unwrap();
}
