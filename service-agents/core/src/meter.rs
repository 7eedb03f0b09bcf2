//! Metering one session and checking the client's receipts: a state machine without I/O.
//!
//! The agent feeds it the bytes it serves ([`Meter::add_served`]) and asks before serving
//! more ([`Meter::may_serve`]). A receipt the client sends is checked with
//! [`Meter::check_receipt`] (the same rules the chain applies when it settles, plus "the
//! amount is exactly what the usage costs"), then persisted by the caller, and only then
//! applied with [`Meter::accept`] and acknowledged.
//!
//! **Credit**: the agent serves on credit up to `credit_limit_bytes` beyond the bytes the
//! client has signed for, and never beyond what the session's deposit can pay.

use interlattice_pq_crypto::{MlDsaPublicKey, SignedUsageReceipt, UsageReceipt};
use pallet_provider_registry::Prices;
use pallet_session_escrow::types::max_amount_owed;

/// What a session's on-chain record fixes for the agent: who signs, at what prices, how
/// much is deposited and what was settled already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTerms {
	/// The session.
	pub session_id: u64,
	/// Genesis hash of the chain the session lives on.
	pub genesis_hash: [u8; 32],
	/// The provider's account id, as receipts name it.
	pub provider: [u8; 32],
	/// The session's nonce, as receipts name it.
	pub nonce: [u8; 32],
	/// The key that signs the session's receipts.
	pub client_key: MlDsaPublicKey,
	/// Prices fixed for the session.
	pub prices: Prices<u128>,
	/// Total deposited.
	pub deposit: u128,
	/// The last receipt the chain settled (sequence 0: none).
	pub settled: UsageReceipt,
}

/// Why a receipt is refused. Nothing changes when a receipt is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
	/// Signed for another chain.
	#[error("the receipt is for chain 0x{}, this session lives on 0x{}", hex::encode(.got), hex::encode(.expected))]
	WrongChain {
		/// This chain's genesis hash.
		expected: [u8; 32],
		/// The receipt's.
		got: [u8; 32],
	},
	/// Signed for another session.
	#[error("the receipt is for session {got}, not {expected}")]
	WrongSession {
		/// This session.
		expected: u64,
		/// The receipt's.
		got: u64,
	},
	/// Names another provider or another opening of the session (its nonce).
	#[error("the receipt names another provider or another opening of session {0}")]
	WrongBinding(u64),
	/// Not newer than the latest receipt accepted or settled.
	#[error("receipt sequence {got} is not above the latest {latest}")]
	NotNewer {
		/// The latest sequence.
		latest: u64,
		/// The receipt's.
		got: u64,
	},
	/// Cumulative bytes or seconds below the latest receipt's.
	#[error("cumulative usage went down: {got_bytes} bytes/{got_seconds} s after {bytes} bytes/{seconds} s")]
	UsageDecreased {
		/// The latest receipt's bytes.
		bytes: u64,
		/// The latest receipt's seconds.
		seconds: u64,
		/// The receipt's bytes.
		got_bytes: u64,
		/// The receipt's seconds.
		got_seconds: u64,
	},
	/// Fewer seconds than the session has been served (time-priced services).
	#[error("the receipt counts {got} s of service, at least {required} s were served")]
	TimeUnderstated {
		/// The least acceptable seconds.
		required: u64,
		/// The receipt's.
		got: u64,
	},
	/// The amount is not what the receipt's usage costs at the session's prices.
	#[error("the receipt's amount is {got}, its usage costs exactly {expected}")]
	WrongAmount {
		/// What the usage costs.
		expected: u128,
		/// The receipt's.
		got: u128,
	},
	/// The amount is more than the deposit: the client must top up first.
	#[error("the receipt's amount {amount} exceeds the session's deposit {deposit}; top up the deposit")]
	ExceedsDeposit {
		/// The receipt's amount.
		amount: u128,
		/// The deposit.
		deposit: u128,
	},
	/// The usage's cost does not fit in 128 bits.
	#[error("the receipt's usage costs more than any balance")]
	Overflow,
	/// The ML-DSA-65 signature does not verify under the session's client key.
	#[error("the receipt's signature does not verify under the session's client key")]
	BadSignature,
	/// The session's settlement window is (about to be) over: the receipt could not settle.
	#[error("the session's receipts settle only until block {settle_until}: too late for this one")]
	TooLate {
		/// Last block in which the session's receipts settle.
		settle_until: u64,
	},
}

