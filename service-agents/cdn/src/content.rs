//! The content-addressed object cache on disk.
//!
//! **Layout** (in the cache directory): `objects/<hash>` holds an object's bytes and
//! `objects/<hash>.obao` its BLAKE3 verified-streaming outboard tree (bao); `tmp/` holds
//! objects being written. `<hash>` is the 64-hex-digit BLAKE3 hash of the content.
//!
//! **Never a partial object**: an object is written into `tmp/`, hashed while written,
//! compared with the expected hash, `fsync`ed, then renamed into `objects/` (outboard first,
//! content last, and the directory synced). An object exists exactly when `objects/<hash>` and
//! its outboard do; leftovers of a crash (`tmp/*`, an outboard without its content) are
//! deleted on open. Content that does not hash to the name asked for is never stored.
//!
//! **Size bound**: the total size of objects and outboards stays within `max_bytes`; adding
//! an object evicts the least recently used ones first (access order is kept in memory and
//! starts, after a restart, from the files' modification times). An object larger than the
//! bound is refused.

use std::{
	collections::{BTreeMap, HashMap},
	fs::{self, File},
	io::{self, Read, Seek, SeekFrom, Write},
	path::{Path, PathBuf},
	sync::atomic::{AtomicU64, Ordering},
};

/// A BLAKE3 hash naming an object.
pub type ContentHash = blake3::Hash;

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
	/// A file operation failed.
	#[error("content cache {path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// The error.
		source: io::Error,
	},
	/// The bytes do not hash to the name they were offered under.
	#[error("content hashes to {actual}, not the expected {expected}")]
	HashMismatch {
		/// What was asked for.
		expected: ContentHash,
		/// What the bytes hash to.
		actual: ContentHash,
	},
	/// The object is larger than the whole cache.
	#[error("object of {size} bytes exceeds the cache bound of {max} bytes")]
	TooLarge {
		/// The object's size with its outboard.
		size: u64,
		/// The bound.
		max: u64,
	},
	/// Reading the source failed.
	#[error("reading the content failed: {0}")]
	Source(io::Error),
}

/// An object in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
	/// Its hash.
	pub hash: ContentHash,
	/// Content length in bytes.
	pub size: u64,
	/// The content file.
	pub path: PathBuf,
	/// The bao outboard file.
	pub outboard: PathBuf,
}

struct Entry {
	size: u64,
	stored: u64,
	last_use: u64,
}

/// The cache. Not internally synchronised: wrap it in a mutex; file reads happen outside.
pub struct ContentStore {
	dir: PathBuf,
	max_bytes: u64,
	entries: HashMap<ContentHash, Entry>,
	by_use: BTreeMap<u64, ContentHash>,
	total: u64,
	/// Bytes reserved for objects being staged (origin fills, uploads): they count against
	/// the bound like cached objects.
	staging: u64,
	clock: AtomicU64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
	move |source| ContentError::Io { path: path.to_path_buf(), source }
}

/// Parses a 64-hex-digit BLAKE3 hash.
pub fn parse_hash(s: &str) -> Option<ContentHash> {
	if s.len() != 64 {
		return None;
	}
	ContentHash::from_hex(s).ok()
}

