//! Post-quantum accounts on a running node (issue 19): ML-DSA-65 accounts transfer, register
//! their own key with their first transaction, and a classical account that bound an ML-DSA
//! key and locked itself is out of reach of its classical key, whoever holds it (a quantum
//! adversary). Forged, truncated, oversized, wrong-context and unregistered-key signatures and
//! replays are refused by the pool, and the node keeps producing blocks.

use codec::{Compact, Decode, Encode};
use interlattice_agent_core::account::AccountKey;
use interlattice_pq_crypto::{account, keys::MlDsaKeyPair, MlDsaSignature};
use interlattice_runtime::{
	AccountId, BalancesCall, RuntimeCall, RuntimeEvent, Signature, SignedPayload, UncheckedExtrinsic, UNIT,
};
use interlattice_tests::{
	chain::{self, submit_extrinsic_and_wait, succeeded},
	rpc::RpcError,
	Node, NodeConfig,
};
use pallet_pq_accounts::{Call as PqCall, Event as PqEvent, VALIDITY_ACCOUNT_LOCKED, VALIDITY_UNKNOWN_KEY};
use serde_json::json;
use sp_keyring::Sr25519Keyring::{Alice, Bob};
use sp_runtime::{generic::Preamble, MultiAddress};

/// The pool's answer to raw extrinsic bytes: `Ok(hash)` or the refusal's message and data.
fn submit_raw(node: &Node, bytes: &[u8]) -> Result<String, String> {
	match node.rpc.call("author_submitExtrinsic", json!([format!("0x{}", hex::encode(bytes))])) {
		Ok(v) => Ok(v.to_string()),
		Err(RpcError::Server(e)) => Err(format!("{} {}", e["message"], e["data"])),
		Err(e) => panic!("{e}"),
	}
}

fn refusal(node: &Node, xt: &UncheckedExtrinsic) -> String {
	submit_raw(node, &xt.encode()).expect_err("the pool accepted a hostile transaction")
}

fn free_balance(node: &Node, who: &AccountId) -> u128 {
	chain::account(&node.rpc, who, None).unwrap().data.free
}

fn transfer(to: &AccountId, value: u128) -> RuntimeCall {
	RuntimeCall::Balances(BalancesCall::transfer_keep_alive { dest: MultiAddress::Id(to.clone()), value })
}

struct Chain {
	node: Node,
	genesis: sp_core::H256,
}

impl Chain {
	fn nonce(&self, who: &AccountId) -> u32 {
		chain::next_nonce(&self.node.rpc, who).unwrap()
	}

	fn sign(&self, call: RuntimeCall, key: &AccountKey, key_on_chain: bool) -> UncheckedExtrinsic {
		chain::signed_extrinsic_with(call, key, self.nonce(&key.account_id()), self.genesis, key_on_chain)
	}

	/// Submits, waits for the block, asserts success; returns the events.
	fn run(&mut self, call: RuntimeCall, key: &AccountKey, key_on_chain: bool) -> Vec<RuntimeEvent> {
		let xt = self.sign(call, key, key_on_chain);
		let (_, events) = submit_extrinsic_and_wait(&mut self.node, &xt);
		assert!(succeeded(&events), "{events:?}");
		events
	}

	/// An extrinsic by `who` with a signature made some other way.
	fn with_signature(&self, call: RuntimeCall, who: &AccountId, signature: Signature) -> UncheckedExtrinsic {
		UncheckedExtrinsic::new_signed(
			call,
			MultiAddress::Id(who.clone()),
			signature,
			chain::tx_extension(self.nonce(who)),
		)
	}

	/// The signing payload of `call` by `who` at its next nonce.
	fn payload(&self, call: RuntimeCall, who: &AccountId) -> Vec<u8> {
		let implicit = (
			(),
			interlattice_runtime::VERSION.spec_version,
			interlattice_runtime::VERSION.transaction_version,
			self.genesis,
			self.genesis,
			(),
			(),
			(),
			(),
			None::<[u8; 32]>,
			(),
		);
		let payload = SignedPayload::from_raw(call, chain::tx_extension(self.nonce(who)), implicit);
		payload.using_encoded(|bytes| bytes.to_vec())
	}
}

fn custom(code: u8) -> String {
	format!("Custom error: {code}")
}

