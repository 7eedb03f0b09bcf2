//! The durable receipt store: one append-only log file per agent.
//!
//! **Format** (`receipts.log`): a sequence of records, each
//! `length: u32 LE ‖ check: first 8 bytes of blake2_256(body) ‖ body`, where `body` is the
//! SCALE encoding of a [`Record`]: the latest receipt of a session, a settlement mark (the
//! chain settled a session up to a sequence number), or the removal of a finalized session.
//! Replaying the records in order rebuilds the state.
//!
//! **Durability**: [`ReceiptStore::record`] appends and `fdatasync`s before returning, so
//! once it returns (and the agent acknowledges the receipt) the receipt survives a crash or
//! power loss. A crash can only leave the *last* record incomplete (the file is only ever
//! appended to); on open, an incomplete or failed last record is cut off, with a warning. A
//! failed record followed by more data is corruption, not a torn write, and opening fails
//! with [`StoreError::Corrupt`] rather than silently dropping acknowledged receipts.
//!
//! **A failed write** (a full disk, an I/O error) is rolled back at once: the log is cut
//! back to the end of its last complete record and synced, so a partial record never stays
//! in the middle of the log, and the receipt is refused (the client sends it again). If even
//! the roll-back fails, the store refuses every write ([`StoreError::Unavailable`]) until it
//! is reopened, rather than append after damage. The directory is synced when the log is
//! created or replaced, so the file itself survives a crash.
//!
//! **Compaction** ([`ReceiptStore::compact`]) writes the current state to
//! `receipts.log.compact`, syncs it, renames it over the log and syncs the directory: at every
//! instant either the old or the new log is complete. A leftover `.compact` file (a crash
//! before the rename) is deleted on open.

use std::{
	collections::BTreeMap,
	fs::{File, OpenOptions},
	io::{self, Read, Write},
	path::{Path, PathBuf},
};

use codec::{Decode, Encode};
use interlattice_pq_crypto::SignedUsageReceipt;

/// Name of the log file in the store's directory.
pub const LOG_FILE: &str = "receipts.log";
const COMPACT_FILE: &str = "receipts.log.compact";
/// Largest record body accepted (a receipt is ~3.4 KB; anything far larger is corruption).
const MAX_RECORD_LEN: u32 = 64 * 1024;
const HEADER_LEN: usize = 4 + 8;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
	/// Reading or writing the files failed.
	#[error("receipt store {path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// The error.
		source: io::Error,
	},
	/// A record in the middle of the log is damaged: acknowledged receipts may be lost, so
	/// the store refuses to guess. Restore the file from a backup or move it away.
	#[error("receipt store {path} is corrupt at byte {offset}: {reason}")]
	Corrupt {
		/// The file.
		path: PathBuf,
		/// Where the damaged record starts.
		offset: u64,
		/// What is wrong with it.
		reason: String,
	},
	/// An earlier write failed and could not be rolled back: nothing more is written until
	/// the store is reopened (which cuts the damaged tail off).
	#[error("receipt store {path} refuses writes after a write it could not roll back; restart the agent")]
	Unavailable {
		/// The file.
		path: PathBuf,
	},
	/// The receipt is not newer than the one stored for its session (same or lower
	/// sequence number): nothing was written.
	#[error("session {session_id}: receipt sequence {sequence} is not above the stored {stored}")]
	NotNewer {
		/// The session.
		session_id: u64,
		/// The offered receipt's sequence.
		sequence: u64,
		/// The stored receipt's sequence.
		stored: u64,
	},
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
enum Record {
	/// The newest receipt of its session.
	#[codec(index = 0)]
	Receipt(Box<SignedUsageReceipt>),
	/// The chain settled `session_id` up to `sequence`.
	#[codec(index = 1)]
	Settled { session_id: u64, sequence: u64 },
	/// The session was finalized on-chain; nothing more to do for it.
	#[codec(index = 2)]
	Forgotten { session_id: u64 },
	/// What the agent served the session so far (all connections): a restarted agent
	/// resumes from it, so a restart does not refill a session's credit.
	#[codec(index = 3)]
	Served { session_id: u64, bytes: u64, seconds: u64 },
}

/// What the store knows about one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReceipts {
	/// The newest receipt the client signed.
	pub latest: SignedUsageReceipt,
	/// The highest sequence the chain is known to have settled (0: none).
	pub settled_sequence: u64,
}