/// The answer to "may I serve more?" when the answer is no: what is owed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequired {
	/// The session.
	pub session_id: u64,
	/// Bytes served so far.
	pub served_bytes: u64,
	/// Bytes covered by the latest receipt.
	pub paid_bytes: u64,
	/// The amount a receipt for all served bytes (and the latest receipt's seconds) must
	/// carry.
	pub amount_due: u128,
	/// Whether the deposit cannot pay for more: the client must top up, not just sign.
	pub deposit_exhausted: bool,
}

/// One session's meter.
#[derive(Clone, Debug)]
pub struct Meter {
	terms: SessionTerms,
	credit_limit_bytes: u64,
	served_bytes: u64,
	latest: UsageReceipt,
}

impl Meter {
	/// A meter for a session with `terms`, serving up to `credit_limit_bytes` unpaid.
	/// `latest` is the newest receipt the agent holds for the session (from its store), if
	/// any; bytes served before a restart that were not signed for are not counted again.
	pub fn new(terms: SessionTerms, credit_limit_bytes: u64, latest: Option<UsageReceipt>) -> Self {
		let latest = match latest {
			Some(r) if r.sequence > terms.settled.sequence => r,
			_ => terms.settled,
		};
		Meter { served_bytes: latest.bytes, terms, credit_limit_bytes, latest }
	}

	/// The session's terms.
	pub fn terms(&self) -> &SessionTerms {
		&self.terms
	}

	/// Replaces the terms with a fresher on-chain view (a top-up, a settlement).
	pub fn update_terms(&mut self, terms: SessionTerms) {
		if terms.settled.sequence > self.latest.sequence {
			self.latest = terms.settled;
			self.served_bytes = self.served_bytes.max(self.latest.bytes);
		}
		self.terms = terms;
	}

	/// Unpaid bytes served before the client must pay.
	pub fn credit_limit_bytes(&self) -> u64 {
		self.credit_limit_bytes
	}

	/// The newest receipt accepted (or settled): what the client has paid for.
	pub fn latest(&self) -> &UsageReceipt {
		&self.latest
	}

	/// Bytes served so far in this session.
	pub fn served_bytes(&self) -> u64 {
		self.served_bytes
	}

	/// Bytes served but not yet signed for.
	pub fn unpaid_bytes(&self) -> u64 {
		self.served_bytes.saturating_sub(self.latest.bytes)
	}

	/// Counts `n` more bytes served.
	pub fn add_served(&mut self, n: u64) {
		self.served_bytes = self.served_bytes.saturating_add(n);
	}

	/// The most bytes the deposit can pay for, given the latest receipt's seconds.
	pub fn affordable_bytes(&self) -> u64 {
		affordable_bytes(&self.terms, self.latest.seconds)
	}

	/// How many more bytes may be served now (0: the client must pay first).
	pub fn allowance(&self) -> u64 {
		let credit_end = self.latest.bytes.saturating_add(self.credit_limit_bytes);
		credit_end.min(self.affordable_bytes()).saturating_sub(self.served_bytes)
	}

	/// `Ok` if more may be served now, else what must be paid first.
	pub fn may_serve(&self) -> Result<u64, PaymentRequired> {
		match self.allowance() {
			0 => Err(self.payment_required()),
			n => Ok(n),
		}
	}

	/// What is owed for everything served so far.
	pub fn payment_required(&self) -> PaymentRequired {
		let affordable = self.affordable_bytes();
		PaymentRequired {
			session_id: self.terms.session_id,
			served_bytes: self.served_bytes,
			paid_bytes: self.latest.bytes,
			amount_due: max_amount_owed(&self.terms.prices, self.served_bytes, self.latest.seconds)
				.unwrap_or(u128::MAX),
			deposit_exhausted: self.served_bytes >= affordable,
		}
	}

