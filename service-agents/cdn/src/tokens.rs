//! Bearer tokens for paid requests: a client proves its session's key once, with a
//! [`Capability`] signed by that key (bound to this provider, fresh, short-lived), and gets a
//! random token to send with its requests. A session id alone, public on-chain, buys nothing;
//! a capability is accepted once, so replaying one buys nothing either. State without I/O:
//! the caller verifies the signature (an ML-DSA-65 verification, off the async threads) and
//! passes the time in.

use std::collections::HashMap;

use crate::protocol::{Capability, MAX_CAPABILITY_SECS};

/// Tokens one session may hold at once (the oldest is dropped beyond).
pub const MAX_TOKENS_PER_SESSION: usize = 8;

/// Why a capability buys no token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
	/// Names another provider.
	#[error("the capability is for another provider")]
	WrongProvider,
	/// Expired, or valid for longer than allowed.
	#[error("the capability has expired or lives longer than {MAX_CAPABILITY_SECS} s")]
	Expiry,
	/// Its nonce was used before.
	#[error("the capability was used already")]
	Replayed,
}

struct Grant {
	session_id: u64,
	expires_at: u64,
}

/// The tokens an agent granted, and the capability nonces it has seen.
pub struct Tokens {
	provider: [u8; 32],
	grants: HashMap<[u8; 32], Grant>,
	by_session: HashMap<u64, Vec<[u8; 32]>>,
	used_nonces: HashMap<[u8; 32], u64>,
}

impl Tokens {
	/// Tokens of `provider` (its account id's 32 bytes).
	pub fn new(provider: [u8; 32]) -> Self {
		Tokens { provider, grants: HashMap::new(), by_session: HashMap::new(), used_nonces: HashMap::new() }
	}

	/// Checks everything about `capability` but its signature, at unix time `now`.
	pub fn check(&self, capability: &Capability, now: u64) -> Result<(), CapabilityError> {
		if capability.provider != self.provider {
			return Err(CapabilityError::WrongProvider);
		}
		if capability.expires_at <= now || capability.expires_at > now + MAX_CAPABILITY_SECS {
			return Err(CapabilityError::Expiry);
		}
		if self.used_nonces.contains_key(&capability.nonce) {
			return Err(CapabilityError::Replayed);
		}
		Ok(())
	}

	/// Grants `token` for a capability whose signature verified (checks it again: the
	/// verification ran without the lock).
	pub fn grant(&mut self, capability: &Capability, token: [u8; 32], now: u64) -> Result<(), CapabilityError> {
		self.check(capability, now)?;
		self.prune(now);
		self.used_nonces.insert(capability.nonce, capability.expires_at);
		self.grants.insert(token, Grant { session_id: capability.session_id, expires_at: capability.expires_at });
		let list = self.by_session.entry(capability.session_id).or_default();
		list.push(token);
		if list.len() > MAX_TOKENS_PER_SESSION {
			let old = list.remove(0);
			self.grants.remove(&old);
		}
		Ok(())
	}

	/// The session a token pays from, if it is valid at `now`.
	pub fn session(&self, token: &[u8; 32], now: u64) -> Option<u64> {
		self.grants.get(token).filter(|g| g.expires_at > now).map(|g| g.session_id)
	}

	/// Forgets expired tokens and nonces.
	pub fn prune(&mut self, now: u64) {
		self.used_nonces.retain(|_, expires| *expires > now);
		self.grants.retain(|_, g| g.expires_at > now);
		let grants = &self.grants;
		self.by_session.retain(|_, list| {
			list.retain(|t| grants.contains_key(t));
			!list.is_empty()
		});
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn capability(nonce: u8, expires_at: u64) -> Capability {
		Capability { provider: [1; 32], session_id: 7, nonce: [nonce; 32], expires_at }
	}

	#[test]
	fn a_capability_buys_one_token_once() {
		let mut tokens = Tokens::new([1; 32]);
		let c = capability(1, 1_100);
		tokens.grant(&c, [9; 32], 1_000).unwrap();
		assert_eq!(tokens.session(&[9; 32], 1_050), Some(7));
		assert_eq!(tokens.session(&[9; 32], 1_100), None, "expired with its capability");
		assert_eq!(tokens.session(&[8; 32], 1_050), None, "an unknown token");
		assert_eq!(tokens.grant(&c, [10; 32], 1_001), Err(CapabilityError::Replayed));
	}

	#[test]
	fn wrong_provider_and_bad_expiries_are_refused() {
		let tokens = Tokens::new([1; 32]);
		let other = Capability { provider: [2; 32], ..capability(1, 1_100) };
		assert_eq!(tokens.check(&other, 1_000), Err(CapabilityError::WrongProvider));
		assert_eq!(tokens.check(&capability(1, 1_000), 1_000), Err(CapabilityError::Expiry));
		assert_eq!(tokens.check(&capability(1, 1_000 + MAX_CAPABILITY_SECS + 1), 1_000), Err(CapabilityError::Expiry));
	}

	#[test]
	fn a_session_holds_a_bounded_number_of_tokens() {
		let mut tokens = Tokens::new([1; 32]);
		for i in 0..(MAX_TOKENS_PER_SESSION as u8 + 2) {
			tokens.grant(&capability(i, 2_000), [i; 32], 1_000).unwrap();
		}
		assert_eq!(tokens.session(&[0; 32], 1_000), None, "the oldest was dropped");
		assert_eq!(tokens.session(&[MAX_TOKENS_PER_SESSION as u8 + 1; 32], 1_000), Some(7));
	}
}
