//! The provider registry in the running runtime, queried the way dApps do: the bootstrap
//! providers of the dev preset are listed; real signed extrinsics register two providers in
//! different countries; the `registry_*` JSON-RPC methods filter, order and page them; their
//! stake is held; unbonding below the minimum stake takes one out of the active listing. The
//! node's index answers at the best block, the same as the runtime API at that block (asked
//! again later, when the runtime API answers it), and a subscriber sees every change in order.

use interlattice_pq_crypto::{dev_keys, keys::MlDsaKeyPair};
use interlattice_runtime::{Runtime, RuntimeCall, RuntimeEvent, MILLI_UNIT, UNIT};
use interlattice_tests::{
	chain::{self, submit_and_wait, succeeded},
	rpc::RpcError,
	wait_for, Node,
};
use pallet_provider_registry::{Call as RegistryCall, Hosting, Location, Prices, ProviderRecord, Services};
use serde_json::{json, Value};
use sp_core::crypto::{Ss58AddressFormat, Ss58Codec};
use sp_keyring::Sr25519Keyring::{self, Charlie, Dave, Eve, Ferdie};
use std::time::Duration;

fn register_call(services: Services, country: &[u8; 2], per_gib: u128, key_seed: u8, stake: u128) -> RuntimeCall {
	RuntimeCall::ProviderRegistry(RegistryCall::register_provider {
		services,
		endpoints: vec![b"203.0.113.7:7310".to_vec().try_into().unwrap()].try_into().unwrap(),
		location: Location {
			country: *country,
			region: b"somewhere".to_vec().try_into().unwrap(),
			hosting: Hosting::Residential,
		},
		prices: Prices { per_gib, per_hour: UNIT / 100 },
		service_key: Box::new(MlDsaKeyPair::from_seed([key_seed; 32]).public().clone()),
		stake,
	})
}

fn ss58(who: Sr25519Keyring) -> String {
	who.to_account_id().to_ss58check_with_version(Ss58AddressFormat::custom(interlattice_runtime::SS58_PREFIX))
}

fn record(node: &Node, who: Sr25519Keyring, at: &str) -> Option<ProviderRecord<Runtime>> {
	let key = pallet_provider_registry::Providers::<Runtime>::hashed_key_for(who.to_account_id());
	chain::storage(&node.rpc, &key, Some(at)).unwrap()
}

/// `registry_providers(query)`: (total, accounts of the page).
fn list(node: &Node, query: Value) -> (u64, Vec<String>) {
	let page = node.rpc.call("registry_providers", json!([query])).expect("registry_providers");
	let accounts =
		page["providers"].as_array().unwrap().iter().map(|p| p["account"].as_str().unwrap().to_string()).collect();
	(page["total"].as_u64().unwrap(), accounts)
}

fn names(list: &[Sr25519Keyring]) -> Vec<String> {
	list.iter().map(|k| ss58(*k)).collect()
}

/// Equal stakes are ordered by account id (ascending raw bytes).
fn by_account(mut list: Vec<Sr25519Keyring>) -> Vec<Sr25519Keyring> {
	list.sort_by_key(|k| k.to_account_id());
	list
}

fn invalid_params(result: Result<Value, RpcError>) -> String {
	match result {
		Err(RpcError::Server(e)) if e["code"] == -32602 => e["message"].as_str().unwrap().to_string(),
		other => panic!("expected invalid params, got {other:?}"),
	}
}