	/// Checks `signed` against the session: chain, session, newer, usage not decreasing, at
	/// least `min_seconds` of time, the amount exactly the cost of its usage, within the
	/// deposit, and the signature. Changes nothing.
	pub fn check_receipt(&self, signed: &SignedUsageReceipt, min_seconds: u64) -> Result<(), ReceiptError> {
		check_receipt(&self.terms, &self.latest, signed, min_seconds)
	}

	/// Applies a receipt that passed [`Meter::check_receipt`] and was persisted.
	pub fn accept(&mut self, receipt: UsageReceipt) {
		debug_assert!(receipt.sequence > self.latest.sequence);
		self.latest = receipt;
	}
}

/// The most bytes `terms`' deposit can pay for at `seconds` of time: cost is monotonic in
/// bytes, so a binary search finds the largest affordable count.
pub fn affordable_bytes(terms: &SessionTerms, seconds: u64) -> u64 {
	let cost = |bytes| max_amount_owed(&terms.prices, bytes, seconds);
	if cost(u64::MAX).is_some_and(|c| c <= terms.deposit) {
		return u64::MAX;
	}
	if cost(0).is_none_or(|c| c > terms.deposit) {
		return 0;
	}
	let (mut lo, mut hi) = (0u64, u64::MAX);
	while lo < hi {
		let mid = lo + (hi - lo) / 2 + 1;
		if cost(mid).is_some_and(|c| c <= terms.deposit) {
			lo = mid;
		} else {
			hi = mid - 1;
		}
	}
	lo
}

/// Checks `signed` against a session with `terms` whose newest receipt is `latest`: chain,
/// session, provider and nonce, newer, usage not decreasing, at least `min_seconds` of time,
/// the amount exactly the cost of its usage, within the deposit, and the signature (last).
pub fn check_receipt(
	terms: &SessionTerms,
	latest: &UsageReceipt,
	signed: &SignedUsageReceipt,
	min_seconds: u64,
) -> Result<(), ReceiptError> {
	let r = &signed.receipt;
	let t = terms;
	if r.genesis_hash != t.genesis_hash {
		return Err(ReceiptError::WrongChain { expected: t.genesis_hash, got: r.genesis_hash });
	}
	if r.session_id != t.session_id {
		return Err(ReceiptError::WrongSession { expected: t.session_id, got: r.session_id });
	}
	if r.provider != t.provider || r.session_nonce != t.nonce {
		return Err(ReceiptError::WrongBinding(t.session_id));
	}
	if r.sequence <= latest.sequence {
		return Err(ReceiptError::NotNewer { latest: latest.sequence, got: r.sequence });
	}
	if r.bytes < latest.bytes || r.seconds < latest.seconds {
		return Err(ReceiptError::UsageDecreased {
			bytes: latest.bytes,
			seconds: latest.seconds,
			got_bytes: r.bytes,
			got_seconds: r.seconds,
		});
	}
	if r.seconds < min_seconds {
		return Err(ReceiptError::TimeUnderstated { required: min_seconds, got: r.seconds });
	}
	let cost = max_amount_owed(&t.prices, r.bytes, r.seconds).ok_or(ReceiptError::Overflow)?;
	if r.amount != cost {
		return Err(ReceiptError::WrongAmount { expected: cost, got: r.amount });
	}
	if r.amount > t.deposit {
		return Err(ReceiptError::ExceedsDeposit { amount: r.amount, deposit: t.deposit });
	}
	if !signed.verify(&t.client_key) {
		return Err(ReceiptError::BadSignature);
	}
	Ok(())
}

/// The receipt a client signs next for `terms`' session: cumulative `bytes` and `seconds`
/// at the session's prices, one sequence above `previous_sequence`.
pub fn next_receipt(terms: &SessionTerms, previous_sequence: u64, bytes: u64, seconds: u64) -> Option<UsageReceipt> {
	let prices = &terms.prices;
	Some(UsageReceipt {
		genesis_hash: terms.genesis_hash,
		provider: terms.provider,
		session_id: terms.session_id,
		session_nonce: terms.nonce,
		sequence: previous_sequence.checked_add(1)?,
		bytes,
		seconds,
		amount: max_amount_owed(prices, bytes, seconds)?,
	})
}