/// The durable receipt store (see the module documentation).
pub struct ReceiptStore {
	dir: PathBuf,
	file: File,
	sessions: BTreeMap<u64, SessionReceipts>,
	served: BTreeMap<u64, crate::ledger::Served>,
	records: u64,
	/// Length of the log up to the end of its last complete record.
	len: u64,
	/// A failed write could not be rolled back.
	broken: bool,
}

fn check(body: &[u8]) -> [u8; 8] {
	let hash = sp_crypto_hashing::blake2_256(body);
	let mut out = [0u8; 8];
	out.copy_from_slice(&hash[..8]);
	out
}

fn frame(record: &Record) -> Vec<u8> {
	let body = record.encode();
	let mut out = Vec::with_capacity(HEADER_LEN + body.len());
	out.extend_from_slice(&(body.len() as u32).to_le_bytes());
	out.extend_from_slice(&check(&body));
	out.extend_from_slice(&body);
	out
}

fn sync_dir(dir: &Path) -> io::Result<()> {
	File::open(dir)?.sync_all()
}

impl ReceiptStore {
	/// Opens (or creates) the store in `dir`, replaying its log; cuts off a torn last record.
	pub fn open(dir: &Path) -> Result<Self, StoreError> {
		let io_err = |path: &Path| {
			let path = path.to_path_buf();
			move |source| StoreError::Io { path: path.clone(), source }
		};
		std::fs::create_dir_all(dir).map_err(io_err(dir))?;
		let compact = dir.join(COMPACT_FILE);
		if compact.exists() {
			tracing::warn!(path = %compact.display(), "removing an unfinished compaction");
			std::fs::remove_file(&compact).map_err(io_err(&compact))?;
		}
		let path = dir.join(LOG_FILE);
		let created = !path.exists();
		let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io_err(&path))?;
		if created {
			sync_dir(dir).map_err(io_err(dir))?;
		}
		let mut bytes = Vec::new();
		file.read_to_end(&mut bytes).map_err(io_err(&path))?;