#[test]
fn ml_dsa_accounts_transact_and_a_locked_account_refuses_its_classical_key() {
	let dir = tempfile::tempdir().unwrap();
	let mut config = NodeConfig::new("dev", &dir.path().join("node"));
	config.validator = Some("alice");
	let mut node = Node::start(config).expect("node starts");
	node.wait(std::time::Duration::from_secs(60), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	let genesis = chain::genesis_hash(&node.rpc).unwrap();
	let mut c = Chain { node, genesis };

	// The dev ML-DSA account (endowed, key on chain at genesis) pays a fresh ML-DSA account.
	let dev = AccountKey::ml_dsa(MlDsaKeyPair::dev_account("alice"));
	let fresh_pair = MlDsaKeyPair::generate().unwrap();
	let fresh = AccountKey::ml_dsa(MlDsaKeyPair::from_seed(*fresh_pair.seed()));
	let fresh_id = fresh.account_id();
	assert!(!account::is_classical_public_key(fresh_id.as_ref()));
	let dev_before = free_balance(&c.node, &dev.account_id());
	c.run(transfer(&fresh_id, 50 * UNIT), &dev, true);
	assert_eq!(free_balance(&c.node, &fresh_id), 50 * UNIT);
	assert!(free_balance(&c.node, &dev.account_id()) < dev_before - 50 * UNIT, "the sender paid a fee");

	// The fresh account's key is not on chain: a signature without the key is refused before
	// the pool with a clear code.
	let why = refusal(&c.node, &c.sign(transfer(&Alice.to_account_id(), UNIT), &fresh, true));
	assert!(why.contains(&custom(VALIDITY_UNKNOWN_KEY)), "{why}");

	// Someone else's key carried for the fresh account (the attacker's own key, valid
	// signature): refused.
	let attacker = AccountKey::ml_dsa(MlDsaKeyPair::generate().unwrap());
	let payload = c.payload(transfer(&Alice.to_account_id(), UNIT), &fresh_id);
	let AccountKey::MlDsa65 { pair: attacker_pair, .. } = &attacker else { unreachable!() };
	let forged = Signature::MlDsa65WithKey(
		Box::new(attacker_pair.public().clone()),
		Box::new(attacker_pair.sign_transaction(&payload).unwrap()),
	);
	let why = refusal(&c.node, &c.with_signature(transfer(&Alice.to_account_id(), UNIT), &fresh_id, forged));
	assert!(why.contains("bad signature"), "{why}");

	// Its first transaction carries its key and registers it; it pays its own deposit.
	let events = c.run(
		RuntimeCall::PqAccounts(PqCall::register_key { public_key: Box::new(fresh_pair.public().clone()) }),
		&fresh,
		false,
	);
	assert!(
		events.iter().any(|e| matches!(e, RuntimeEvent::PqAccounts(PqEvent::KeyRegistered { account, depositor })
			if *account == fresh_id && *depositor == fresh_id)),
		"{events:?}"
	);
	// From now on its transactions carry only the signature.
	let to_bob = c.sign(transfer(&Bob.to_account_id(), 5 * UNIT), &fresh, true);
	assert!(matches!(&to_bob.preamble, Preamble::Signed(_, Signature::MlDsa65(_), _)));
	let bob_before = free_balance(&c.node, &Bob.to_account_id());
	let (_, events) = submit_extrinsic_and_wait(&mut c.node, &to_bob);
	assert!(succeeded(&events), "{events:?}");
	assert_eq!(free_balance(&c.node, &Bob.to_account_id()), bob_before + 5 * UNIT);

	// Bob binds an ML-DSA key, signed by both keys, and locks his account.
	let bob_classical = AccountKey::from(Bob.pair());
	let bob_pq_pair = MlDsaKeyPair::generate().unwrap();
	let proof = bob_pq_pair.sign(&account::binding_message(&genesis.0, Bob.to_account_id().as_ref())).unwrap();
	let bind = RuntimeCall::PqAccounts(PqCall::bind_key {
		public_key: Box::new(bob_pq_pair.public().clone()),
		proof: Box::new(proof),
		lock: true,
	});
	let events = c.run(bind, &bob_classical, false);
	assert!(events.iter().any(|e| matches!(e, RuntimeEvent::PqAccounts(PqEvent::AccountLocked { .. }))), "{events:?}");
	let bob_pq = AccountKey::MlDsa65 { pair: std::sync::Arc::new(bob_pq_pair), bound_to: Some(Bob.to_account_id()) };

	// Bob's classical key (which a quantum adversary could have recovered) moves nothing:
	// a transfer, an attempt to rebind another key, refused by the pool with a clear code.
	let why = refusal(&c.node, &c.sign(transfer(&Alice.to_account_id(), UNIT), &bob_classical, false));
	assert!(why.contains(&custom(VALIDITY_ACCOUNT_LOCKED)), "{why}");
	let thief = MlDsaKeyPair::generate().unwrap();
	let thief_proof = thief.sign(&account::binding_message(&genesis.0, Bob.to_account_id().as_ref())).unwrap();
	let rebind = RuntimeCall::PqAccounts(PqCall::bind_key {
		public_key: Box::new(thief.public().clone()),
		proof: Box::new(thief_proof),
		lock: false,
	});
	let why = refusal(&c.node, &c.sign(rebind, &bob_classical, false));
	assert!(why.contains(&custom(VALIDITY_ACCOUNT_LOCKED)), "{why}");
	// Bob's ML-DSA key moves his funds.
	let alice_before = free_balance(&c.node, &Alice.to_account_id());
	c.run(transfer(&Alice.to_account_id(), 2 * UNIT), &bob_pq, true);
	assert_eq!(free_balance(&c.node, &Alice.to_account_id()), alice_before + 2 * UNIT);

	// Bad ML-DSA signatures for the dev account, each refused.
	let dev_id = dev.account_id();
	let call = transfer(&Bob.to_account_id(), UNIT);
	// Forged: random bytes.
	let why = refusal(
		&c.node,
		&c.with_signature(call.clone(), &dev_id, Signature::MlDsa65(Box::new(MlDsaSignature([7; 3309])))),
	);
	assert!(why.contains("bad signature"), "{why}");
	// Wrong context: the dev key's signature of the right payload as an arbitrary message.
	let AccountKey::MlDsa65 { pair: dev_pair, .. } = &dev else { unreachable!() };
	let payload = c.payload(call.clone(), &dev_id);
	let message = Signature::MlDsa65(Box::new(dev_pair.sign_message(&payload).unwrap()));
	let why = refusal(&c.node, &c.with_signature(call.clone(), &dev_id, message));
	assert!(why.contains("bad signature"), "{why}");
	// Truncated and oversized: a valid extrinsic with its signature cut short, or with bytes
	// added inside it.
	let valid = c.sign(call.clone(), &dev, true).encode();
	let body = <Vec<u8>>::decode(&mut &valid[..]).unwrap();
	// length prefix ‖ 0x84 ‖ 0x00 + 32-byte account ‖ 0x04 (MlDsa65) ‖ 3,309 signature bytes ‖ …
	let signature_at = 1 + 33 + 1;
	let mut truncated = body.clone();
	truncated.drain(signature_at + 3000..signature_at + 3309);
	let encoded: Vec<u8> = [Compact(truncated.len() as u32).encode(), truncated].concat();
	assert!(submit_raw(&c.node, &encoded).is_err(), "a truncated signature was accepted");
	let mut oversized = body.clone();
	oversized.splice(signature_at..signature_at, [0u8; 64]);
	let encoded: Vec<u8> = [Compact(oversized.len() as u32).encode(), oversized].concat();
	assert!(submit_raw(&c.node, &encoded).is_err(), "an oversized signature was accepted");
	// A replay of an included transaction.
	let why = submit_raw(&c.node, &to_bob.encode()).unwrap_err();
	assert!(why.contains("Already Imported") || why.contains("outdated") || why.contains("1010"), "{why}");

	// The node kept producing blocks.
	let best = c.node.rpc.best_number().unwrap();
	c.node
		.wait(std::time::Duration::from_secs(30), "another block", |n| n.rpc.best_number().filter(|&b| b > best))
		.unwrap();
}

fn pq_key(args: &[&str]) -> String {
	let out =
		std::process::Command::new(interlattice_tests::node::workspace_binary("pq-key")).args(args).output().unwrap();
	assert!(out.status.success(), "pq-key {args:?}: {}", String::from_utf8_lossy(&out.stderr));
	String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SS58 address `pq-key generate` printed.
fn address(generated: &str) -> String {
	generated.lines().find_map(|l| l.strip_prefix("account:")).expect("an account line").trim().to_string()
}

#[test]
fn an_ml_dsa_provider_registers_and_serves_an_ml_dsa_client_and_is_paid() {
	use sp_core::crypto::Ss58Codec;
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

	// Keys: the dev ML-DSA account, a provider account, a client account, a service key.
	pq_key(&["generate", "--dev-account", "alice", "--out", &file("alice.mldsa")]);
	let provider = address(&pq_key(&["generate", "--out", &file("provider.mldsa")]));
	let client = address(&pq_key(&["generate", "--out", &file("client.mldsa")]));
	pq_key(&["generate", "--out", &file("service.key")]);
	// The dev ML-DSA account funds both with pq-key.
	for (to, amount) in [(&provider, "2000"), (&client, "20")] {
		let out = pq_key(&[
			"transfer",
			"--rpc",
			&rpc,
			"--from",
			&format!("ml-dsa:{}", file("alice.mldsa")),
			"--to",
			to,
			"--amount",
			amount,
		]);
		assert!(out.contains("ML-DSA-65"), "{out}");
	}
	let provider_id = AccountId::from_ss58check_with_version(&provider).map(|(a, _)| a).unwrap();

	// The provider registers with its ML-DSA account: its first transaction, which carries
	// its key and puts it on chain.
	let port = interlattice_tests::free_port();
	let config = dir.path().join("cdn-agent.toml");
	std::fs::write(
		&config,
		format!(
			r#"
[chain]
rpc = "{rpc}"
[provider]
account = "ml-dsa:{account}"
service_key = "{service}"
endpoint = "https://127.0.0.1:{port}"
country = "FI"
price_per_gib = "0.5"
price_per_hour = "0"
stake = "1000"
[http]
listen = "127.0.0.1:{port}"
shutdown_grace_secs = 5
[cache]
dir = "{cache}"
max_bytes = 67108864
[publish]
tokens = ["secret-token"]
[payment]
credit_limit_bytes = 1048576
receipts_dir = "{receipts}"
settle_interval_secs = 2
"#,
			account = file("provider.mldsa"),
			service = file("service.key"),
			cache = file("cache"),
			receipts = file("receipts"),
		),
	)
	.unwrap();
	let agent = interlattice_tests::node::workspace_binary("cdn-agent");
	let out =
		std::process::Command::new(&agent).args(["--config", config.to_str().unwrap(), "register"]).output().unwrap();
	assert!(out.status.success(), "register: {}", String::from_utf8_lossy(&out.stderr));
	let runtime = tokio::runtime::Runtime::new().unwrap();
	let chain = runtime.block_on(interlattice_agent_core::ChainClient::connect(&rpc)).unwrap();
	let registered = runtime.block_on(chain.provider(&provider_id)).unwrap().expect("the ML-DSA account is a provider");
	assert_eq!(registered.stake, 1000 * UNIT);
	assert!(
		runtime.block_on(chain.ml_dsa_key_on_chain(&provider_id)).unwrap(),
		"the first transaction put the key on chain"
	);

	// It serves; an ML-DSA client fetches a file through a paid session.
	let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
	let mut child = std::process::Command::new(&agent)
		.args(["--config", config.to_str().unwrap()])
		.stdout(log.try_clone().unwrap())
		.stderr(log)
		.spawn()
		.unwrap();
	let endpoint = format!("https://127.0.0.1:{port}");
	let cdn = interlattice_tests::node::workspace_binary("cdn");
	let movie = interlattice_tests::pseudo_random_bytes(3 << 20, 9);
	std::fs::write(dir.path().join("movie.bin"), &movie).unwrap();
	let published = interlattice_tests::wait_for(std::time::Duration::from_secs(60), "the agent to publish", || {
		let out = std::process::Command::new(&cdn)
			.args(["publish", &file("movie.bin"), "--rpc", &rpc, "--endpoint", &endpoint, "--token", "secret-token"])
			.args(["--provider", &provider])
			.output()
			.unwrap();
		out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
	})
	.unwrap();
	let out = std::process::Command::new(&cdn)
		.args(["get", &published, "--rpc", &rpc, "--state-dir", &file("client-state")])
		.args(["--account", &format!("ml-dsa:{}", file("client.mldsa")), "--provider", &provider])
		.args(["--endpoint", &endpoint, "-o", &file("movie.out")])
		.output()
		.unwrap();
	assert!(out.status.success(), "cdn get: {}", String::from_utf8_lossy(&out.stderr));
	assert_eq!(std::fs::read(file("movie.out")).unwrap(), movie);
	let session_id: u64 = String::from_utf8_lossy(&out.stdout).split_whitespace().last().unwrap().parse().unwrap();
	let session = runtime.block_on(chain.session(session_id)).unwrap().unwrap();
	assert_eq!(
		session.client,
		AccountId::from_ss58check_with_version(&client).map(|(a, _)| a).unwrap(),
		"the ML-DSA client opened and paid"
	);

	// The provider's agent settles with ML-DSA-signed transactions: the chain pays it.
	let settled = interlattice_tests::wait_for(std::time::Duration::from_secs(90), "settlement", || {
		let s = runtime.block_on(chain.session(session_id)).ok()??;
		(s.settled > 0).then_some(s.settled)
	})
	.unwrap();
	assert!(settled <= session.deposit, "settled {settled}");
	let _ = child.kill();
	let _ = child.wait();
}

#[test]
fn pq_key_binds_and_locks_a_classical_account_and_then_signs_for_it() {
	use sp_core::crypto::{Ss58AddressFormat, Ss58Codec};
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let key = dir.path().join("ferdie.mldsa").to_str().unwrap().to_string();
	pq_key(&["generate", "--out", &key]);
	let ferdie = sp_keyring::Sr25519Keyring::Ferdie.to_account_id();
	let ferdie_ss58 = ferdie.to_ss58check_with_version(Ss58AddressFormat::custom(interlattice_runtime::SS58_PREFIX));
	let alice = Alice.to_account_id().to_ss58check();

	let out = pq_key(&["bind-key", "--rpc", &rpc, "--from", "//Ferdie", "--key", &key, "--lock"]);
	assert!(out.contains("locked"), "{out}");
	// Ferdie's sr25519 key is refused, with the reason.
	let refused = std::process::Command::new(interlattice_tests::node::workspace_binary("pq-key"))
		.args(["transfer", "--rpc", &rpc, "--from", "//Ferdie", "--to", &alice, "--amount", "1"])
		.output()
		.unwrap();
	assert!(!refused.status.success());
	let stderr = String::from_utf8_lossy(&refused.stderr);
	assert!(stderr.contains("locked to its ML-DSA key"), "{stderr}");
	// The bound ML-DSA key signs for Ferdie: a transfer, and any call given encoded.
	let signer = format!("ml-dsa:{key}@{ferdie_ss58}");
	let out = pq_key(&["transfer", "--rpc", &rpc, "--from", &signer, "--to", &alice, "--amount", "1"]);
	assert!(out.contains("ML-DSA-65") && out.contains(&ferdie_ss58), "{out}");
	let remark = RuntimeCall::System(frame_system::Call::remark_with_event { remark: b"post-quantum".to_vec() });
	let out =
		pq_key(&["submit", "--rpc", &rpc, "--from", &signer, "--call", &format!("0x{}", hex::encode(remark.encode()))]);
	assert!(out.contains("included"), "{out}");

	// `lock` on its own: Eve binds a key without locking it (her sr25519 key still moves her
	// funds), then locks with `pq-key lock`, signed by that sr25519 key; from then on it is
	// refused.
	let eve_key = dir.path().join("eve.mldsa").to_str().unwrap().to_string();
	pq_key(&["generate", "--out", &eve_key]);
	let out = pq_key(&["bind-key", "--rpc", &rpc, "--from", "//Eve", "--key", &eve_key]);
	assert!(!out.contains("locked"), "{out}");
	pq_key(&["transfer", "--rpc", &rpc, "--from", "//Eve", "--to", &alice, "--amount", "1"]);
	let out = pq_key(&["lock", "--rpc", &rpc, "--from", "//Eve"]);
	assert!(out.contains("locked"), "{out}");
	let refused = std::process::Command::new(interlattice_tests::node::workspace_binary("pq-key"))
		.args(["transfer", "--rpc", &rpc, "--from", "//Eve", "--to", &alice, "--amount", "1"])
		.output()
		.unwrap();
	assert!(!refused.status.success());
	let stderr = String::from_utf8_lossy(&refused.stderr);
	assert!(stderr.contains("locked to its ML-DSA key"), "{stderr}");
}