#[test]
fn providers_register_with_real_extrinsics_and_the_registry_rpc_lists_them() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(dir.path());

	// The dev preset's bootstrap providers: Charlie (VPN, DE) and Dave (CDN, NL).
	let (total, page) = list(&node, json!({}));
	assert_eq!((total, page), (2, names(&by_account(vec![Charlie, Dave]))));
	let charlie = node.rpc.call("registry_provider", json!([ss58(Charlie)])).unwrap();
	assert_eq!(charlie["services"], "vpn");
	assert_eq!(charlie["country"], "DE");
	assert_eq!(charlie["endpoints"], json!(["127.0.0.1:7310"]));
	assert_eq!(
		charlie["prices"],
		json!({"perGib": (500 * MILLI_UNIT).to_string(), "perHour": (100 * MILLI_UNIT).to_string()})
	);
	assert_eq!(charlie["stake"], (10_000 * UNIT).to_string(), "amounts are decimal strings");
	assert_eq!(charlie["active"], true);
	assert_eq!(
		charlie["serviceKey"],
		format!("0x{}", hex::encode(dev_keys::dev_public_key("charlie").unwrap().as_ref()))
	);

	// The node's index answers at the best block (once it has caught up with it); what it
	// answered is checked against the runtime API at the same block below.
	let mut index_answers = vec![answered_by_index(&node, json!({}))];
	// A subscriber follows every change from here on.
	let subscription = subscribe(&node);

	// Eve and Ferdie register with real signed extrinsics.
	let (block, events) =
		submit_and_wait(&mut node, Eve, register_call(Services::Both, b"DE", 100 * MILLI_UNIT, 1, 2_000 * UNIT));
	assert!(
		events.iter().any(|e| matches!(e,
			RuntimeEvent::ProviderRegistry(pallet_provider_registry::Event::ProviderRegistered { country, .. })
				if country == b"DE")),
		"{events:?}"
	);
	assert_eq!(record(&node, Eve, &block).expect("Eve is registered").stake, 2_000 * UNIT);
	let account = chain::account(&node.rpc, &Eve.to_account_id(), Some(&block)).unwrap();
	assert!(account.data.reserved >= 2_000 * UNIT, "the stake is held: {:?}", account.data);
	let (_, events) =
		submit_and_wait(&mut node, Ferdie, register_call(Services::Vpn, b"BR", 200 * MILLI_UNIT, 2, 3_000 * UNIT));
	assert!(succeeded(&events), "{events:?}");
	// A registration reusing Eve's service key fails on-chain with a named error.
	let (_, events) =
		submit_and_wait(&mut node, Sr25519Keyring::Bob, register_call(Services::Vpn, b"FR", 1, 1, 2_000 * UNIT));
	assert!(
		events.iter().any(|e| matches!(e, RuntimeEvent::System(frame_system::Event::ExtrinsicFailed { .. }))),
		"{events:?}"
	);

	for query in [json!({}), json!({"country": "DE", "order": "pricePerGib"}), json!({"service": "vpn", "limit": 1})] {
		index_answers.push(answered_by_index(&node, query));
	}

	// Filters.
	let mut by_stake = by_account(vec![Charlie, Dave]);
	by_stake.extend([Ferdie, Eve]);
	assert_eq!(list(&node, json!({})), (4, names(&by_stake)));
	assert_eq!(list(&node, json!({"country": "de"})), (2, names(&[Charlie, Eve])));
	assert_eq!(list(&node, json!({"service": "cdn"})), (2, names(&[Dave, Eve])));
	assert_eq!(list(&node, json!({"service": "vpn", "country": "BR"})), (1, names(&[Ferdie])));
	assert_eq!(list(&node, json!({"maxPricePerGib": (100 * MILLI_UNIT).to_string()})), (1, names(&[Eve])));
	assert_eq!(list(&node, json!({"minStake": (3_000 * UNIT).to_string()})).0, 3);
	assert_eq!(list(&node, json!({"hosting": "residential"})), (2, names(&by_account(vec![Eve, Ferdie]))));
	// Order and pagination.
	let mut by_price = vec![Eve];
	by_price.extend(by_account(vec![Dave, Ferdie]));
	by_price.push(Charlie);
	assert_eq!(list(&node, json!({"order": "pricePerGib"})), (4, names(&by_price)));
	assert_eq!(list(&node, json!({"order": "pricePerGib", "limit": 2})), (4, names(&by_price[..2])));
	assert_eq!(list(&node, json!({"order": "pricePerGib", "limit": 2, "offset": 2})), (4, names(&by_price[2..])));
	assert_eq!(list(&node, json!({"order": "pricePerGib", "offset": 4})), (4, vec![]));

	// Eve unbonds below the minimum stake: still registered, no longer listed as active.
	let (_, events) =
		submit_and_wait(&mut node, Eve, RuntimeCall::ProviderRegistry(RegistryCall::unbond { amount: 1_500 * UNIT }));
	assert!(succeeded(&events), "{events:?}");
	assert_eq!(list(&node, json!({"country": "DE"})), (1, names(&[Charlie])));
	assert_eq!(list(&node, json!({"country": "DE", "activeOnly": false})), (2, names(&[Charlie, Eve])));
	let eve = node.rpc.call("registry_provider", json!([ss58(Eve)])).unwrap();
	assert_eq!((eve["active"].clone(), eve["status"].clone()), (json!(false), json!("registered")));
	assert_eq!(
		(eve["stake"].clone(), eve["unbonding"].clone()),
		(json!((500 * UNIT).to_string()), json!((1_500 * UNIT).to_string()))
	);

	// Ferdie deregisters: still listed (unbonding), no longer active.
	let (_, events) =
		submit_and_wait(&mut node, Ferdie, RuntimeCall::ProviderRegistry(RegistryCall::deregister_provider {}));
	assert!(succeeded(&events), "{events:?}");
	index_answers.push(answered_by_index(&node, json!({"activeOnly": false, "order": "registeredAt"})));

	// Every answer the index gave equals the runtime API's at the same block (asked once the
	// index has moved on, so the runtime API answers).
	let last = index_answers.last().unwrap().1["at"]["number"].as_u64().unwrap();
	wait_for(Duration::from_secs(30), "a later block", || (node.rpc.best_number()? > last).then_some(())).unwrap();
	for (query, answer) in &index_answers {
		let at = answer["at"]["hash"].as_str().unwrap();
		let runtime = node.rpc.call("registry_providers", json!([query, at])).unwrap();
		assert_eq!(runtime["at"]["source"], "runtime", "{runtime}");
		assert_eq!((&runtime["total"], &runtime["providers"]), (&answer["total"], &answer["providers"]), "{query}");
	}

	// The subscriber saw Eve's and Ferdie's registrations, Eve's unbonding and Ferdie's
	// deregistration, in that order.
	let changes = subscription.take(4);
	let seen: Vec<(String, String, Value)> = changes
		.iter()
		.map(|c| (c.change.clone(), c.account.clone(), serde_json::to_value(&c.provider).unwrap()))
		.collect();
	assert_eq!(
		seen.iter().map(|(kind, who, _)| (kind.as_str(), who.clone())).collect::<Vec<_>>(),
		vec![("added", ss58(Eve)), ("added", ss58(Ferdie)), ("changed", ss58(Eve)), ("changed", ss58(Ferdie))]
	);
	assert_eq!(seen[2].2["active"], false, "Eve's unbonding took her below the minimum stake");
	assert_eq!(seen[3].2["status"], "deregistered");
	assert!(changes.windows(2).all(|w| w[0].number <= w[1].number), "in block order");

	let stats = node.rpc.call("registry_stats", json!([])).unwrap();
	assert_eq!(stats["providers"], json!({"registered": 4, "active": 2}));
	assert_eq!(stats["vpn"], json!({"registered": 3, "active": 1}));
	assert_eq!(stats["cdn"], json!({"registered": 2, "active": 1}));
	assert_eq!(
		stats["countries"],
		json!([
			{"country": "BR", "registered": 1, "active": 0},
			{"country": "DE", "registered": 2, "active": 1},
			{"country": "NL", "registered": 1, "active": 1},
		])
	);
	assert_eq!(stats["totalStake"], (20_500 * UNIT).to_string());
	assert_eq!(stats["totalUnbonding"], (4_500 * UNIT).to_string());

	// The listing at an earlier block still shows the past.
	let (total, _) = {
		let page = node.rpc.call("registry_providers", json!([{"country": "DE"}, block])).unwrap();
		(page["total"].as_u64().unwrap(), ())
	};
	assert_eq!(total, 2, "at Eve's registration block both DE providers were active");

	// Bad input: clear errors, nothing else.
	assert!(invalid_params(node.rpc.call("registry_providers", json!([{"limit": 0}]))).contains("limit"));
	assert!(invalid_params(node.rpc.call("registry_providers", json!([{"country": "DEU"}]))).contains("country"));
	invalid_params(node.rpc.call("registry_providers", json!([{"colour": "red"}])));
	invalid_params(node.rpc.call("registry_providers", json!([{"maxPricePerGib": "-3"}])));
	assert!(invalid_params(node.rpc.call("registry_provider", json!(["not-an-account"]))).contains("account"));
	assert_eq!(node.rpc.call("registry_provider", json!([ss58(Sr25519Keyring::One)])).unwrap(), Value::Null);
	assert_eq!(
		node.rpc.call("registry_provider", json!([format!("0x{}", hex::encode(Charlie.to_account_id()))])).unwrap()
			["account"],
		ss58(Charlie)
	);
	the_generated_rpc_client_reads_the_same(&node);

	// A restarted node builds its index again from the state: the same registry, from the index.
	let (_, before) = answered_by_index(&node, json!({"activeOnly": false, "order": "registeredAt"}));
	let node = node.restart().expect("the node starts again");
	let (_, after) = answered_by_index(&node, json!({"activeOnly": false, "order": "registeredAt"}));
	assert_eq!((&after["total"], &after["providers"]), (&before["total"], &before["providers"]));
	let stats = node.rpc.call("registry_stats", json!([])).unwrap();
	assert_eq!(stats["providers"], json!({"registered": 4, "active": 2}), "{stats}");
}

