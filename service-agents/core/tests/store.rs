//! The receipt store across restarts and crashes: nothing recorded is lost, a torn last
//! record is cut off, corruption in the middle is refused, compaction keeps the state.

use std::{fs::OpenOptions, io::Write};

use interlattice_agent_core::{store::LOG_FILE, ReceiptStore, StoreError};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt, UsageReceipt};

fn receipt(key: &MlDsaKeyPair, session_id: u64, sequence: u64) -> SignedUsageReceipt {
	let receipt = UsageReceipt {
		genesis_hash: [7; 32],
		provider: [8; 32],
		session_id,
		session_nonce: [9; 32],
		sequence,
		bytes: sequence * 1_000_000,
		seconds: sequence,
		amount: u128::from(sequence) * 1_000,
	};
	let signature = key.sign(&receipt.signing_payload()).unwrap();
	SignedUsageReceipt { receipt, signature }
}

fn log_len(dir: &std::path::Path) -> u64 {
	std::fs::metadata(dir.join(LOG_FILE)).unwrap().len()
}

#[test]
fn recorded_receipts_survive_a_restart() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([1; 32]);
	{
		let mut store = ReceiptStore::open(dir.path()).unwrap();
		store.record(receipt(&key, 1, 1)).unwrap();
		store.record(receipt(&key, 1, 2)).unwrap();
		store.record(receipt(&key, 2, 5)).unwrap();
		store.mark_settled(1, 1).unwrap();
		// The process dies here without any shutdown.
	}
	let store = ReceiptStore::open(dir.path()).unwrap();
	assert_eq!(store.session(1).unwrap().latest, receipt_shape(&key, 1, 2, &store));
	assert_eq!(store.session(1).unwrap().settled_sequence, 1);
	assert_eq!(store.session(2).unwrap().latest.receipt.sequence, 5);
	let unsettled: Vec<_> = store.unsettled().iter().map(|r| (r.receipt.session_id, r.receipt.sequence)).collect();
	assert_eq!(unsettled, vec![(1, 2), (2, 5)]);
	assert!(store.unsettled().iter().all(|r| r.verify(key.public())), "signatures stored intact");
}

/// The stored receipt, checked field by field against what was recorded (signatures are
/// randomized, so compare the receipt and verify the signature).
fn receipt_shape(key: &MlDsaKeyPair, session: u64, sequence: u64, store: &ReceiptStore) -> SignedUsageReceipt {
	let stored = store.session(session).unwrap().latest.clone();
	assert_eq!(stored.receipt, receipt(key, session, sequence).receipt);
	assert!(stored.verify(key.public()));
	stored
}

