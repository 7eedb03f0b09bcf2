//! A client's session keys: a fresh ML-DSA-65 key for every session, so that sessions of one
//! user cannot be linked on-chain by their key, and a key that leaks signs for one session
//! only.
//!
//! Files in the client's state folder, each holding a seed (hex, mode 0600):
//! - `session-<id>.key`: the key of session `id`;
//! - `session-pending-<hash>.key`: a key made for a session being opened (`hash`: the first
//!   8 bytes of the key's `blake2_256`, hex). Once the opening is seen on-chain it is renamed
//!   to `session-<id>.key`; after a crash in between, [`SessionKeys::for_session`] finds it by
//!   the key the chain stored for the session.
//!
//! Older clients kept one key for every session in `session.key`; it is still used for the
//! sessions it opened.

use std::{
	fs,
	path::{Path, PathBuf},
};

use interlattice_pq_crypto::{
	keys::{KeyError, MlDsaKeyPair},
	MlDsaPublicKey,
};

/// A client's session keys, in its state folder.
#[derive(Clone, Debug)]
pub struct SessionKeys {
	dir: PathBuf,
}

/// A key made for a session being opened.
pub struct PendingKey {
	/// The key.
	pub key: MlDsaKeyPair,
	path: PathBuf,
}

impl std::fmt::Debug for PendingKey {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		write!(f, "PendingKey({})", self.path.display())
	}
}

/// Why a session key is not available.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
	/// Reading, writing or renaming a key file failed.
	#[error("session key in {dir}: {source}")]
	Key {
		/// The state folder.
		dir: String,
		/// What failed.
		source: KeyError,
	},
	/// The folder could not be read or written.
	#[error("session keys in {dir}: {source}")]
	Io {
		/// The state folder.
		dir: String,
		/// What failed.
		source: std::io::Error,
	},
	/// No key in the folder matches the session's on-chain key.
	#[error("no key in {dir} signs for session {session_id}: it was opened elsewhere or the key was lost")]
	Unknown {
		/// The state folder.
		dir: String,
		/// The session.
		session_id: u64,
	},
}

fn short_hash(key: &MlDsaPublicKey) -> String {
	hex::encode(&sp_crypto_hashing::blake2_256(key.as_ref())[..8])
}

impl SessionKeys {
	/// The keys in `dir` (created when the first key is written).
	pub fn new(dir: &Path) -> Self {
		SessionKeys { dir: dir.to_path_buf() }
	}

	fn io(&self, source: std::io::Error) -> SessionKeyError {
		SessionKeyError::Io { dir: self.dir.display().to_string(), source }
	}

	fn key_error(&self, source: KeyError) -> SessionKeyError {
		SessionKeyError::Key { dir: self.dir.display().to_string(), source }
	}

	fn session_path(&self, session_id: u64) -> PathBuf {
		self.dir.join(format!("session-{session_id}.key"))
	}

	/// A fresh key for a session about to be opened, on disk (fsynced) before it is used.
	pub fn fresh(&self) -> Result<PendingKey, SessionKeyError> {
		fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
		let key = MlDsaKeyPair::generate().map_err(|e| self.key_error(e))?;
		let path = self.dir.join(format!("session-pending-{}.key", short_hash(key.public())));
		key.write_seed_file(&path).map_err(|e| self.key_error(e))?;
		sync_dir(&self.dir).map_err(|e| self.io(e))?;
		Ok(PendingKey { key, path })
	}

	/// Names `pending` the key of `session_id` once the opening is on-chain.
	pub fn bind(&self, pending: PendingKey, session_id: u64) -> Result<MlDsaKeyPair, SessionKeyError> {
		fs::rename(&pending.path, self.session_path(session_id)).map_err(|e| self.io(e))?;
		sync_dir(&self.dir).map_err(|e| self.io(e))?;
		Ok(pending.key)
	}

	/// The key of `session_id`, whose on-chain key is `public`: its own file, a pending key
	/// left by a crash during the opening (then bound), or the old shared `session.key`.
	pub fn for_session(&self, session_id: u64, public: &MlDsaPublicKey) -> Result<MlDsaKeyPair, SessionKeyError> {
		let path = self.session_path(session_id);
		if path.exists() {
			let key = MlDsaKeyPair::read_seed_file(&path).map_err(|e| self.key_error(e))?;
			if key.public() == public {
				return Ok(key);
			}
		}
		let pending = self.dir.join(format!("session-pending-{}.key", short_hash(public)));
		if pending.exists() {
			let key = MlDsaKeyPair::read_seed_file(&pending).map_err(|e| self.key_error(e))?;
			if key.public() == public {
				return self.bind(PendingKey { key, path: pending }, session_id);
			}
		}
		let legacy = self.dir.join("session.key");
		if legacy.exists() {
			let key = MlDsaKeyPair::read_seed_file(&legacy).map_err(|e| self.key_error(e))?;
			if key.public() == public {
				return Ok(key);
			}
		}
		Err(SessionKeyError::Unknown { dir: self.dir.display().to_string(), session_id })
	}
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
	fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn every_session_gets_its_own_key_and_a_crash_during_opening_loses_none() {
		let dir = tempfile::tempdir().unwrap();
		let keys = SessionKeys::new(dir.path());
		let a = keys.fresh().unwrap();
		let b = keys.fresh().unwrap();
		assert_ne!(a.key.public(), b.key.public(), "a fresh key per session");
		let a_public = a.key.public().clone();
		let bound = keys.bind(a, 7).unwrap();
		assert_eq!(keys.for_session(7, &a_public).unwrap().public(), bound.public());
		// b's opening crashed before it was bound: found by its on-chain key.
		let b_public = b.key.public().clone();
		assert_eq!(keys.for_session(8, &b_public).unwrap().public(), &b_public);
		assert!(dir.path().join("session-8.key").exists());
		// Someone else's session: no key.
		let stranger = MlDsaKeyPair::generate().unwrap();
		assert!(matches!(keys.for_session(9, stranger.public()), Err(SessionKeyError::Unknown { .. })));
		// A file that holds another key is not used for the session.
		assert!(matches!(keys.for_session(7, &b_public), Err(SessionKeyError::Unknown { .. })));
	}
}
