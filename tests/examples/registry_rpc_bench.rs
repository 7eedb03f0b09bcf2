//! Benchmark: latency of the `registry_*` JSON-RPC methods, through the node's index and
//! through the runtime API, side by side in one run.
//!
//! Builds a development chain spec whose genesis registers `--providers` (default 10,000)
//! providers with distinct real ML-DSA-65 service keys, spread over 25 countries, both services
//! and a range of prices and stakes; starts a dev node on it (and reports how long it took, and
//! how long its index took to build); then times each query shape `--runs` times at the best
//! block (the index answers) and `--runtime-runs` times at the genesis block (the same
//! providers; the index is not there, so the runtime API answers), over JSON-RPC on loopback,
//! and prints p50 / p99 / max in milliseconds as a Markdown table for docs/benchmarks.md. Last,
//! the memory of an index of that many providers, built in this process (bytes allocated;
//! `--memory-only` measures just that).
//!
//! ```text
//! source scripts/env.sh && cargo test --workspace --no-run -q   # builds node + this example
//! cargo run -q -p interlattice-tests --example registry_rpc_bench -- --providers 100000 --runs 200 --runtime-runs 3
//! ```
//!
//! `--runtime-runs 0` times the index only; `--serve` starts the node and keeps it up (its
//! port printed) for profiling by hand.

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
		let (took, answer) = node.rpc.call_timed(method, params.clone()).expect("call succeeds");
		samples.push(took.as_secs_f64() * 1e3);
		last = answer;
	}
	samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
	(samples, last)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
	samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// Counts the bytes this process holds allocated (for the index's memory).
struct Counting;

static ALLOCATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl std::alloc::GlobalAlloc for Counting {
	unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
		ALLOCATED.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
		// SAFETY: the caller's contract, passed on.
		unsafe { std::alloc::System.alloc(layout) }
	}

	unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
		ALLOCATED.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
		// SAFETY: the caller's contract, passed on.
		unsafe { std::alloc::System.dealloc(ptr, layout) }
	}
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> usize {
	ALLOCATED.load(std::sync::atomic::Ordering::Relaxed)
}