impl ContentStore {
	/// Opens (or creates) the cache in `dir` bounded to `max_bytes`; cleans up after a crash
	/// and evicts down to the bound if it shrank.
	pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, ContentError> {
		let objects = dir.join("objects");
		let tmp = dir.join("tmp");
		fs::create_dir_all(&objects).map_err(io_err(&objects))?;
		if tmp.exists() {
			fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
		}
		fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
		let mut found = Vec::new();
		for entry in fs::read_dir(&objects).map_err(io_err(&objects))? {
			let entry = entry.map_err(io_err(&objects))?;
			let name = entry.file_name().to_string_lossy().into_owned();
			let path = entry.path();
			let Some(hash) = name.strip_suffix(".obao").or(Some(name.as_str())).and_then(parse_hash) else {
				tracing::warn!(file = %path.display(), "not a cache file; removing it");
				fs::remove_file(&path).map_err(io_err(&path))?;
				continue;
			};
			if name.ends_with(".obao") {
				if !objects.join(hash.to_hex().as_str()).exists() {
					fs::remove_file(&path).map_err(io_err(&path))?;
				}
				continue;
			}
			let outboard = objects.join(format!("{name}.obao"));
			let meta = entry.metadata().map_err(io_err(&path))?;
			let Ok(ob_meta) = fs::metadata(&outboard) else {
				tracing::warn!(file = %path.display(), "object without outboard; removing it");
				fs::remove_file(&path).map_err(io_err(&path))?;
				continue;
			};
			let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
			found.push((mtime.map(|d| d.as_nanos()).unwrap_or(0), hash, meta.len(), meta.len() + ob_meta.len()));
		}
		found.sort_by_key(|(mtime, hash, _, _)| (*mtime, *hash.as_bytes()));
		let mut store = ContentStore {
			dir: dir.to_path_buf(),
			max_bytes,
			entries: HashMap::new(),
			by_use: BTreeMap::new(),
			total: 0,
			staging: 0,
			clock: AtomicU64::new(0),
		};
		for (_, hash, size, stored) in found {
			let tick = store.tick();
			store.entries.insert(hash, Entry { size, stored, last_use: tick });
			store.by_use.insert(tick, hash);
			store.total += stored;
		}
		store.evict_to(max_bytes)?;
		Ok(store)
	}

	fn tick(&self) -> u64 {
		self.clock.fetch_add(1, Ordering::Relaxed)
	}

	fn paths(&self, hash: &ContentHash) -> (PathBuf, PathBuf) {
		let objects = self.dir.join("objects");
		let hex = hash.to_hex();
		(objects.join(hex.as_str()), objects.join(format!("{hex}.obao")))
	}

	/// The object named `hash`, if cached; counts as a use.
	pub fn get(&mut self, hash: &ContentHash) -> Option<Object> {
		let tick = self.tick();
		let entry = self.entries.get_mut(hash)?;
		self.by_use.remove(&entry.last_use);
		entry.last_use = tick;
		self.by_use.insert(tick, *hash);
		let size = entry.size;
		let (path, outboard) = self.paths(hash);
		Some(Object { hash: *hash, size, path, outboard })
	}

	/// Whether `hash` is cached (not a use).
	pub fn contains(&self, hash: &ContentHash) -> bool {
		self.entries.contains_key(hash)
	}

	/// Number of objects and bytes used (content plus outboards).
	pub fn usage(&self) -> (usize, u64) {
		(self.entries.len(), self.total)
	}

	/// The bound.
	pub fn max_bytes(&self) -> u64 {
		self.max_bytes
	}

	/// Reserves `bytes` of the bound for an object being staged, evicting cached objects to
	/// make room; `None` if the bound is taken by other stagings already. Give it back with
	/// [`ContentStore::end_staging`].
	pub fn begin_staging(&mut self, bytes: u64) -> Result<Option<u64>, ContentError> {
		if self.staging.saturating_add(bytes) > self.max_bytes {
			return Ok(None);
		}
		self.staging += bytes;
		self.evict_to(self.max_bytes - self.staging)?;
		Ok(Some(bytes))
	}

	/// Gives back a reservation of [`ContentStore::begin_staging`].
	pub fn end_staging(&mut self, bytes: u64) {
		self.staging = self.staging.saturating_sub(bytes);
	}

	/// Bytes reserved for stagings now.
	pub fn staging(&self) -> u64 {
		self.staging
	}

	/// The directory where [`ContentStore::stage`] writes.
	pub fn tmp_dir(&self) -> PathBuf {
		self.dir.join("tmp")
	}

