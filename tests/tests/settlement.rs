//! The agents' shared settlement machinery against a running dev node: the async chain
//! client opens sessions with real extrinsics, receipts go through the durable store, and
//! the settler settles them in one batch, skips what the chain settled already, isolates a
//! receipt the pool refuses so the others still settle, and leaves the store untouched when
//! the node is gone.

use std::sync::{Arc, Mutex};

use interlattice_agent_core::{
	chain::ChainClient, meter::next_receipt, session_terms, ReceiptStore, SettleReport, Settler,
};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::{RuntimeCall, UNIT};
use interlattice_tests::Node;
use pallet_provider_registry::{Prices, ServiceKind};
use pallet_session_escrow::Call as EscrowCall;
use sp_keyring::Sr25519Keyring::{Alice, Dave, Ferdie};

const MIB: u64 = 1 << 20;

fn sign(key: &MlDsaKeyPair, r: interlattice_pq_crypto::UsageReceipt) -> SignedUsageReceipt {
	SignedUsageReceipt { receipt: r, signature: key.sign(&r.signing_payload()).unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settler_settles_batches_skips_settled_and_isolates_refused_receipts() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(&dir.path().join("node"));
	let url = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let chain = ChainClient::connect(&url).await.expect("connects");
	let genesis = chain.genesis_hash().0;

	// Alice opens two CDN sessions with Dave (0.2 LAT per GiB), 1 LAT each.
	let client_key = MlDsaKeyPair::generate().unwrap();
	for _ in 0..2 {
		let call = RuntimeCall::SessionEscrow(EscrowCall::open_session {
			provider: Dave.to_account_id(),
			service: ServiceKind::Cdn,
			client_key: Box::new(client_key.public().clone()),
			max_prices: Prices { per_gib: UNIT, per_hour: 0 },
			deposit: UNIT,
			duration: 1_000,
		});
		chain.submit_and_watch(call, &Alice.pair().into()).await.expect("open_session succeeds");
	}
	let sessions = chain.client_sessions(&Alice.to_account_id()).await.unwrap();
	assert_eq!(sessions.len(), 2);
	let (a, b) = (sessions[0].clone(), sessions[1].clone());
	let (terms_a, terms_b) = (session_terms(&a, genesis), session_terms(&b, genesis));
	assert_eq!(terms_a.prices.per_gib, UNIT / 5, "Dave's price is fixed in the session");

	let store = Arc::new(Mutex::new(ReceiptStore::open(&dir.path().join("receipts")).unwrap()));
	let record = |r| store.lock().unwrap().record(sign(&client_key, r)).unwrap();
	record(next_receipt(&terms_a, 0, 10 * MIB, 0).unwrap());
	let a2 = next_receipt(&terms_a, 1, 30 * MIB, 0).unwrap();
	record(a2);
	let b1 = next_receipt(&terms_b, 0, 20 * MIB, 0).unwrap();
	record(b1);

	let dave0 = chain.free_balance(&Dave.to_account_id()).await.unwrap();
	let settler = Settler::new(chain.clone(), Dave.pair().into(), store.clone());
	let report = settler.settle_once().await.expect("a settlement round");
	// Only the newest receipt per session goes on-chain: two receipts in one batch.
	assert_eq!((report.settled, report.rejected, report.already_settled), (2, 0, 0));
	let net = |amount: u128| amount - amount / 100;
	assert_eq!(report.paid, net(a2.amount) + net(b1.amount), "the amounts signed less the 1 % protocol fee");
	let a_now = chain.session(a.session_id).await.unwrap().unwrap();
	assert_eq!((a_now.sequence, a_now.bytes, a_now.settled), (2, 30 * MIB, a2.amount));
	assert!(store.lock().unwrap().unsettled().is_empty());
	let dave1 = chain.free_balance(&Dave.to_account_id()).await.unwrap();
	assert!(report.transaction_fees > 0);
	assert_eq!(dave1, dave0 + report.paid - report.transaction_fees, "paid, less the transaction fee");

	// Nothing new: a round does nothing.
	assert_eq!(settler.settle_once().await.unwrap(), SettleReport::default());

	// The settler account Dave designated (a watchtower) settles a newer receipt first: the
	// settler sees it settled and does not submit it again.
	let designate = RuntimeCall::SessionEscrow(EscrowCall::set_settler { settler: Some(Ferdie.to_account_id()) });
	chain.submit_and_watch(designate, &Dave.pair().into()).await.expect("Dave designates Ferdie");
	let a3 = next_receipt(&terms_a, 2, 40 * MIB, 0).unwrap();
	record(a3);
	let call = RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(sign(&client_key, a3)) });
	chain.submit_and_watch(call, &Ferdie.pair().into()).await.expect("the designated settler settles");
	let report = settler.settle_once().await.unwrap();
	assert_eq!((report.settled, report.already_settled), (0, 1));

	// A receipt the chain refuses (its amount exceeds the deposit) in a batch with a good
	// one: the good one settles, the bad one is rejected and dropped.
	let bad = next_receipt(&terms_b, 1, 10 * 1024 * MIB, 0).unwrap();
	assert!(bad.amount > UNIT);
	record(bad);
	let a4 = next_receipt(&terms_a, 3, 50 * MIB, 0).unwrap();
	record(a4);
	let report = settler.settle_once().await.unwrap();
	assert_eq!((report.settled, report.rejected), (1, 1));
	assert_eq!(chain.session(a.session_id).await.unwrap().unwrap().sequence, 4);
	assert_eq!(chain.session(b.session_id).await.unwrap().unwrap().sequence, 1, "the bad receipt did not settle");
	assert!(store.lock().unwrap().session(b.session_id).is_none(), "dropped from the store");

	// The node goes away: the round fails as transient and the store keeps the receipt.
	let a5 = next_receipt(&terms_a, 4, 60 * MIB, 0).unwrap();
	record(a5);
	node.kill();
	let error = settler.settle_once().await.expect_err("no node");
	assert!(matches!(&error, interlattice_agent_core::SettleError::Chain(e) if e.is_transient()), "{error}");
	assert_eq!(store.lock().unwrap().unsettled().len(), 1);
}

