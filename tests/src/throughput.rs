//! Blocks under load, for the throughput benchmarks: what each block included, how long it
//! was and how much normal-class weight it used, against the limits.

use std::time::Duration;

use interlattice_runtime::{Runtime, RuntimeEvent};
use serde_json::json;

use crate::{chain, Node};

/// One block's share of the run.
pub struct BlockStats {
	/// The block's number.
	pub number: u64,
	/// Matching events in it.
	pub items: usize,
	/// Extrinsics in it.
	pub extrinsics: usize,
	/// Its extrinsics' total length in bytes.
	pub length: usize,
	/// Normal-class weight used, in ms.
	pub weight_ms: f64,
}

/// Watches blocks from `from` on until `total` events matching `count` were seen.
pub fn watch(node: &mut Node, from: u64, total: usize, count: impl Fn(&RuntimeEvent) -> bool) -> Vec<BlockStats> {
	let mut seen = 0;
	let mut next = from;
	let mut stats = Vec::new();
	let deadline = std::time::Instant::now() + Duration::from_secs(900);
	while seen < total {
		assert!(std::time::Instant::now() < deadline, "only {seen} of {total} included");
		let Some(best) = node.rpc.best_number() else { continue };
		if next > best {
			std::thread::sleep(Duration::from_millis(500));
			continue;
		}
		let hash = node.rpc.block_hash(next).unwrap();
		let block = node.rpc.call("chain_getBlock", json!([hash])).unwrap();
		let xts = block["block"]["extrinsics"].as_array().unwrap();
		let length: usize = xts.iter().map(|x| (x.as_str().unwrap().len() - 2) / 2).sum();
		let items = chain::events(&node.rpc, &hash).unwrap().iter().filter(|e| count(&e.event)).count();
		let weight_key = [sp_crypto_hashing::twox_128(b"System"), sp_crypto_hashing::twox_128(b"BlockWeight")].concat();
		let consumed: frame_support::dispatch::PerDispatchClass<frame_support::weights::Weight> =
			chain::storage(&node.rpc, &weight_key, Some(&hash)).unwrap().unwrap_or_default();
		let weight_ms = consumed.get(frame_support::dispatch::DispatchClass::Normal).ref_time() as f64 / 1e9;
		seen += items;
		eprintln!("[bench] block #{next}: {items} ({seen}/{total})");
		stats.push(BlockStats { number: next, items, extrinsics: xts.len(), length, weight_ms });
		next += 1;
	}
	stats
}

/// Prints a Markdown table of `stats` and the most items in one block.
pub fn report(title: &str, unit: &str, stats: &[BlockStats]) {
	let limits = <Runtime as frame_system::Config>::BlockLength::get();
	let max_len = *limits.max.get(frame_support::dispatch::DispatchClass::Normal) as f64;
	let weights = <Runtime as frame_system::Config>::BlockWeights::get();
	let max_weight =
		weights.get(frame_support::dispatch::DispatchClass::Normal).max_total.unwrap_or(weights.max_block).ref_time()
			as f64 / 1e9;
	println!("\n{title}\n");
	println!(
		"| block | {unit} | extrinsics | length (KiB) | % of normal length | normal weight (ms) | % of normal weight |"
	);
	println!("|---:|---:|---:|---:|---:|---:|---:|");
	for s in stats.iter().filter(|s| s.items > 0) {
		println!(
			"| #{} | {} | {} | {:.0} | {:.0} % | {:.0} | {:.0} % |",
			s.number,
			s.items,
			s.extrinsics,
			s.length as f64 / 1024.0,
			100.0 * s.length as f64 / max_len,
			s.weight_ms,
			100.0 * s.weight_ms / max_weight
		);
	}
	let best = stats.iter().map(|s| s.items).max().unwrap_or(0);
	println!(
		"\nmost {unit} in one block: {best} (normal-class limits: {:.0} KiB, {:.0} ms)",
		max_len / 1024.0,
		max_weight
	);
}