	/// Adds a staged object (see [`stage`]) whose hash was checked: evicts as needed, moves
	/// it into place. Returns the object.
	pub fn commit(&mut self, staged: Staged) -> Result<Object, ContentError> {
		let stored = staged.size + staged.outboard_size;
		if stored > self.max_bytes {
			staged.discard();
			return Err(ContentError::TooLarge { size: stored, max: self.max_bytes });
		}
		if self.entries.contains_key(&staged.hash) {
			let hash = staged.hash;
			staged.discard();
			return Ok(self.get(&hash).expect("checked above"));
		}
		// Room for it (its staging reservation, if any, is given back by the caller after).
		self.evict_to(self.max_bytes.saturating_sub(stored).saturating_sub(self.staging.saturating_sub(stored)))?;
		let (path, outboard) = self.paths(&staged.hash);
		fs::rename(&staged.outboard_path, &outboard).map_err(io_err(&outboard))?;
		fs::rename(&staged.content_path, &path).map_err(io_err(&path))?;
		let objects = self.dir.join("objects");
		File::open(&objects).and_then(|d| d.sync_all()).map_err(io_err(&objects))?;
		let tick = self.tick();
		self.entries.insert(staged.hash, Entry { size: staged.size, stored, last_use: tick });
		self.by_use.insert(tick, staged.hash);
		self.total += stored;
		tracing::info!(hash = %staged.hash, size = staged.size, "object cached");
		Ok(Object { hash: staged.hash, size: staged.size, path, outboard })
	}

	fn evict_to(&mut self, bound: u64) -> Result<(), ContentError> {
		while self.total > bound {
			let Some((&tick, &hash)) = self.by_use.iter().next() else { break };
			self.by_use.remove(&tick);
			let entry = self.entries.remove(&hash).expect("indexes agree");
			self.total -= entry.stored;
			let (path, outboard) = self.paths(&hash);
			// Content first: an outboard alone is cleaned up on open, content alone would not be.
			fs::remove_file(&path).map_err(io_err(&path))?;
			fs::remove_file(&outboard).map_err(io_err(&outboard))?;
			tracing::info!(%hash, size = entry.size, "object evicted");
		}
		Ok(())
	}
}

/// An object written to the cache's `tmp/` directory and hashed, not yet in the cache.
#[derive(Debug)]
pub struct Staged {
	/// The content's hash.
	pub hash: ContentHash,
	/// Content length.
	pub size: u64,
	outboard_size: u64,
	content_path: PathBuf,
	outboard_path: PathBuf,
}

impl Staged {
	/// Deletes the staged files.
	pub fn discard(self) {
		let _ = fs::remove_file(&self.content_path);
		let _ = fs::remove_file(&self.outboard_path);
	}
}

