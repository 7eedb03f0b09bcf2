//! Issue 16 item 19: the registry and escrow queries may walk much of the state; run on the
//! node's async workers (before), a handful at once blocked every worker, and the node's other
//! RPC methods (and its networking and import) waited behind them. Now they run on blocking
//! threads a few at a time: while six full listings of 3,000 providers are in flight (from the
//! runtime API: at a block the node's registry index is not at), a cheap standard call answers
//! before the first of them finishes.

use std::{
	sync::{Arc, Mutex},
	time::{Duration, Instant},
};

use interlattice_tests::{Node, NodeConfig};
use serde_json::json;

#[test]
fn heavy_registry_queries_do_not_stall_the_node() {
	let dir = tempfile::tempdir().unwrap();
	let spec = interlattice_tests::spec::registry_spec(3_000, dir.path());
	let mut config = NodeConfig::new(spec.to_str().unwrap(), &dir.path().join("node"));
	config.validator = Some("alice");
	let mut node = Node::start(config).expect("node starts");
	node.wait(Duration::from_secs(120), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	let rpc = node.rpc;
	// Every provider, matched and ordered, at the genesis block: the node's index follows the
	// best block, so the runtime API answers, walking the whole registry per call.
	let genesis = rpc.block_hash(0).expect("the genesis hash");
	let heavy = json!([{"activeOnly": false, "order": "pricePerGib", "limit": 100}, genesis]);
	let started = Instant::now();
	let answer = rpc.call("registry_providers", heavy.clone()).expect("a listing answers");
	let one = started.elapsed();
	assert_eq!(answer["at"]["source"], "runtime");
	assert!(one > Duration::from_millis(50), "the listing is heavy enough to matter: {one:?}");

	let finished = Arc::new(Mutex::new(Vec::new()));
	let start = Instant::now();
	let listings: Vec<_> = (0..6)
		.map(|_| {
			let (heavy, finished) = (heavy.clone(), finished.clone());
			std::thread::spawn(move || {
				let answer = rpc.call("registry_providers", heavy);
				finished.lock().unwrap().push(start.elapsed());
				answer
			})
		})
		.collect();
	std::thread::sleep(Duration::from_millis(20));
	let header = rpc.call("chain_getHeader", json!([])).expect("the node answers");
	let cheap = start.elapsed();
	assert!(header["number"].is_string());
	for l in listings {
		l.join().unwrap().expect("every listing answers (queued, not refused)");
	}
	let first_listing = *finished.lock().unwrap().iter().min().unwrap();
	assert!(
		cheap < first_listing,
		"a cheap call waited behind the listings: answered after {cheap:?}, first listing after {first_listing:?} (one listing: {one:?})"
	);
}