#[test]
fn an_older_or_equal_receipt_is_refused_and_nothing_is_written() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([2; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	store.record(receipt(&key, 3, 10)).unwrap();
	let len = log_len(dir.path());
	for sequence in [10, 9, 0] {
		match store.record(receipt(&key, 3, sequence)) {
			Err(StoreError::NotNewer { session_id: 3, stored: 10, .. }) => {},
			other => panic!("expected NotNewer, got {other:?}"),
		}
	}
	assert_eq!(log_len(dir.path()), len);
	assert_eq!(store.session(3).unwrap().latest.receipt.sequence, 10);
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_store_keeps_working() {
	let key = MlDsaKeyPair::from_seed([3; 32]);
	// Every way a crash can cut the last record: inside the header, inside the body, and
	// a complete length with a body that never reached the disk (zeros).
	for cut in [3usize, 11, 100, 3_000] {
		let dir = tempfile::tempdir().unwrap();
		let mut store = ReceiptStore::open(dir.path()).unwrap();
		store.record(receipt(&key, 1, 1)).unwrap();
		store.record(receipt(&key, 2, 1)).unwrap();
		let good = log_len(dir.path());
		store.record(receipt(&key, 1, 2)).unwrap();
		drop(store);
		let full = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
		let mut torn = full[..good as usize + cut].to_vec();
		if cut == 3_000 {
			torn[good as usize + 12..].fill(0);
		}
		std::fs::write(dir.path().join(LOG_FILE), &torn).unwrap();

		let mut store = ReceiptStore::open(dir.path()).unwrap();
		assert_eq!(log_len(dir.path()), good, "cut {cut}: the torn record is removed");
		assert_eq!(store.session(1).unwrap().latest.receipt.sequence, 1, "cut {cut}");
		assert_eq!(store.session(2).unwrap().latest.receipt.sequence, 1, "cut {cut}");
		store.record(receipt(&key, 1, 3)).unwrap();
		drop(store);
		assert_eq!(ReceiptStore::open(dir.path()).unwrap().session(1).unwrap().latest.receipt.sequence, 3);
	}
}

#[test]
fn corruption_in_the_middle_is_refused_not_guessed() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([4; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	store.record(receipt(&key, 1, 1)).unwrap();
	let first = log_len(dir.path());
	store.record(receipt(&key, 1, 2)).unwrap();
	store.record(receipt(&key, 1, 3)).unwrap();
	drop(store);
	let path = dir.path().join(LOG_FILE);
	let mut bytes = std::fs::read(&path).unwrap();
	bytes[first as usize + 200] ^= 0xff; // inside the second record's body
	std::fs::write(&path, &bytes).unwrap();
	match ReceiptStore::open(dir.path()) {
		Err(StoreError::Corrupt { offset, reason, .. }) => {
			assert_eq!(offset, first);
			assert!(reason.contains("checksum"), "{reason}");
		},
		Err(other) => panic!("expected Corrupt, got {other}"),
		Ok(_) => panic!("expected Corrupt, got a store"),
	}
	assert_eq!(std::fs::read(&path).unwrap(), bytes, "a refused store is left untouched");
}

#[test]
fn garbage_is_refused_with_a_clear_error() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([5; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	store.record(receipt(&key, 1, 1)).unwrap();
	drop(store);
	let mut f = OpenOptions::new().append(true).open(dir.path().join(LOG_FILE)).unwrap();
	// A plausible header claiming a small body, then more data than that body: not a torn
	// write at the end, so corruption.
	f.write_all(&16u32.to_le_bytes()).unwrap();
	f.write_all(&[0xaa; 8 + 16 + 40]).unwrap();
	drop(f);
	let err = ReceiptStore::open(dir.path()).err().expect("garbage is refused");
	assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn settlement_marks_and_forgetting_persist() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([6; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	store.record(receipt(&key, 1, 4)).unwrap();
	store.record(receipt(&key, 2, 1)).unwrap();
	store.mark_settled(1, 4).unwrap();
	let len = log_len(dir.path());
	store.mark_settled(1, 3).unwrap(); // older mark: nothing to write
	assert_eq!(log_len(dir.path()), len);
	assert_eq!(store.unsettled().len(), 1);
	store.forget(2).unwrap();
	drop(store);
	let store = ReceiptStore::open(dir.path()).unwrap();
	assert!(store.unsettled().is_empty());
	assert!(store.session(2).is_none());
	assert_eq!(store.session(1).unwrap().settled_sequence, 4);
}

#[test]
fn compaction_keeps_the_state_and_an_unfinished_one_is_ignored() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([7; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	for sequence in 1..=20 {
		store.record(receipt(&key, 1, sequence)).unwrap();
	}
	store.record(receipt(&key, 2, 1)).unwrap();
	store.mark_settled(1, 15).unwrap();
	let before = log_len(dir.path());
	store.compact().unwrap();
	assert!(log_len(dir.path()) < before / 5, "compaction shrinks the log");
	assert_eq!(store.records(), 3);
	store.record(receipt(&key, 1, 21)).unwrap();
	drop(store);
	// A crash during a later compaction leaves a partial file next to the log.
	std::fs::write(dir.path().join("receipts.log.compact"), b"partial").unwrap();
	let store = ReceiptStore::open(dir.path()).unwrap();
	assert!(!dir.path().join("receipts.log.compact").exists());
	assert_eq!(store.session(1).unwrap().latest.receipt.sequence, 21);
	assert_eq!(store.session(1).unwrap().settled_sequence, 15);
	assert_eq!(store.session(2).unwrap().latest.receipt.sequence, 1);
}

/// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted on drop: a disk that really
/// fills up. Needs root (mount).
struct SmallDisk {
	dir: tempfile::TempDir,
}

impl SmallDisk {
	fn new(kib: u32) -> SmallDisk {
		assert!(
			unsafe { libc::geteuid() } == 0,
			"this test mounts a small tmpfs to fill a disk for real: run it as root (scripts/test.sh does)"
		);
		let dir = tempfile::tempdir().unwrap();
		let status = std::process::Command::new("mount")
			.args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs", dir.path().to_str().unwrap()])
			.status()
			.expect("mount runs");
		assert!(status.success(), "mounting a tmpfs failed");
		SmallDisk { dir }
	}

	fn path(&self) -> &std::path::Path {
		self.dir.path()
	}
}

impl Drop for SmallDisk {
	fn drop(&mut self) {
		let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
	}
}

/// Issue 16 item 18: a write that fails on a full disk leaves no partial record behind.
/// Before, the partial record stayed, later appends buried it, and the next start refused the
/// whole store (the agent stayed down with unsettled receipts).
#[test]
fn a_full_disk_loses_no_acknowledged_receipt_and_the_store_reopens() {
	let disk = SmallDisk::new(64);
	let store_dir = disk.path().join("receipts");
	let key = MlDsaKeyPair::from_seed([5; 32]);
	let mut store = ReceiptStore::open(&store_dir).unwrap();
	// Fill the disk, leaving less than a record's worth of room.
	let filler = disk.path().join("filler");
	{
		let mut f = std::fs::File::create(&filler).unwrap();
		let chunk = vec![0u8; 1024];
		while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
	}
	let mut acknowledged = Vec::new();
	let mut failures = 0;
	for sequence in 1..=40u64 {
		match store.record(receipt(&key, 1, sequence)) {
			Ok(()) => acknowledged.push(sequence),
			Err(StoreError::Io { .. }) => failures += 1,
			Err(e) => panic!("unexpected error: {e}"),
		}
		if sequence == 20 {
			// Room again: later receipts must be stored after a clean log.
			std::fs::remove_file(&filler).unwrap();
		}
	}
	assert!(failures > 0, "the disk was full: some writes failed");
	let last = *acknowledged.last().expect("receipts were stored after the disk had room");
	assert!(last > 20);
	drop(store);
	let store = ReceiptStore::open(&store_dir).expect("the store opens after a full disk");
	assert_eq!(store.session(1).unwrap().latest.receipt.sequence, last, "the last acknowledged receipt is there");
	assert!(store.session(1).unwrap().latest.verify(key.public()));
}

/// Issue 16 item 7: what an agent served a session survives its restart (and compaction), so
/// a restart does not refill the session's credit.
#[test]
fn served_counts_survive_a_restart_and_compaction() {
	use interlattice_agent_core::Served;
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([6; 32]);
	{
		let mut store = ReceiptStore::open(dir.path()).unwrap();
		store.record_served(3, Served { bytes: 1_000, seconds: 5 }).unwrap();
		store.record_served(3, Served { bytes: 500, seconds: 2 }).unwrap(); // older: ignored
		store.record(receipt(&key, 3, 1)).unwrap(); // syncs what came before
	}
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	assert_eq!(store.served(3), Served { bytes: 1_000, seconds: 5 });
	store.compact().unwrap();
	drop(store);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	assert_eq!(store.served(3), Served { bytes: 1_000, seconds: 5 });
	store.forget(3).unwrap();
	assert_eq!(store.served(3), Served::default());
}

/// Group commit: several receipts, one write and one sync; each checked as if alone.
#[test]
fn a_batch_of_receipts_is_stored_together_and_checked_one_by_one() {
	let dir = tempfile::tempdir().unwrap();
	let key = MlDsaKeyPair::from_seed([7; 32]);
	let mut store = ReceiptStore::open(dir.path()).unwrap();
	store.record(receipt(&key, 1, 5)).unwrap();
	let outcomes = store.record_batch(vec![
		receipt(&key, 1, 6),
		receipt(&key, 1, 6), // the same again: not newer than the first of the batch
		receipt(&key, 2, 1),
		receipt(&key, 1, 4), // older than what is stored
	]);
	assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
	assert!(matches!(outcomes[1], Err(StoreError::NotNewer { stored: 6, .. })));
	assert!(matches!(outcomes[3], Err(StoreError::NotNewer { stored: 6, .. })));
	drop(store);
	let store = ReceiptStore::open(dir.path()).unwrap();
	assert_eq!(store.session(1).unwrap().latest.receipt.sequence, 6);
	assert_eq!(store.session(2).unwrap().latest.receipt.sequence, 1);
}