/// Writes everything `source` yields into `tmp_dir`, computing its BLAKE3 hash and bao
/// outboard on the way; if `expected` is given and differs, deletes it and fails with
/// [`ContentError::HashMismatch`]. Blocking: run it off the async executor. `limit` bounds the
/// bytes read (a source yielding more fails).
pub fn stage(
	tmp_dir: &Path,
	mut source: impl Read,
	expected: Option<ContentHash>,
	limit: u64,
) -> Result<Staged, ContentError> {
	static COUNTER: AtomicU64 = AtomicU64::new(0);
	let n = COUNTER.fetch_add(1, Ordering::Relaxed);
	let stem = format!("{}-{n}", std::process::id());
	let content_path = tmp_dir.join(format!("{stem}.data"));
	let outboard_path = tmp_dir.join(format!("{stem}.obao"));
	let result = (|| {
		let mut content = File::create(&content_path).map_err(io_err(&content_path))?;
		let outboard = File::options()
			.read(true)
			.write(true)
			.create(true)
			.truncate(true)
			.open(&outboard_path)
			.map_err(io_err(&outboard_path))?;
		let mut encoder = bao::encode::Encoder::new_outboard(outboard);
		let mut buf = vec![0u8; 256 * 1024];
		let mut size = 0u64;
		loop {
			let n = match source.read(&mut buf) {
				Ok(0) => break,
				Ok(n) => n,
				Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
				Err(e) => return Err(ContentError::Source(e)),
			};
			size += n as u64;
			if size > limit {
				return Err(ContentError::TooLarge { size, max: limit });
			}
			content.write_all(&buf[..n]).map_err(io_err(&content_path))?;
			encoder.write_all(&buf[..n]).map_err(io_err(&outboard_path))?;
		}
		let hash = encoder.finalize().map_err(io_err(&outboard_path))?;
		if let Some(expected) = expected {
			if expected != hash {
				return Err(ContentError::HashMismatch { expected, actual: hash });
			}
		}
		let mut outboard = encoder.into_inner();
		let outboard_size = outboard.seek(SeekFrom::End(0)).map_err(io_err(&outboard_path))?;
		outboard.sync_all().map_err(io_err(&outboard_path))?;
		content.sync_all().map_err(io_err(&content_path))?;
		Ok((hash, size, outboard_size))
	})();
	match result {
		Ok((hash, size, outboard_size)) => Ok(Staged { hash, size, outboard_size, content_path, outboard_path }),
		Err(e) => {
			let _ = fs::remove_file(&content_path);
			let _ = fs::remove_file(&outboard_path);
			Err(e)
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn put(store: &mut ContentStore, bytes: &[u8]) -> Object {
		let staged = stage(&store.tmp_dir(), bytes, None, u64::MAX).unwrap();
		store.commit(staged).unwrap()
	}

	#[test]
	fn objects_are_stored_under_their_hash_with_a_verifying_outboard() {
		let dir = tempfile::tempdir().unwrap();
		let mut store = ContentStore::open(dir.path(), 1 << 30).unwrap();
		let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
		let object = put(&mut store, &data);
		assert_eq!(object.hash, blake3::hash(&data));
		assert_eq!(fs::read(&object.path).unwrap(), data);
		// The outboard verifies the content with bao.
		let outboard = fs::read(&object.outboard).unwrap();
		let mut decoder = bao::decode::Decoder::new_outboard(&data[..], &outboard[..], &object.hash);
		let mut out = Vec::new();
		decoder.read_to_end(&mut out).unwrap();
		assert_eq!(out, data);
		// Reopening finds it.
		drop(store);
		let mut store = ContentStore::open(dir.path(), 1 << 30).unwrap();
		assert_eq!(store.get(&object.hash), Some(object));
	}

	#[test]
	fn wrong_content_is_never_stored() {
		let dir = tempfile::tempdir().unwrap();
		let store = ContentStore::open(dir.path(), 1 << 30).unwrap();
		let expected = blake3::hash(b"the real thing");
		let err = stage(&store.tmp_dir(), &b"a forgery"[..], Some(expected), u64::MAX).unwrap_err();
		assert!(matches!(err, ContentError::HashMismatch { .. }));
		assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0, "nothing left behind");
		assert!(!store.contains(&expected));
		let err = stage(&store.tmp_dir(), &[0u8; 100][..], None, 99).unwrap_err();
		assert!(matches!(err, ContentError::TooLarge { .. }));
	}

	#[test]
	fn the_bound_evicts_least_recently_used_and_survives_restarts() {
		let dir = tempfile::tempdir().unwrap();
		let object = |i: u8| vec![i; 10_000];
		// Each object takes 10,000 bytes plus a 584-byte outboard.
		let mut store = ContentStore::open(dir.path(), 32_000).unwrap();
		let a = put(&mut store, &object(1));
		let b = put(&mut store, &object(2));
		let c = put(&mut store, &object(3));
		assert_eq!(store.usage().0, 3);
		store.get(&a.hash); // a is now more recent than b
		let d = put(&mut store, &object(4));
		assert!(
			store.contains(&a.hash) && !store.contains(&b.hash) && store.contains(&c.hash) && store.contains(&d.hash)
		);
		assert!(!b.path.exists() && !b.outboard.exists());
		assert!(store.usage().1 <= 32_000);
		// Too large for the whole cache.
		let staged = stage(&store.tmp_dir(), &vec![9u8; 40_000][..], None, u64::MAX).unwrap();
		assert!(matches!(store.commit(staged), Err(ContentError::TooLarge { .. })));
		// A crash left a temp file and a lone outboard: both are cleaned up on open, and a
		// smaller bound evicts on open.
		fs::write(store.tmp_dir().join("junk.data"), b"half").unwrap();
		fs::write(dir.path().join("objects").join(format!("{}.obao", blake3::hash(b"x").to_hex())), b"o").unwrap();
		drop(store);
		let store = ContentStore::open(dir.path(), 22_000).unwrap();
		assert_eq!(store.usage().0, 2);
		assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
		assert_eq!(fs::read_dir(dir.path().join("objects")).unwrap().count(), 4);
	}
}