#[cfg(test)]
mod tests {
	use super::*;
	use interlattice_pq_crypto::keys::MlDsaKeyPair;
	use pallet_session_escrow::types::GIB;

	const GENESIS: [u8; 32] = [7; 32];
	const PROVIDER: [u8; 32] = [8; 32];
	const NONCE: [u8; 32] = [9; 32];

	fn terms(client: &MlDsaKeyPair, deposit: u128) -> SessionTerms {
		SessionTerms {
			session_id: 5,
			genesis_hash: GENESIS,
			provider: PROVIDER,
			nonce: NONCE,
			client_key: client.public().clone(),
			prices: Prices { per_gib: GIB, per_hour: 3600 },
			deposit,
			settled: UsageReceipt {
				genesis_hash: GENESIS,
				provider: PROVIDER,
				session_id: 5,
				session_nonce: NONCE,
				sequence: 0,
				bytes: 0,
				seconds: 0,
				amount: 0,
			},
		}
	}

	fn sign(client: &MlDsaKeyPair, r: UsageReceipt) -> SignedUsageReceipt {
		let signature = client.sign(&r.signing_payload()).unwrap();
		SignedUsageReceipt { receipt: r, signature }
	}

	#[test]
	fn serves_on_credit_then_requires_payment_then_resumes() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut meter = Meter::new(terms(&client, 1_000_000), 1000, None);
		assert_eq!(meter.may_serve(), Ok(1000));
		meter.add_served(600);
		assert_eq!(meter.allowance(), 400);
		meter.add_served(400);
		let owed = meter.may_serve().unwrap_err();
		assert_eq!((owed.served_bytes, owed.paid_bytes, owed.amount_due), (1000, 0, 1000));
		assert!(!owed.deposit_exhausted);

		let r = next_receipt(meter.terms(), 0, 1000, 0).unwrap();
		assert_eq!(r.amount, 1000, "1 unit per byte at GIB per GiB");
		let signed = sign(&client, r);
		meter.check_receipt(&signed, 0).unwrap();
		meter.accept(r);
		assert_eq!(meter.unpaid_bytes(), 0);
		assert_eq!(meter.may_serve(), Ok(1000));
	}

	#[test]
	fn the_deposit_bounds_what_is_served() {
		let client = MlDsaKeyPair::dev("charlie");
		let meter = Meter::new(terms(&client, 300), 1000, None);
		assert_eq!(meter.affordable_bytes(), 300);
		assert_eq!(meter.allowance(), 300);
		let mut m = meter.clone();
		m.add_served(300);
		assert!(m.may_serve().unwrap_err().deposit_exhausted);
		// Free service: everything is affordable.
		let mut free = terms(&client, 0);
		free.prices = Prices { per_gib: 0, per_hour: 0 };
		assert_eq!(Meter::new(free, 10, None).affordable_bytes(), u64::MAX);
	}

	#[test]
	fn bad_receipts_are_refused_and_change_nothing() {
		let client = MlDsaKeyPair::dev("charlie");
		let other = MlDsaKeyPair::dev("dave");
		let mut meter = Meter::new(terms(&client, 1_000_000), 1000, None);
		meter.add_served(500);
		let good = next_receipt(meter.terms(), 0, 500, 10).unwrap();
		let before = format!("{meter:?}");

		let mut r = good;
		r.genesis_hash = [8; 32];
		assert!(matches!(meter.check_receipt(&sign(&client, r), 0), Err(ReceiptError::WrongChain { .. })));
		let mut r = good;
		r.session_id = 6;
		assert!(matches!(meter.check_receipt(&sign(&client, r), 0), Err(ReceiptError::WrongSession { .. })));
		let mut r = good;
		r.provider = [1; 32];
		assert_eq!(meter.check_receipt(&sign(&client, r), 0), Err(ReceiptError::WrongBinding(5)));
		let mut r = good;
		r.session_nonce = [1; 32];
		assert_eq!(meter.check_receipt(&sign(&client, r), 0), Err(ReceiptError::WrongBinding(5)));
		let mut r = good;
		r.amount -= 1;
		assert_eq!(
			meter.check_receipt(&sign(&client, r), 0),
			Err(ReceiptError::WrongAmount { expected: 510, got: 509 })
		);
		assert_eq!(meter.check_receipt(&sign(&other, good), 0), Err(ReceiptError::BadSignature));
		assert_eq!(
			meter.check_receipt(&sign(&client, good), 11),
			Err(ReceiptError::TimeUnderstated { required: 11, got: 10 })
		);
		let big = next_receipt(meter.terms(), 0, 2_000_000, 0).unwrap();
		assert!(matches!(meter.check_receipt(&sign(&client, big), 0), Err(ReceiptError::ExceedsDeposit { .. })));
		assert_eq!(format!("{meter:?}"), before);

		meter.check_receipt(&sign(&client, good), 10).unwrap();
		meter.accept(good);
		// Replay and decrease.
		assert!(matches!(meter.check_receipt(&sign(&client, good), 0), Err(ReceiptError::NotNewer { .. })));
		let less = next_receipt(meter.terms(), 1, 400, 10).unwrap();
		assert!(matches!(meter.check_receipt(&sign(&client, less), 0), Err(ReceiptError::UsageDecreased { .. })));
	}

	#[test]
	fn a_restarted_meter_starts_from_the_stored_receipt() {
		let client = MlDsaKeyPair::dev("charlie");
		let stored = next_receipt(&terms(&client, 1_000_000), 3, 700, 0).unwrap();
		let meter = Meter::new(terms(&client, 1_000_000), 1000, Some(stored));
		assert_eq!((meter.latest().sequence, meter.served_bytes(), meter.allowance()), (4, 700, 1000));
		// A settled receipt newer than the stored one wins.
		let mut t = terms(&client, 1_000_000);
		t.settled = next_receipt(&t, 9, 900, 0).unwrap();
		let meter = Meter::new(t, 1000, Some(stored));
		assert_eq!(meter.latest().sequence, 10);
	}
}