/// `registry_providers(query)` once the node's index answers it (it has caught up with the best
/// block): the query and the answer.
fn answered_by_index(node: &Node, query: Value) -> (Value, Value) {
	wait_for(Duration::from_secs(30), "an answer from the index", || {
		let page = node.rpc.call("registry_providers", json!([query.clone()])).ok()?;
		(page["at"]["source"] == "index").then_some((query.clone(), page))
	})
	.unwrap()
}

/// A `registry_subscribeProviders` subscriber on its own thread (a WebSocket client), collecting
/// what it receives.
struct Subscriber {
	received: std::sync::mpsc::Receiver<interlattice_rpc::json::ProviderChangeJson>,
}

impl Subscriber {
	/// The first `n` changes (waiting up to 60 s for them).
	fn take(&self, n: usize) -> Vec<interlattice_rpc::json::ProviderChangeJson> {
		(0..n)
			.map(|i| self.received.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("change {i}: {e}")))
			.collect()
	}
}

fn subscribe(node: &Node) -> Subscriber {
	use interlattice_rpc::registry::RegistryApiClient;
	let url = format!("ws://127.0.0.1:{}", node.config.rpc_port);
	let (tx, received) = std::sync::mpsc::channel();
	let (ready_tx, ready) = std::sync::mpsc::channel();
	std::thread::spawn(move || {
		tokio::runtime::Runtime::new().unwrap().block_on(async move {
			let client = jsonrpsee::ws_client::WsClientBuilder::default().build(url).await.unwrap();
			let mut subscription =
				RegistryApiClient::<sp_core::H256>::subscribe_providers(&client).await.expect("subscribed");
			ready_tx.send(()).unwrap();
			while let Some(Ok(change)) = subscription.next().await {
				if tx.send(change).is_err() {
					break;
				}
			}
		})
	});
	ready.recv_timeout(Duration::from_secs(30)).expect("the subscription started");
	Subscriber { received }
}

