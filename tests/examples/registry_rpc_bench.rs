//! Benchmark: latency of the `registry_*` JSON-RPC methods with 10,000 providers.
//!
//! Builds a development chain spec whose genesis registers `--providers` (default 10,000)
//! providers with distinct real ML-DSA-65 service keys, spread over 25 countries, both services
//! and a range of prices and stakes; starts a dev node on it; then times each query shape
//! `--runs` times over JSON-RPC on loopback and prints min / median / p95 / max in
//! milliseconds, as a Markdown table for docs/benchmarks.md.
//!
//! ```text
//! source scripts/env.sh && cargo test --workspace --no-run -q   # builds node + this example
//! cargo run -q -p interlattice-tests --example registry_rpc_bench -- --providers 10000 --runs 30
//! ```

use std::time::{Duration, Instant};

use interlattice_runtime::{MILLI_UNIT, UNIT};
use interlattice_tests::{Node, NodeConfig};
use serde_json::{json, Value};
use sp_core::crypto::{Ss58AddressFormat, Ss58Codec};

fn time(node: &Node, method: &str, params: Value, runs: usize) -> (Vec<f64>, Value) {
	let mut samples = Vec::with_capacity(runs);
	let mut last = Value::Null;
	// One warm-up call (the first runtime call after start compiles nothing, but fills caches).
	node.rpc.call(method, params.clone()).expect("call succeeds");
	for _ in 0..runs {
		let t = Instant::now();
		last = node.rpc.call(method, params.clone()).expect("call succeeds");
		samples.push(t.elapsed().as_secs_f64() * 1e3);
	}
	samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
	(samples, last)
}

fn main() {
	let n = interlattice_tests::number_arg("--providers", 10_000);
	let runs = interlattice_tests::number_arg("--runs", 30);
	let dir = tempfile::tempdir().unwrap();
	let spec = interlattice_tests::spec::registry_spec(n, dir.path());
	let mut config = NodeConfig::new(spec.to_str().unwrap(), &dir.path().join("node"));
	config.validator = Some("alice");
	let started = Instant::now();
	let mut node = Node::start(config).expect("node starts");
	node.wait(Duration::from_secs(300), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	eprintln!("[bench] node up with block 1 after {:.1?}", started.elapsed());

	let stats = node.rpc.call("registry_stats", json!([])).unwrap();
	let registered = stats["providers"]["registered"].as_u64().unwrap();
	assert_eq!(registered, n as u64 + 2, "all providers (plus the two bootstrap ones) are registered");

	let some =
		interlattice_tests::spec::registry_account(n / 2).to_ss58check_with_version(Ss58AddressFormat::custom(4242));
	let cases: Vec<(&str, &str, Value)> = vec![
		("first page, default query (active, by stake, 20)", "registry_providers", json!([{}])),
		("page of 100", "registry_providers", json!([{"limit": 100}])),
		("country filter (DE), 20", "registry_providers", json!([{"country": "DE"}])),
		(
			"VPN, max price, min stake, by price",
			"registry_providers",
			json!([{"service": "vpn", "maxPricePerGib": (500 * MILLI_UNIT).to_string(), "minStake": (1_200 * UNIT).to_string(), "order": "pricePerGib"}]),
		),
		("deep page (offset 9,000), 20", "registry_providers", json!([{"offset": 9_000, "order": "registeredAt"}])),
		("one provider", "registry_provider", json!([some])),
		("stats", "registry_stats", json!([])),
	];
	println!("Registry RPC latency, {n} providers (+2 bootstrap), {runs} runs each, ms:\n");
	println!("| query | matches | min | median | p95 | max |");
	println!("|---|---:|---:|---:|---:|---:|");
	for (name, method, params) in cases {
		let (s, last) = time(&node, method, params, runs);
		let matches = last.get("total").and_then(Value::as_u64).map(|t| t.to_string()).unwrap_or("—".into());
		let p95 = s[((s.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)];
		println!("| {name} | {matches} | {:.1} | {:.1} | {:.1} | {:.1} |", s[0], s[s.len() / 2], p95, s[s.len() - 1]);
	}
	node.stop();
}
