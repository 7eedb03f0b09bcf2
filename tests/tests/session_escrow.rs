//! The session escrow on a running dev node, end to end: a client opens sessions with the
//! bootstrap providers using real signed extrinsics, signs receipts off-chain with the
//! `pq-key` tool, a third party settles them (one, then a batch with a forged receipt in it),
//! the client closes, the provider settles its last receipt in the window and closes; every
//! balance is checked to the unit, and the `escrow_*` JSON-RPC follows along.

use std::{path::Path, process::Command};

use interlattice_runtime::{RuntimeCall, RuntimeEvent, MILLI_UNIT, UNIT};
use interlattice_tests::{
	chain::{self, submit_and_wait, succeeded},
	node::workspace_binary,
	rpc::RpcError,
	Node,
};
use pallet_provider_registry::{Prices, ServiceKind};
use pallet_session_escrow::{Call as EscrowCall, Event as EscrowEvent};
use serde_json::{json, Value};
use sp_core::crypto::{Ss58AddressFormat, Ss58Codec};
use sp_keyring::Sr25519Keyring::{self, Bob, Charlie, Dave, Eve, Ferdie};

const GIB: u64 = 1 << 30;

fn pq_key(args: &[&str]) -> String {
	let out = Command::new(workspace_binary("pq-key")).args(args).output().expect("pq-key runs");
	assert!(out.status.success(), "pq-key {args:?}: {}", String::from_utf8_lossy(&out.stderr));
	String::from_utf8(out.stdout).unwrap()
}

fn public_key(key: &Path) -> interlattice_pq_crypto::MlDsaPublicKey {
	let hex = pq_key(&["inspect", "--full", "--key", key.to_str().unwrap()]);
	interlattice_pq_crypto::MlDsaPublicKey::from_slice(&chain::from_hex(hex.trim())).unwrap()
}

/// Signs a receipt with the `pq-key` tool, as a client would (the session's provider and
/// nonce read from the chain).
#[allow(clippy::too_many_arguments)]
fn sign_receipt(
	node: &Node,
	dir: &Path,
	key: &Path,
	session: u64,
	sequence: u64,
	bytes: u64,
	seconds: u64,
	amount: u128,
) -> interlattice_pq_crypto::SignedUsageReceipt {
	let file = dir.join(format!("receipt-{session}-{sequence}.json"));
	let receipt = chain::usage_receipt(&node.rpc, session, sequence, bytes, seconds, amount);
	std::fs::write(&file, serde_json::to_string(&receipt).unwrap()).unwrap();
	let signed = pq_key(&["sign-receipt", "--key", key.to_str().unwrap(), "--receipt", file.to_str().unwrap()]);
	serde_json::from_str(&signed).expect("pq-key prints a signed receipt")
}

fn free(node: &Node, who: Sr25519Keyring, at: &str) -> u128 {
	chain::account(&node.rpc, &who.to_account_id(), Some(at)).unwrap().data.free
}

fn reserved(node: &Node, who: Sr25519Keyring, at: &str) -> u128 {
	chain::account(&node.rpc, &who.to_account_id(), Some(at)).unwrap().data.reserved
}

/// The transaction fee `who` paid in these events.
fn fee_paid(events: &[RuntimeEvent]) -> u128 {
	events
		.iter()
		.find_map(|e| match e {
			RuntimeEvent::TransactionPayment(pallet_transaction_payment::Event::TransactionFeePaid {
				actual_fee,
				..
			}) => Some(*actual_fee),
			_ => None,
		})
		.expect("a fee was paid")
}

fn escrow_events(events: &[RuntimeEvent]) -> Vec<EscrowEvent<interlattice_runtime::Runtime>> {
	events
		.iter()
		.filter_map(|e| match e {
			RuntimeEvent::SessionEscrow(e) => Some(e.clone()),
			_ => None,
		})
		.collect()
}

fn ss58(who: Sr25519Keyring) -> String {
	who.to_account_id().to_ss58check_with_version(Ss58AddressFormat::custom(interlattice_runtime::SS58_PREFIX))
}