/// A Rust caller uses the clients jsonrpsee generates from our RPC traits
/// (`interlattice_rpc::{registry::RegistryApiClient, escrow::EscrowApiClient}`) and reads what
/// the raw JSON says, with errors as typed values.
fn the_generated_rpc_client_reads_the_same(node: &Node) {
	use interlattice_rpc::{
		escrow::EscrowApiClient,
		json::{Counter, ProviderQuery, ServicesJson},
		registry::RegistryApiClient,
	};
	type Hash = sp_core::H256;
	let client = jsonrpsee::http_client::HttpClientBuilder::default()
		.build(format!("http://127.0.0.1:{}", node.config.rpc_port))
		.unwrap();
	tokio::runtime::Runtime::new().unwrap().block_on(async {
		let query = ProviderQuery { country: Some("de".into()), ..Default::default() };
		// At one block (a new one may come between two calls).
		let best = node.rpc.call("chain_getBlockHash", json!([])).unwrap();
		let hash: Hash = serde_json::from_value(best.clone()).unwrap();
		let page = RegistryApiClient::<Hash>::providers(&client, Some(query.clone()), Some(hash)).await.unwrap();
		let raw = node.rpc.call("registry_providers", json!([query, best])).unwrap();
		assert_eq!(serde_json::to_value(&page).unwrap(), raw);
		assert!(page.providers.iter().any(|p| p.account == ss58(Charlie) && p.services == ServicesJson::Vpn));
		let charlie = RegistryApiClient::<Hash>::provider(&client, ss58(Charlie), None).await.unwrap().unwrap();
		assert_eq!(charlie.country, "DE");
		let stats = RegistryApiClient::<Hash>::stats(&client, Some(hash)).await.unwrap();
		assert_eq!(serde_json::to_value(&stats).unwrap(), node.rpc.call("registry_stats", json!([best])).unwrap());
		match RegistryApiClient::<Hash>::provider(&client, "not-an-account".into(), None).await {
			Err(jsonrpsee::core::ClientError::Call(e)) => assert_eq!(e.code(), -32602, "{e}"),
			other => panic!("expected invalid params, got {other:?}"),
		}
		assert_eq!(EscrowApiClient::<Hash>::session(&client, Counter(u64::MAX), None).await.unwrap(), None);
		assert!(EscrowApiClient::<Hash>::client_sessions(&client, ss58(Eve), None).await.unwrap().is_empty());
	});
}
