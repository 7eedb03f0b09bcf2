//! The four-validator `testnet` chain on loopback: all validators finalize the same blocks;
//! with one validator killed, the other three (over the 2/3 GRANDPA threshold) keep
//! finalizing; restarted from its base path, the fourth catches up.

use std::time::Duration;

use interlattice_tests::{node::peer_id_of, Node, NodeConfig};

const VALIDATORS: [&str; 4] = ["alice", "bob", "charlie", "dave"];
/// A fixed libp2p key for Alice's node, so the others can name it as bootnode.
const BOOT_NODE_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn finalized_hash(node: &Node, number: u64) -> Option<String> {
	(node.rpc.finalized_number()? >= number).then(|| node.rpc.block_hash(number)).flatten()
}

#[test]
fn four_validators_finalize_together_and_survive_one_failure() {
	let dir = tempfile::tempdir().unwrap();
	let boot_peer = peer_id_of(BOOT_NODE_KEY, dir.path()).expect("node key inspects");

	let mut nodes: Vec<Node> = Vec::new();
	for (i, name) in VALIDATORS.iter().enumerate() {
		let mut config = NodeConfig::new("testnet", &dir.path().join(name));
		config.validator = Some(name);
		if i == 0 {
			config.node_key = Some(BOOT_NODE_KEY.into());
		} else {
			config.bootnodes.push(nodes[0].multiaddr(&boot_peer));
		}
		nodes.push(Node::start(config).unwrap_or_else(|e| panic!("{name} starts: {e}")));
	}

	let timeout = Duration::from_secs(180);
	// All four finalize block 3, and agree on its hash.
	let target = 3;
	let mut hashes = Vec::new();
	for node in nodes.iter_mut() {
		hashes.push(node.wait(timeout, "finalized block 3", |n| finalized_hash(n, target)).unwrap());
	}
	assert!(hashes.windows(2).all(|w| w[0] == w[1]), "validators disagree: {hashes:?}");

	// Kill Dave: three of four validators still make the 2/3 supermajority.
	let dave = nodes.pop().unwrap();
	let dave_config = dave.config.clone();
	drop(dave);
	let before = nodes[0].rpc.finalized_number().unwrap();
	let target = before + 3;
	let mut hashes = Vec::new();
	for node in nodes.iter_mut() {
		hashes.push(node.wait(timeout, "finality without Dave", |n| finalized_hash(n, target)).unwrap());
	}
	assert!(hashes.windows(2).all(|w| w[0] == w[1]), "validators disagree: {hashes:?}");

	// Dave restarts from his base path and catches up with the others' finalized chain.
	let mut dave = Node::start(dave_config).expect("dave restarts");
	let head = nodes[0].rpc.finalized_number().unwrap();
	let hash = nodes[0].rpc.block_hash(head).unwrap();
	let caught_up = dave.wait(timeout, "dave to catch up", |n| finalized_hash(n, head)).unwrap();
	assert_eq!(caught_up, hash);
	// And finality goes on with all four.
	let target = head + 2;
	nodes.push(dave);
	let mut hashes = Vec::new();
	for node in nodes.iter_mut() {
		hashes.push(node.wait(timeout, "finality with all four", |n| finalized_hash(n, target)).unwrap());
	}
	assert!(hashes.windows(2).all(|w| w[0] == w[1]), "validators disagree: {hashes:?}");
}