/// Issue 16 item 3: a session seen closing is settled at once, not at the next round (which
/// could come after its settlement window). Before, receipts waited for the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_session_is_settled_at_once() {
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let url = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let chain = ChainClient::connect(&url).await.expect("connects");
	let keys = interlattice_agent_core::SessionKeys::new(&dir.path().join("client"));
	let dave = chain.provider(&Dave.to_account_id()).await.unwrap().unwrap();
	let request = interlattice_agent_core::SessionRequest {
		service: ServiceKind::Cdn,
		max_prices: Prices { per_gib: UNIT, per_hour: 0 },
		deposit: UNIT,
		duration_blocks: 1_000,
	};
	let (session, key) =
		interlattice_agent_core::open_session(&chain, &Alice.pair().into(), &keys, &dave, &request).await.unwrap();
	let terms = session_terms(&session, chain.genesis_hash().0);
	let store = Arc::new(Mutex::new(ReceiptStore::open(&dir.path().join("receipts")).unwrap()));
	let receipt = next_receipt(&terms, 0, 10 * MIB, 0).unwrap();
	store.lock().unwrap().record(sign(&key, receipt)).unwrap();

	// Rounds every 10 minutes; a look for urgent sessions every second.
	let settler = Settler::new(chain.clone(), Dave.pair().into(), store.clone())
		.with_watch_period(std::time::Duration::from_secs(1));
	let stop = tokio_util::sync::CancellationToken::new();
	let running = tokio::spawn(settler.run(std::time::Duration::from_secs(600), stop.clone(), |_| {}));
	tokio::time::sleep(std::time::Duration::from_secs(3)).await;
	assert_eq!(chain.session(session.session_id).await.unwrap().unwrap().settled, 0, "no round yet");
	let close = RuntimeCall::SessionEscrow(EscrowCall::close_session { session_id: session.session_id });
	chain.submit_and_watch(close, &Alice.pair().into()).await.unwrap();
	let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
	loop {
		let s = chain.session(session.session_id).await.unwrap().unwrap();
		if s.settled == receipt.amount {
			break;
		}
		assert!(tokio::time::Instant::now() < deadline, "the closing session was not settled early");
		tokio::time::sleep(std::time::Duration::from_millis(500)).await;
	}
	stop.cancel();
	running.await.unwrap();
}
