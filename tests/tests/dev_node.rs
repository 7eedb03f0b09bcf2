//! A single development node (`--chain dev`, Alice validating) on loopback: it produces and
//! finalizes blocks, includes a signed transfer, rejects bad input without stopping, and
//! survives SIGKILL with its chain intact.

use std::time::Duration;

use interlattice_runtime::{BalancesCall, RuntimeCall, RuntimeEvent, UNIT};
use interlattice_tests::{chain, Node, NodeConfig, RpcError};
use serde_json::json;
use sp_keyring::Sr25519Keyring;

const MINUTE: Duration = Duration::from_secs(60);

fn dev_config(dir: &std::path::Path) -> NodeConfig {
	let mut config = NodeConfig::new("dev", dir);
	config.validator = Some("alice");
	config.extra.push("--force-authoring".into());
	config
}

fn dev_node(dir: &std::path::Path) -> Node {
	Node::start(dev_config(dir)).expect("dev node starts")
}

use interlattice_tests::prometheus_text as metrics;

#[test]
fn dev_node_produces_and_finalizes_blocks() {
	let dir = tempfile::tempdir().unwrap();
	let mut config = dev_config(dir.path());
	let prometheus = interlattice_tests::free_port();
	config.prometheus_port = Some(prometheus);
	let mut node = Node::start(config).expect("dev node starts");

	let best = node.wait(MINUTE, "block 3", |n| n.rpc.best_number().filter(|&b| b >= 3)).unwrap();
	let finalized = node.wait(MINUTE, "finalized block 2", |n| n.rpc.finalized_number().filter(|&f| f >= 2)).unwrap();
	assert!(finalized <= node.rpc.best_number().unwrap());
	// Both heads keep advancing.
	node.wait(MINUTE, "best head to advance", |n| n.rpc.best_number().filter(|&b| b > best)).unwrap();
	node.wait(MINUTE, "finalized head to advance", |n| n.rpc.finalized_number().filter(|&f| f > finalized)).unwrap();

	// The chain presents itself the way wallets expect.
	let props = node.rpc.call("system_properties", json!([])).unwrap();
	assert_eq!(props["tokenSymbol"], "LAT");
	assert_eq!(props["tokenDecimals"], 12);
	assert_eq!(props["ss58Format"], interlattice_runtime::SS58_PREFIX);
	let version = node.rpc.call("state_getRuntimeVersion", json!([])).unwrap();
	assert_eq!(version["specName"], "interlattice");

	// Prometheus metrics are served, with the chain's height among them.
	let text = metrics(prometheus).expect("metrics endpoint answers");
	assert!(text.contains("substrate_block_height"), "no block height metric in {text:.500}");
	// Networking runs on libp2p unless asked otherwise.
	assert!(node.log_tail(100_000).contains("Running libp2p network backend"), "the node did not default to libp2p");
}

#[test]
fn signed_transfer_is_included_with_events_and_balances_change() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = dev_node(dir.path());
	node.wait(MINUTE, "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();

	let alice = Sr25519Keyring::Alice;
	let bob = Sr25519Keyring::Bob.to_account_id();
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let nonce = chain::next_nonce(&node.rpc, &alice.to_account_id()).unwrap();
	let value = 42 * UNIT;
	let call = RuntimeCall::Balances(BalancesCall::transfer_keep_alive { dest: bob.clone().into(), value });
	let xt = chain::signed_extrinsic(call, alice, nonce, genesis);
	let xt_hex = format!("0x{}", hex::encode(codec::Encode::encode(&xt)));
	let start = node.rpc.best_number().unwrap();
	chain::submit(&node.rpc, &xt).expect("the pool accepts a valid transfer");

	let (block, index) =
		node.wait(MINUTE, "the transfer to be included", |n| chain::find_extrinsic(&n.rpc, &xt_hex, start)).unwrap();

	// The events of that block show the transfer and the extrinsic's success.
	let events = chain::events(&node.rpc, &block).unwrap();
	let of_xt: Vec<_> = events
		.iter()
		.filter(|e| e.phase == frame_system::Phase::ApplyExtrinsic(index as u32))
		.map(|e| e.event.clone())
		.collect();
	assert!(
		of_xt.contains(&RuntimeEvent::Balances(pallet_balances::Event::Transfer {
			from: alice.to_account_id(),
			to: bob.clone(),
			amount: value,
		})),
		"no Transfer event in {of_xt:?}"
	);
	assert!(
		of_xt.iter().any(|e| matches!(e, RuntimeEvent::System(frame_system::Event::ExtrinsicSuccess { .. }))),
		"no ExtrinsicSuccess in {of_xt:?}"
	);

	// Bob's balance grew by exactly the amount between the parent and the block.
	let header = node.rpc.call("chain_getHeader", json!([block])).unwrap();
	let parent = header["parentHash"].as_str().unwrap().to_string();
	let before = chain::account(&node.rpc, &bob, Some(&parent)).unwrap();
	let after = chain::account(&node.rpc, &bob, Some(&block)).unwrap();
	assert_eq!(after.data.free, before.data.free + value);
	// Alice paid the amount plus a fee, and her nonce moved on.
	let alice_before = chain::account(&node.rpc, &alice.to_account_id(), Some(&parent)).unwrap();
	let alice_after = chain::account(&node.rpc, &alice.to_account_id(), Some(&block)).unwrap();
	assert!(alice_after.data.free < alice_before.data.free - value, "a fee was charged");
	assert_eq!(alice_after.nonce, alice_before.nonce + 1);

	// Replaying the same signed transaction is refused (its nonce is used up).
	assert!(matches!(chain::submit(&node.rpc, &xt), Err(RpcError::Server(_))));
}

