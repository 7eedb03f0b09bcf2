//! ML-DSA-65 verification inside the real Wasm runtime of a running dev node: the
//! `PqCryptoApi` runtime API, called over JSON-RPC (`state_call`), runs in the node's Wasm
//! executor and reaches the `pq_crypto` host function.

use std::time::Duration;

use codec::Encode;
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt, UsageReceipt};
use interlattice_tests::{chain, Node, Rpc};
use serde_json::json;

fn call_bool(rpc: &Rpc, method: &str, args: Vec<u8>) -> Result<bool, String> {
	let result =
		rpc.call("state_call", json!([method, format!("0x{}", hex::encode(args))])).map_err(|e| e.to_string())?;
	match result.as_str() {
		Some("0x01") => Ok(true),
		Some("0x00") => Ok(false),
		other => Err(format!("unexpected result {other:?}")),
	}
}

#[test]
fn runtime_verifies_ml_dsa_signatures_through_the_host_function() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(dir.path());

	let pair = MlDsaKeyPair::from_seed([5; 32]);
	let pk = pair.public().as_ref().to_vec();
	let msg = b"verified inside the runtime".to_vec();
	let sig = pair.sign(&msg).unwrap().as_ref().to_vec();
	let verify = |pk: &[u8], msg: &[u8], sig: &[u8]| {
		call_bool(&node.rpc, "PqCryptoApi_verify_ml_dsa_65", (pk, msg, sig).encode())
	};

	assert_eq!(verify(&pk, &msg, &sig), Ok(true));
	let mut tampered = sig.clone();
	tampered[7] ^= 1;
	assert_eq!(verify(&pk, &msg, &tampered), Ok(false));
	assert_eq!(verify(&pk, b"another message", &sig), Ok(false));
	assert_eq!(verify(&pk[..100], &msg, &sig), Ok(false), "truncated key");
	assert_eq!(verify(&pk, &msg, &[sig.clone(), vec![0]].concat()), Ok(false), "oversized sig");
	assert_eq!(verify(&[], &[], &[]), Ok(false));

	// A receipt bound to this chain's genesis, checked by the runtime as settlement will.
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let receipt = UsageReceipt {
		genesis_hash: genesis.0,
		provider: [2; 32],
		session_id: 1,
		session_nonce: [3; 32],
		sequence: 1,
		bytes: 4096,
		seconds: 0,
		amount: 1_000,
	};
	let signed = SignedUsageReceipt { signature: pair.sign(&receipt.signing_payload()).unwrap(), receipt };
	let check = |signer: &MlDsaKeyPair, r: &SignedUsageReceipt| {
		call_bool(&node.rpc, "PqCryptoApi_verify_receipt", (signer.public(), r).encode())
	};
	assert_eq!(check(&pair, &signed), Ok(true));
	assert_eq!(check(&MlDsaKeyPair::from_seed([6; 32]), &signed), Ok(false), "wrong signer");
	let mut raised = signed.clone();
	raised.receipt.amount += 1;
	assert_eq!(check(&pair, &raised), Ok(false), "amount raised after signing");

	// Garbage arguments are an error for that call, nothing more.
	assert!(call_bool(&node.rpc, "PqCryptoApi_verify_receipt", vec![1, 2, 3]).is_err());
	let now = node.rpc.best_number().unwrap();
	node.wait(Duration::from_secs(60), "blocks to continue", |n| n.rpc.best_number().filter(|&b| b > now)).unwrap();
}