#[test]
fn sessions_open_settle_close_and_every_balance_adds_up() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(&dir.path().join("node"));

	// Bob's session key, made with the key tool.
	let bob_key = dir.path().join("bob.key");
	pq_key(&["generate", "--out", bob_key.to_str().unwrap()]);
	let eve_key = dir.path().join("eve.key");
	pq_key(&["generate", "--out", eve_key.to_str().unwrap()]);

	let first = chain::rpc_best_hash(&node.rpc);
	let (bob0, charlie0, dave0, eve0, ferdie0) = (
		free(&node, Bob, &first),
		free(&node, Charlie, &first),
		free(&node, Dave, &first),
		free(&node, Eve, &first),
		free(&node, Ferdie, &first),
	);

	// Bob opens a VPN session with Charlie (0.5 LAT/GiB, 0.1 LAT/hour), depositing 10 LAT.
	let deposit = 10 * UNIT;
	let open = |key: &Path, provider: Sr25519Keyring, service, deposit| {
		RuntimeCall::SessionEscrow(EscrowCall::open_session {
			provider: provider.to_account_id(),
			service,
			client_key: Box::new(public_key(key)),
			max_prices: Prices { per_gib: UNIT, per_hour: UNIT },
			deposit,
			duration: 1_000,
		})
	};
	let (block, events) = submit_and_wait(&mut node, Bob, open(&bob_key, Charlie, ServiceKind::Vpn, deposit));
	assert!(succeeded(&events), "{events:?}");
	let mut bob_fees = fee_paid(&events);
	let session = match escrow_events(&events).first() {
		Some(EscrowEvent::SessionOpened { session_id, deposit: d, .. }) if *d == deposit => *session_id,
		other => panic!("no SessionOpened: {other:?}"),
	};
	assert_eq!(free(&node, Bob, &block), bob0 - deposit - bob_fees);
	let s = node.rpc.call("escrow_session", json!([session.to_string()])).unwrap();
	assert_eq!(
		(s["client"].as_str(), s["provider"].as_str()),
		(Some(ss58(Bob).as_str()), Some(ss58(Charlie).as_str()))
	);
	assert_eq!(
		(s["deposit"].clone(), s["remaining"].clone(), s["status"].clone()),
		(json!(deposit.to_string()), json!(deposit.to_string()), json!("open"))
	);
	assert_eq!(
		s["prices"],
		json!({"perGib": (500 * MILLI_UNIT).to_string(), "perHour": (100 * MILLI_UNIT).to_string()})
	);

	// Eve opens a CDN session with Dave (0.2 LAT/GiB).
	let (_, events) = submit_and_wait(&mut node, Eve, open(&eve_key, Dave, ServiceKind::Cdn, 5 * UNIT));
	let eve_fees_open = fee_paid(&events);
	let eve_session = session + 1;
	assert!(escrow_events(&events)
		.iter()
		.any(|e| matches!(e, EscrowEvent::SessionOpened { session_id, .. } if *session_id == eve_session)));

	// Charlie and Dave let Ferdie settle for them (a settler account; their own keys could
	// stay offline). Nobody else can.
	let mut settler_fees = [0u128; 2];
	for (i, provider) in [Charlie, Dave].into_iter().enumerate() {
		let (_, events) = submit_and_wait(
			&mut node,
			provider,
			RuntimeCall::SessionEscrow(EscrowCall::set_settler { settler: Some(Ferdie.to_account_id()) }),
		);
		assert!(succeeded(&events), "{events:?}");
		settler_fees[i] = fee_paid(&events);
	}
	let (charlie0, dave0) = (charlie0 - settler_fees[0], dave0 - settler_fees[1]);

	// Bob signs 1 GiB + 1 hour = 0.6 LAT; Ferdie settles it on Charlie's behalf.
	let r1 = sign_receipt(&node, dir.path(), &bob_key, session, 1, GIB, 3_600, 600 * MILLI_UNIT);
	let (block, events) = submit_and_wait(
		&mut node,
		Ferdie,
		RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(r1.clone()) }),
	);
	assert!(succeeded(&events), "{events:?}");
	let mut ferdie_fees = fee_paid(&events);
	// 1 % protocol fee, burned: Charlie gets 0.594 LAT.
	let settled = escrow_events(&events);
	assert!(
		matches!(settled.as_slice(), [EscrowEvent::ReceiptSettled { paid, fee, .. }] if *paid == 594 * MILLI_UNIT && *fee == 6 * MILLI_UNIT),
		"{settled:?}"
	);
	assert_eq!(free(&node, Charlie, &block), charlie0 + 594 * MILLI_UNIT);
	assert_eq!(free(&node, Bob, &block), bob0 - deposit - bob_fees, "settlement comes out of the hold");

	// The same receipt again never reaches a block: the pool refuses it as stale (1010).
	let refused = |node: &Node, who: Sr25519Keyring, call| {
		let genesis = chain::genesis_hash(&node.rpc).unwrap();
		let nonce = chain::next_nonce(&node.rpc, &who.to_account_id()).unwrap();
		match chain::submit(&node.rpc, &chain::signed_extrinsic(call, who, nonce, genesis)) {
			Err(RpcError::Server(e)) if e["code"] == 1010 => e["data"].as_str().unwrap_or_default().to_string(),
			other => panic!("expected the pool to refuse the transaction, got {other:?}"),
		}
	};
	let why = refused(&node, Ferdie, RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(r1) }));
	assert!(why.contains("outdated"), "{why}");

	// Bob's next receipt (3 GiB + 2 h = 1.7 LAT), Eve's first (2 GiB = 0.4 LAT), and a receipt
	// claiming to be Eve's but signed with Bob's key: the pool verifies no signature (that is
	// paid work, done at dispatch), the forgery is rejected in the block and the rest settles.
	let r2 = sign_receipt(&node, dir.path(), &bob_key, session, 2, 3 * GIB, 7_200, 1_700 * MILLI_UNIT);
	let e1 = sign_receipt(&node, dir.path(), &eve_key, eve_session, 1, 2 * GIB, 0, 400 * MILLI_UNIT);
	let forged = sign_receipt(&node, dir.path(), &bob_key, eve_session, 2, 20 * GIB, 0, 4 * UNIT);
	let with_forgery = vec![r2, forged, e1];
	let (block, events) = submit_and_wait(
		&mut node,
		Ferdie,
		RuntimeCall::SessionEscrow(EscrowCall::settle_receipts { receipts: with_forgery.try_into().unwrap() }),
	);
	assert!(succeeded(&events), "{events:?}");
	ferdie_fees += fee_paid(&events);
	let batch_events = escrow_events(&events);
	assert!(batch_events
		.iter()
		.any(|e| matches!(e, EscrowEvent::ReceiptRejected { session_id, .. } if *session_id == eve_session)));
	assert!(
		matches!(batch_events.last(), Some(EscrowEvent::ReceiptsSettled { accepted: 2, rejected: 1, paid, fees })
		if *paid == 1_089 * MILLI_UNIT + 396 * MILLI_UNIT && *fees == 11 * MILLI_UNIT + 4 * MILLI_UNIT),
		"{batch_events:?}"
	);
	assert_eq!(free(&node, Charlie, &block), charlie0 + (594 + 1_089) * MILLI_UNIT);
	assert_eq!(free(&node, Dave, &block), dave0 + 396 * MILLI_UNIT);

	// The RPC shows the sessions of a client and of a provider.
	let bobs = node.rpc.call("escrow_clientSessions", json!([ss58(Bob)])).unwrap();
	assert_eq!(bobs.as_array().unwrap().len(), 1);
	assert_eq!(
		(bobs[0]["settled"].clone(), bobs[0]["sequence"].clone(), bobs[0]["bytes"].clone()),
		(json!((1_700 * MILLI_UNIT).to_string()), json!("2"), json!((3 * GIB).to_string()))
	);
	let daves = node.rpc.call("escrow_providerSessions", json!([ss58(Dave)])).unwrap();
	assert_eq!(daves[0]["sessionId"], json!(eve_session.to_string()));

	// Bob closes: the session is closing; Charlie settles a last receipt in the window.
	let (_, events) =
		submit_and_wait(&mut node, Bob, RuntimeCall::SessionEscrow(EscrowCall::close_session { session_id: session }));
	assert!(succeeded(&events), "{events:?}");
	bob_fees += fee_paid(&events);
	assert_eq!(node.rpc.call("escrow_session", json!([session])).unwrap()["status"], "closing");
	let r3 = sign_receipt(&node, dir.path(), &bob_key, session, 3, 4 * GIB, 7_200, 2_200 * MILLI_UNIT);
	let (_, events) = submit_and_wait(
		&mut node,
		Charlie,
		RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(r3) }),
	);
	assert!(succeeded(&events), "{events:?}");
	let mut charlie_fees = fee_paid(&events);
	// Finalizing now is too early: the window is open.
	let (_, events) = submit_and_wait(
		&mut node,
		Ferdie,
		RuntimeCall::SessionEscrow(EscrowCall::finalize_session { session_id: session }),
	);
	assert!(events.iter().any(|e| matches!(e, RuntimeEvent::System(frame_system::Event::ExtrinsicFailed { .. }))));
	ferdie_fees += fee_paid(&events);
	// Charlie closes: finalized at once, the rest refunded to Bob.
	let (_, events) = submit_and_wait(
		&mut node,
		Charlie,
		RuntimeCall::SessionEscrow(EscrowCall::close_session { session_id: session }),
	);
	charlie_fees += fee_paid(&events);
	assert!(escrow_events(&events).iter().any(|e| matches!(e, EscrowEvent::SessionClosed { settled, refunded, .. }
		if *settled == 2_200 * MILLI_UNIT && *refunded == deposit - 2_200 * MILLI_UNIT)));
	// Dave closes Eve's session.
	let (block, events) = submit_and_wait(
		&mut node,
		Dave,
		RuntimeCall::SessionEscrow(EscrowCall::close_session { session_id: eve_session }),
	);
	let dave_fees = fee_paid(&events);

	// Every balance, to the unit. 2.2 LAT settled for Bob (1 % burned), 0.4 LAT for Eve.
	assert_eq!(free(&node, Bob, &block), bob0 - bob_fees - 2_200 * MILLI_UNIT);
	assert_eq!(reserved(&node, Bob, &block), 0);
	assert_eq!(free(&node, Eve, &block), eve0 - eve_fees_open - 400 * MILLI_UNIT);
	assert_eq!(reserved(&node, Eve, &block), 0);
	assert_eq!(free(&node, Charlie, &block), charlie0 + 2_178 * MILLI_UNIT - charlie_fees);
	assert_eq!(free(&node, Dave, &block), dave0 + 396 * MILLI_UNIT - dave_fees);
	assert_eq!(free(&node, Ferdie, &block), ferdie0 - ferdie_fees);
	assert_eq!(node.rpc.call("escrow_session", json!([session])).unwrap(), Value::Null);
	assert_eq!(node.rpc.call("escrow_clientSessions", json!([ss58(Bob)])).unwrap(), json!([]));
}