		let mut store = ReceiptStore {
			dir: dir.to_path_buf(),
			file,
			sessions: BTreeMap::new(),
			served: BTreeMap::new(),
			records: 0,
			len: 0,
			broken: false,
		};
		let mut offset = 0usize;
		while offset < bytes.len() {
			match Self::parse(&bytes[offset..]) {
				Ok((record, len)) => {
					store.apply(record);
					store.records += 1;
					offset += len;
				},
				Err(reason) => {
					let end_of_bad = Self::claimed_end(&bytes[offset..]).map(|e| offset + e);
					if end_of_bad.is_none_or(|end| end >= bytes.len()) {
						tracing::warn!(
							path = %path.display(),
							offset,
							dropped = bytes.len() - offset,
							%reason,
							"cutting off a torn last record (a crash while it was written; it was never acknowledged)"
						);
						store.file.set_len(offset as u64).map_err(io_err(&path))?;
						store.file.sync_data().map_err(io_err(&path))?;
						break;
					}
					return Err(StoreError::Corrupt { path, offset: offset as u64, reason });
				},
			}
		}
		store.len = offset as u64;
		Ok(store)
	}

	/// Where a record starting at `bytes[0]` claims to end, if its header is complete.
	fn claimed_end(bytes: &[u8]) -> Option<usize> {
		let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
		if len > MAX_RECORD_LEN {
			return None;
		}
		Some(HEADER_LEN + len as usize)
	}

	/// One record from the start of `bytes`, and its length on disk.
	fn parse(bytes: &[u8]) -> Result<(Record, usize), String> {
		if bytes.len() < HEADER_LEN {
			return Err(format!("{} bytes, short of a record header", bytes.len()));
		}
		let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes; qed"));
		if len > MAX_RECORD_LEN {
			return Err(format!("record length {len} exceeds {MAX_RECORD_LEN}"));
		}
		let end = HEADER_LEN + len as usize;
		let body = bytes.get(HEADER_LEN..end).ok_or("record runs past the end of the file")?;
		if bytes[4..HEADER_LEN] != check(body) {
			return Err("checksum mismatch".into());
		}
		let record = Record::decode(&mut &body[..]).map_err(|e| format!("undecodable record: {e}"))?;
		Ok((record, end))
	}

	fn apply(&mut self, record: Record) {
		match record {
			Record::Receipt(r) => {
				let settled_sequence = self.sessions.get(&r.receipt.session_id).map_or(0, |s| s.settled_sequence);
				self.sessions.insert(r.receipt.session_id, SessionReceipts { latest: *r, settled_sequence });
			},
			Record::Settled { session_id, sequence } => {
				if let Some(s) = self.sessions.get_mut(&session_id) {
					s.settled_sequence = s.settled_sequence.max(sequence);
				}
			},
			Record::Served { session_id, bytes, seconds } => {
				let s = self.served.entry(session_id).or_default();
				s.bytes = s.bytes.max(bytes);
				s.seconds = s.seconds.max(seconds);
			},
			Record::Forgotten { session_id } => {
				self.served.remove(&session_id);
				self.sessions.remove(&session_id);
			},
		}
	}

	fn append(&mut self, record: Record) -> Result<(), StoreError> {
		self.append_with(record, true)
	}

	fn append_with(&mut self, record: Record, sync: bool) -> Result<(), StoreError> {
		let path = self.dir.join(LOG_FILE);
		if self.broken {
			return Err(StoreError::Unavailable { path });
		}
		let bytes = frame(&record);
		let written = self.file.write_all(&bytes).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
		if let Err(source) = written {
			// Cut the log back to its last complete record: a partial record must not stay
			// where the next append would bury it.
			let rollback = self.file.set_len(self.len).and_then(|()| self.file.sync_data());
			if let Err(e) = rollback {
				tracing::error!(path = %path.display(), error = %e, "cannot roll back a failed write; refusing writes");
				self.broken = true;
			}
			return Err(StoreError::Io { path, source });
		}
		self.len += bytes.len() as u64;
		self.apply(record);
		self.records += 1;
		Ok(())
	}

	/// Stores `receipt` durably if its sequence is above the stored one for its session;
	/// returns once it is on disk. Does not check the signature: the caller verifies it
	/// against the session's key before calling.
	pub fn record(&mut self, receipt: SignedUsageReceipt) -> Result<(), StoreError> {
		let (session_id, sequence) = (receipt.receipt.session_id, receipt.receipt.sequence);
		if let Some(stored) = self.sessions.get(&session_id).map(|s| s.latest.receipt.sequence) {
			if sequence <= stored {
				return Err(StoreError::NotNewer { session_id, sequence, stored });
			}
		}
		self.append(Record::Receipt(Box::new(receipt)))
	}

	/// Stores several receipts with one write and one `fdatasync` (group commit): each is
	/// checked as [`ReceiptStore::record`] checks it, in order; the valid ones are written
	/// together. The outcome of each, in order; on a write failure every valid one fails and
	/// nothing of the batch stays in the log.
	pub fn record_batch(&mut self, receipts: Vec<SignedUsageReceipt>) -> Vec<Result<(), StoreError>> {
		let path = self.dir.join(LOG_FILE);
		if self.broken {
			return receipts.iter().map(|_| Err(StoreError::Unavailable { path: path.clone() })).collect();
		}
		let mut outcomes = Vec::with_capacity(receipts.len());
		let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
		let mut bytes = Vec::new();
		let mut valid = Vec::new();
		for receipt in receipts {
			let (session_id, sequence) = (receipt.receipt.session_id, receipt.receipt.sequence);
			let stored = newest
				.get(&session_id)
				.copied()
				.or_else(|| self.sessions.get(&session_id).map(|s| s.latest.receipt.sequence));
			if let Some(stored) = stored.filter(|s| sequence <= *s) {
				outcomes.push(Err(StoreError::NotNewer { session_id, sequence, stored }));
				continue;
			}
			newest.insert(session_id, sequence);
			let record = Record::Receipt(Box::new(receipt));
			bytes.extend(frame(&record));
			valid.push((outcomes.len(), record));
			outcomes.push(Ok(()));
		}
		if valid.is_empty() {
			return outcomes;
		}
		if let Err(source) = self.file.write_all(&bytes).and_then(|()| self.file.sync_data()) {
			let rollback = self.file.set_len(self.len).and_then(|()| self.file.sync_data());
			if let Err(e) = rollback {
				tracing::error!(path = %path.display(), error = %e, "cannot roll back a failed write; refusing writes");
				self.broken = true;
			}
			let kind = source.kind();
			for (i, _) in &valid {
				outcomes[*i] =
					Err(StoreError::Io { path: path.clone(), source: io::Error::new(kind, source.to_string()) });
			}
			return outcomes;
		}
		self.len += bytes.len() as u64;
		for (_, record) in valid {
			self.apply(record);
			self.records += 1;
		}
		outcomes
	}

	/// Records that the chain settled `session_id` up to `sequence`.
	pub fn mark_settled(&mut self, session_id: u64, sequence: u64) -> Result<(), StoreError> {
		if self.sessions.get(&session_id).is_some_and(|s| s.settled_sequence >= sequence) {
			return Ok(());
		}
		self.append(Record::Settled { session_id, sequence })
	}

	/// Records what the agent served `session_id` so far, if more than recorded. Not synced by
	/// itself (the next receipt's sync covers it): a crash loses at most the counts since, which
	/// the credit limit bounds.
	pub fn record_served(&mut self, session_id: u64, served: crate::ledger::Served) -> Result<(), StoreError> {
		let known = self.served.get(&session_id).copied().unwrap_or_default();
		if served.bytes <= known.bytes && served.seconds <= known.seconds {
			return Ok(());
		}
		self.append_with(Record::Served { session_id, bytes: served.bytes, seconds: served.seconds }, false)
	}

	/// What the agent served `session_id` so far, as recorded.
	pub fn served(&self, session_id: u64) -> crate::ledger::Served {
		self.served.get(&session_id).copied().unwrap_or_default()
	}

	/// Forgets a session that was finalized on-chain.
	pub fn forget(&mut self, session_id: u64) -> Result<(), StoreError> {
		if !self.sessions.contains_key(&session_id) && !self.served.contains_key(&session_id) {
			return Ok(());
		}
		self.append(Record::Forgotten { session_id })
	}

	/// What the store knows about `session_id`.
	pub fn session(&self, session_id: u64) -> Option<&SessionReceipts> {
		self.sessions.get(&session_id)
	}

	/// Every session the store knows, by id.
	pub fn sessions(&self) -> impl Iterator<Item = &SessionReceipts> {
		self.sessions.values()
	}

	/// The newest receipt of every session whose newest receipt is not settled yet, by
	/// session id: what the settlement loop submits.
	pub fn unsettled(&self) -> Vec<SignedUsageReceipt> {
		self.sessions
			.values()
			.filter(|s| s.latest.receipt.sequence > s.settled_sequence)
			.map(|s| s.latest.clone())
			.collect()
	}

	/// Number of records in the log (compaction shrinks it to one or two per session).
	pub fn records(&self) -> u64 {
		self.records
	}

	/// Rewrites the log with only the current state (see the module documentation).
	pub fn compact(&mut self) -> Result<(), StoreError> {
		let tmp = self.dir.join(COMPACT_FILE);
		let log = self.dir.join(LOG_FILE);
		let io_err = |path: &Path| {
			let path = path.to_path_buf();
			move |source| StoreError::Io { path: path.clone(), source }
		};
		let mut bytes = Vec::new();
		let mut records = 0;
		for s in self.sessions.values() {
			bytes.extend(frame(&Record::Receipt(Box::new(s.latest.clone()))));
			records += 1;
			if s.settled_sequence > 0 {
				bytes.extend(frame(&Record::Settled {
					session_id: s.latest.receipt.session_id,
					sequence: s.settled_sequence,
				}));
				records += 1;
			}
		}
		for (session_id, served) in &self.served {
			bytes.extend(frame(&Record::Served {
				session_id: *session_id,
				bytes: served.bytes,
				seconds: served.seconds,
			}));
			records += 1;
		}
		let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
		out.write_all(&bytes).map_err(io_err(&tmp))?;
		out.sync_all().map_err(io_err(&tmp))?;
		drop(out);
		std::fs::rename(&tmp, &log).map_err(io_err(&log))?;
		sync_dir(&self.dir).map_err(io_err(&self.dir))?;
		self.file = OpenOptions::new().read(true).append(true).open(&log).map_err(io_err(&log))?;
		self.records = records;
		self.len = bytes.len() as u64;
		self.broken = false;
		Ok(())
	}
}