fn main() {
	let n = interlattice_tests::number_arg("--providers", 10_000);
	let runs = interlattice_tests::number_arg("--runs", 30);
	let runtime_runs = interlattice_tests::number_arg("--runtime-runs", 5);
	if std::env::args().any(|a| a == "--memory-only") {
		index_memory(n);
		return;
	}
	let dir = tempfile::tempdir().unwrap();
	let spec = interlattice_tests::spec::registry_spec(n, dir.path());
	let mut config = NodeConfig::new(spec.to_str().unwrap(), &dir.path().join("node"));
	config.validator = Some("alice");
	let started = Instant::now();
	let mut node = Node::start(config).expect("node starts");
	node.wait(Duration::from_secs(1200), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
	let up = started.elapsed();
	let indexed = node
		.wait(Duration::from_secs(600), "the index", |n| {
			let page = n.rpc.call("registry_providers", json!([{"limit": 1}])).ok()?;
			(page["at"]["source"] == "index").then_some(started.elapsed())
		})
		.unwrap();
	if std::env::args().any(|a| a == "--serve") {
		// For profiling by hand: keep the node up until this process is stopped.
		eprintln!("[bench] serving JSON-RPC on 127.0.0.1:{} until stopped", node.rpc.port);
		loop {
			std::thread::sleep(Duration::from_secs(3600));
		}
	}
	let built = node.log_tail(100_000).lines().find(|l| l.contains("registry index built")).map(str::to_string);
	eprintln!("[bench] node up with block 1 after {up:.1?}, index answering after {indexed:.1?}");
	eprintln!("[bench] {}", built.as_deref().unwrap_or("(no index build line in the log)"));

	let stats = node.rpc.call("registry_stats", json!([])).unwrap();
	let registered = stats["providers"]["registered"].as_u64().unwrap();
	assert_eq!(registered, n as u64 + 2, "all providers (plus the two bootstrap ones) are registered");
	let genesis = node.rpc.block_hash(0).expect("the genesis hash");

	let some =
		interlattice_tests::spec::registry_account(n / 2).to_ss58check_with_version(Ss58AddressFormat::custom(4242));
	let deep = (n as u64 * 9 / 10).to_string();
	let cases: Vec<(&str, &str, Value)> = vec![
		("first page, default query (active, by stake, 20)", "registry_providers", json!({})),
		("page of 100", "registry_providers", json!({"limit": 100})),
		("country filter (DE), 20", "registry_providers", json!({"country": "DE"})),
		(
			"VPN, max price, min stake, by price",
			"registry_providers",
			json!({"service": "vpn", "maxPricePerGib": (500 * MILLI_UNIT).to_string(), "minStake": (1_200 * UNIT).to_string(), "order": "pricePerGib"}),
		),
		(
			"deep page (offset 90%), by registration",
			"registry_providers",
			json!({"offset": deep.parse::<u64>().unwrap(), "order": "registeredAt"}),
		),
		("one provider", "registry_provider", json!(some)),
		("stats", "registry_stats", Value::Null),
	];
	let params = |query: &Value, at: Option<&str>| {
		let mut list: Vec<Value> = [query.clone()].into_iter().filter(|q| !q.is_null()).collect();
		list.extend(at.map(|a| json!(a)));
		Value::Array(list)
	};
	println!("Registry RPC latency, {n} providers (+2 bootstrap), ms; index: {runs} runs at the best block, runtime API: {runtime_runs} runs at genesis (same providers):\n");
	println!("| query | matches | index p50 | index p99 | index max | runtime p50 | runtime max |");
	println!("|---|---:|---:|---:|---:|---:|---:|");
	for (name, method, query) in cases {
		let (index, last) = time(&node, method, params(&query, None), runs);
		// `--runtime-runs 0`: the index only (the runtime API takes seconds per call).
		let runtime = (runtime_runs > 0).then(|| {
			let (runtime, runtime_last) = time(&node, method, params(&query, Some(&genesis)), runtime_runs);
			if method == "registry_providers" {
				assert_eq!(last["total"], runtime_last["total"], "{name}: the index and the runtime agree");
			}
			format!("{:.1} | {:.1}", percentile(&runtime, 0.5), runtime[runtime.len() - 1])
		});
		let matches = last.get("total").and_then(Value::as_u64).map(|t| t.to_string()).unwrap_or("—".into());
		println!(
			"| {name} | {matches} | {:.2} | {:.2} | {:.2} | {} |",
			percentile(&index, 0.5),
			percentile(&index, 0.99),
			index[index.len() - 1],
			runtime.as_deref().unwrap_or("— | —")
		);
	}
	node.stop();
	println!("\nNode start (genesis of {n} providers) to block 1: {up:.1?}; to the index answering: {indexed:.1?}.");
	index_memory(n);
}

fn index_memory(n: usize) {
	// Memory of an index of n providers (records shaped as the genesis ones: one endpoint, a
	// full ML-DSA-65 key), built in this process.
	let before = allocated();
	let mut index =
		pallet_provider_registry::index::ProviderIndex::<sp_core::crypto::AccountId32, u128, u32>::new(1_000 * UNIT);
	for i in 0..n {
		let mut seed = [0u8; 32];
		seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
		let account = interlattice_tests::spec::registry_account(i);
		let info = pallet_provider_registry::ProviderInfo {
			account: account.clone(),
			services: pallet_provider_registry::Services::Both,
			endpoints: vec![format!("198.51.100.{}:{}", i % 250, 7000 + i % 1000).into_bytes()],
			country: *b"DE",
			region: Vec::new(),
			hosting: pallet_provider_registry::Hosting::Datacenter,
			prices: pallet_provider_registry::Prices { per_gib: (i as u128 * 7919) % 900, per_hour: i as u128 % 11 },
			service_key: interlattice_pq_crypto::MlDsaPublicKey(
				[i as u8; interlattice_pq_crypto::ML_DSA_65_PUBLIC_KEY_LEN],
			),
			stake: 1_000 * UNIT + i as u128,
			unbonding: 0,
			status: pallet_provider_registry::ProviderStatus::Registered,
			active: true,
			registered_at: 0,
		};
		index.apply(account, Some(info));
	}
	let after = allocated();
	println!(
		"\nIndex memory: {n} providers, +{:.1} MB allocated: {:.0} bytes per provider (each holds its 1,952-byte ML-DSA-65 key).",
		(after - before) as f64 / 1e6,
		(after - before) as f64 / n as f64
	);
	assert_eq!(index.len(), n);
}
