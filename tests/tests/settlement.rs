//! The agents' shared settlement machinery against a running dev node: the async chain
//! client opens sessions with real extrinsics, receipts go through the durable store, and
//! the settler settles them in one batch, skips what the chain settled already, isolates a
//! receipt the pool refuses so the others still settle, and leaves the store untouched when
//! the node is gone.

use std::sync::{Arc, Mutex};

use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::{RuntimeCall, UNIT};
use interlattice_settlement::{
	chain::ChainClient, meter::next_receipt, session_terms, ReceiptStore, SettleReport, Settler,
};
use interlattice_tests::Node;
use pallet_provider_registry::{Prices, ServiceKind};
use pallet_session_escrow::Call as EscrowCall;
use sp_keyring::Sr25519Keyring::{Alice, Dave, Ferdie};

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
		chain.submit_and_watch(call, &Alice.pair()).await.expect("open_session succeeds");
	}
	let sessions = chain.client_sessions(&Alice.to_account_id()).await.unwrap();
	assert_eq!(sessions.len(), 2);
	let (a, b) = (sessions[0].clone(), sessions[1].clone());
	let prices = a.prices;
	assert_eq!(session_terms(&a, genesis).prices.per_gib, UNIT / 5, "Dave's price is fixed in the session");

	let store = Arc::new(Mutex::new(ReceiptStore::open(&dir.path().join("receipts")).unwrap()));
	let record = |r| store.lock().unwrap().record(sign(&client_key, r)).unwrap();
	const MIB: u64 = 1 << 20;
	record(next_receipt(genesis, a.session_id, &prices, 0, 10 * MIB, 0).unwrap());
	let a2 = next_receipt(genesis, a.session_id, &prices, 1, 30 * MIB, 0).unwrap();
	record(a2);
	let b1 = next_receipt(genesis, b.session_id, &prices, 0, 20 * MIB, 0).unwrap();
	record(b1);

	let dave0 = chain.free_balance(&Dave.to_account_id()).await.unwrap();
	let settler = Settler::new(chain.clone(), Dave.pair(), store.clone());
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

	// Someone else (the client, or a watchtower) settles a newer receipt first: the settler
	// sees it settled and does not submit it again.
	let a3 = next_receipt(genesis, a.session_id, &prices, 2, 40 * MIB, 0).unwrap();
	record(a3);
	let call = RuntimeCall::SessionEscrow(EscrowCall::settle_receipt { receipt: Box::new(sign(&client_key, a3)) });
	chain.submit_and_watch(call, &Ferdie.pair()).await.expect("a third party settles");
	let report = settler.settle_once().await.unwrap();
	assert_eq!((report.settled, report.already_settled), (0, 1));

	// A receipt the chain refuses (its amount exceeds the deposit) in a batch with a good
	// one: the pool refuses the batch, the settler retries one by one, the good one settles
	// and the bad one is dropped.
	let bad = next_receipt(genesis, b.session_id, &prices, 1, 10 * 1024 * MIB, 0).unwrap();
	assert!(bad.amount > UNIT);
	record(bad);
	let a4 = next_receipt(genesis, a.session_id, &prices, 3, 50 * MIB, 0).unwrap();
	record(a4);
	let report = settler.settle_once().await.unwrap();
	assert_eq!((report.settled, report.rejected), (1, 1));
	assert_eq!(chain.session(a.session_id).await.unwrap().unwrap().sequence, 4);
	assert_eq!(chain.session(b.session_id).await.unwrap().unwrap().sequence, 1, "the bad receipt did not settle");
	assert!(store.lock().unwrap().session(b.session_id).is_none(), "dropped from the store");

	// The node goes away: the round fails as transient and the store keeps the receipt.
	let a5 = next_receipt(genesis, a.session_id, &prices, 4, 60 * MIB, 0).unwrap();
	record(a5);
	node.kill();
	let error = settler.settle_once().await.expect_err("no node");
	assert!(matches!(&error, interlattice_settlement::SettleError::Chain(e) if e.is_transient()), "{error}");
	assert_eq!(store.lock().unwrap().unsettled().len(), 1);
}