/// Fuzzing of the receipt decoders and checks: any bytes decode to a receipt or an error
/// (SCALE and JSON), and a receipt the session's key did not sign is never accepted, whatever
/// its fields say.
#[cfg(test)]
mod fuzz {
	use super::*;
	use codec::Decode;
	use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaSignature};
	use pallet_session_escrow::types::GIB;
	use proptest::prelude::*;

	fn terms(key: &MlDsaKeyPair) -> SessionTerms {
		let settled = UsageReceipt {
			genesis_hash: [7; 32],
			provider: [8; 32],
			session_id: 5,
			session_nonce: [9; 32],
			sequence: 0,
			bytes: 0,
			seconds: 0,
			amount: 0,
		};
		SessionTerms {
			session_id: 5,
			genesis_hash: [7; 32],
			provider: [8; 32],
			nonce: [9; 32],
			client_key: key.public().clone(),
			prices: Prices { per_gib: GIB, per_hour: 3600 },
			deposit: u128::MAX,
			settled,
		}
	}

	proptest! {
		#![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

		#[test]
		fn any_bytes_decode_to_a_receipt_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..4_096)) {
			let _ = SignedUsageReceipt::decode(&mut &bytes[..]);
			let _ = serde_json::from_slice::<SignedUsageReceipt>(&bytes);
		}

		#[test]
		fn an_unsigned_receipt_is_never_accepted(
			sequence in any::<u64>(), bytes in any::<u64>(), seconds in any::<u64>(), amount in any::<u128>(),
			signature in proptest::collection::vec(any::<u8>(), 3309),
		) {
			let key = MlDsaKeyPair::from_seed([1; 32]);
			let terms = terms(&key);
			let receipt = UsageReceipt { sequence, bytes, seconds, amount, ..terms.settled };
			let signed = SignedUsageReceipt { receipt, signature: MlDsaSignature(signature.try_into().unwrap()) };
			prop_assert!(check_receipt(&terms, &terms.settled, &signed, 0).is_err());
		}
	}
}