#[test]
fn bad_input_gets_an_error_and_the_node_keeps_going() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = dev_node(dir.path());
	node.wait(MINUTE, "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();

	// Not JSON at all: a JSON-RPC parse error.
	let (_, response) = node.rpc.post_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":").unwrap();
	assert_eq!(response["error"]["code"], -32700, "{response}");
	// Well-formed JSON, but no such method.
	let (_, response) = node.rpc.post_raw(br#"{"jsonrpc":"2.0","id":7,"method":"no_such"}"#).unwrap();
	assert_eq!(response["error"]["code"], -32601, "{response}");
	// Wrong parameter types.
	match node.rpc.call("chain_getBlockHash", json!(["not a number"])) {
		Err(RpcError::Server(e)) => assert_eq!(e["code"], -32602, "{e}"),
		other => panic!("expected invalid params, got {other:?}"),
	}
	// Garbage bytes as an extrinsic, and a truncated real one.
	for garbage in ["0xdeadbeef", "0x", "0x00", "not hex"] {
		match node.rpc.call("author_submitExtrinsic", json!([garbage])) {
			Err(RpcError::Server(e)) => assert!(e["code"].is_i64(), "{e}"),
			other => panic!("garbage extrinsic {garbage} was not refused: {other:?}"),
		}
	}
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let call = RuntimeCall::System(frame_system::Call::remark { remark: vec![1, 2, 3] });
	let xt = codec::Encode::encode(&chain::signed_extrinsic(call, Sr25519Keyring::Bob, 0, genesis));
	let truncated = format!("0x{}", hex::encode(&xt[..xt.len() - 10]));
	assert!(node.rpc.call("author_submitExtrinsic", json!([truncated])).is_err());
	// A correctly encoded extrinsic with a wrong signature (signed by Bob, claimed by Alice).
	let mut forged = chain::signed_extrinsic(
		RuntimeCall::System(frame_system::Call::remark { remark: vec![9] }),
		Sr25519Keyring::Bob,
		0,
		genesis,
	);
	if let sp_runtime::generic::Preamble::Signed(ref mut who, _, _) = forged.preamble {
		*who = Sr25519Keyring::Alice.to_account_id().into();
	}
	match chain::submit(&node.rpc, &forged) {
		Err(RpcError::Server(e)) => assert!(e.to_string().contains("BadProof") || e["code"].is_i64(), "{e}"),
		other => panic!("forged signature was not refused: {other:?}"),
	}

	// Still alive and producing blocks.
	let now = node.rpc.best_number().unwrap();
	node.wait(MINUTE, "blocks after bad input", |n| n.rpc.best_number().filter(|&b| b >= now + 2)).unwrap();
}

#[test]
fn node_killed_with_sigkill_restarts_with_its_chain() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = dev_node(dir.path());
	let height = node.wait(MINUTE, "block 4", |n| n.rpc.best_number().filter(|&b| b >= 4)).unwrap();
	let finalized = node.rpc.finalized_number().unwrap();
	let hashes: Vec<String> = (0..=height).map(|n| node.rpc.block_hash(n).unwrap()).collect();

	node.kill();
	let mut node = node.restart().expect("node restarts on the same base path");

	let after = node.rpc.best_number().unwrap();
	assert!(after >= finalized, "restarted at {after}, had finalized {finalized}");
	// Every block that was finalized before the kill is still there, same hash.
	for n in 0..=finalized {
		assert_eq!(node.rpc.block_hash(n).as_ref(), Some(&hashes[n as usize]), "block {n}");
	}
	// Best blocks that were not finalized may be re-authored only if they were lost; the
	// database keeps what it acknowledged, so the height does not go backwards.
	assert!(after >= height, "height went back from {height} to {after}");
	node.wait(MINUTE, "production to resume", |n| n.rpc.best_number().filter(|&b| b > after)).unwrap();
	for n in 0..=height {
		assert_eq!(node.rpc.block_hash(n).as_ref(), Some(&hashes[n as usize]), "block {n}");
	}
}
