//! One session's payment state at a provider's agent: a state machine without I/O, with time
//! as an input (`now`: a monotonic instant as a `Duration` since any fixed origin).
//!
//! The ledger belongs to the **session**, not to a connection: every connection of the
//! session (a reconnect, parallel HTTP requests) draws on the same credit, so "use the credit,
//! reconnect" earns nothing. Its served counts are persisted with the receipts
//! ([`crate::store`]) and a restarted agent resumes them, so a restart does not refill the
//! credit either.
//!
//! Rules, each a method below:
//! - **Credit**: serve at most `credit_limit_bytes` beyond the latest receipt's bytes, and
//!   never beyond what the deposit can pay ([`Ledger::allowance`]).
//! - **Reservations**: bytes are reserved before they are sent and the reservation is settled
//!   with what was really sent ([`Ledger::reserve`], [`Ledger::release`]): concurrent
//!   streams of one session can never overserve together.
//! - **Late receipts**: a time-priced session whose latest receipt's seconds lag the served
//!   seconds by more than `receipt_timeout` gets no more service until it pays
//!   ([`Ledger::is_late`]); one that made no payment progress for `payment_timeout` while
//!   owing is dropped ([`Ledger::is_stalled`]).
//! - **End of service**: a session that is closing or past its expiry gets no service; a
//!   receipt is accepted only while it can still settle on-chain ([`Ledger::service_ended`],
//!   [`Ledger::receipts_closed`]).
//! - **Refresh**: the on-chain view (deposit, settled amount, closing, expiry) is refreshed
//!   every `refresh_interval`, and at once when the credit runs out (a top-up may be waiting)
//!   ([`Ledger::needs_refresh`]).

use std::time::Duration;

use interlattice_pq_crypto::{SignedUsageReceipt, UsageReceipt};

use crate::meter::{ReceiptError, SessionTerms};

/// The agent's payment settings, the same for every session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentPolicy {
	/// Bytes served beyond the latest receipt before service is held.
	pub credit_limit_bytes: u64,
	/// A time-priced session is held when its latest receipt's seconds lag the served
	/// seconds by more than this.
	pub receipt_timeout: Duration,
	/// A session owing something that made no payment progress for this long is dropped.
	pub payment_timeout: Duration,
	/// How old the on-chain view may get.
	pub refresh_interval: Duration,
	/// Blocks before the end of the settlement window in which receipts are refused: they
	/// could not be settled any more.
	pub settle_margin_blocks: u32,
}

impl Default for PaymentPolicy {
	fn default() -> Self {
		PaymentPolicy {
			credit_limit_bytes: 32 << 20,
			receipt_timeout: Duration::from_secs(60),
			payment_timeout: Duration::from_secs(120),
			refresh_interval: Duration::from_secs(15),
			settle_margin_blocks: 10,
		}
	}
}

/// What the chain says about a session's life, as of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainView {
	/// The best block the view was taken at.
	pub best_block: u64,
	/// The client closed the session.
	pub closing: bool,
	/// Last block of service.
	pub expires_at: u64,
	/// Last block in which receipts settle.
	pub settle_until: u64,
}

/// Why the ledger will not serve now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
	/// The credit is used up: a receipt moves it.
	Unpaid {
		/// Bytes served and reserved beyond the latest receipt.
		owed_bytes: u64,
	},
	/// The deposit cannot pay for more: the client must top up.
	DepositExhausted,
	/// The latest receipt's time lags too far behind.
	Late,
	/// The session is closing or expired: no more service, ever.
	Ended,
}

/// Served counts to persist (see [`crate::store`]), so that a restart resumes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
	/// Bytes served in the session, all connections.
	pub bytes: u64,
	/// Seconds of service in the session, all connections.
	pub seconds: u64,
}

/// One session's payment state.
#[derive(Clone, Debug)]
pub struct Ledger {
	policy: PaymentPolicy,
	terms: SessionTerms,
	chain: ChainView,
	refreshed_at: Duration,
	latest: UsageReceipt,
	served_bytes: u64,
	reserved_bytes: u64,
	/// Seconds served by connections that ended, plus `connected` ones' up to `since`.
	served_seconds: u64,
	/// Open connections and since when the oldest counts time.
	connections: u32,
	counting_since: Duration,
	/// When the latest receipt (or the ledger's creation) moved the payment forward.
	paid_at: Duration,
}

impl Ledger {
	/// A ledger for a session with `terms` and `chain` view taken at `now`, resuming from the
	/// newest stored receipt (if newer than the settled one) and the persisted served counts.
	pub fn new(
		policy: PaymentPolicy,
		terms: SessionTerms,
		chain: ChainView,
		stored: Option<UsageReceipt>,
		served: Served,
		now: Duration,
	) -> Self {
		let latest = match stored {
			Some(r) if r.amount > terms.settled.amount || r.sequence > terms.settled.sequence => r,
			_ => terms.settled,
		};
		Ledger {
			policy,
			served_bytes: served.bytes.max(latest.bytes),
			served_seconds: served.seconds.max(latest.seconds),
			reserved_bytes: 0,
			connections: 0,
			counting_since: now,
			paid_at: now,
			refreshed_at: now,
			latest,
			terms,
			chain,
		}
	}

	/// The session's terms.
	pub fn terms(&self) -> &SessionTerms {
		&self.terms
	}

	/// The newest receipt accepted (or settled).
	pub fn latest(&self) -> &UsageReceipt {
		&self.latest
	}

	/// Bytes served so far.
	pub fn served_bytes(&self) -> u64 {
		self.served_bytes
	}

	/// Served bytes not yet signed for (reservations excluded).
	pub fn unpaid_bytes(&self) -> u64 {
		self.served_bytes.saturating_sub(self.latest.bytes)
	}

	/// What to persist.
	pub fn served(&self, now: Duration) -> Served {
		Served { bytes: self.served_bytes, seconds: self.seconds(now) }
	}

	/// Seconds of service so far: ended connections plus the time since the first open one.
	pub fn seconds(&self, now: Duration) -> u64 {
		if self.connections == 0 {
			self.served_seconds
		} else {
			self.served_seconds + now.saturating_sub(self.counting_since).as_secs()
		}
	}

	/// A connection of the session starts: time counts from now while any is open.
	pub fn connect(&mut self, now: Duration) {
		if self.connections == 0 {
			self.counting_since = now;
		}
		self.connections += 1;
	}

	/// A connection of the session ends.
	pub fn disconnect(&mut self, now: Duration) {
		if self.connections == 1 {
			self.served_seconds += now.saturating_sub(self.counting_since).as_secs();
		}
		self.connections = self.connections.saturating_sub(1);
	}

	/// The most bytes the deposit can pay for, at the latest receipt's seconds (or the served
	/// seconds, if more).
	pub fn affordable_bytes(&self, now: Duration) -> u64 {
		crate::meter::affordable_bytes(&self.terms, self.latest.seconds.max(self.seconds(now)))
	}

	/// The served-bytes count the session may reach now: the credit past the latest receipt,
	/// never beyond what the deposit pays.
	pub fn limit(&self, now: Duration) -> u64 {
		self.latest.bytes.saturating_add(self.policy.credit_limit_bytes).min(self.affordable_bytes(now))
	}

	/// No service: closing, or the last block of service has passed.
	pub fn service_ended(&self) -> bool {
		self.chain.closing || self.chain.best_block >= self.chain.expires_at
	}

	/// Receipts can no longer settle in time (the settlement window is about to close).
	pub fn receipts_closed(&self) -> bool {
		self.chain.best_block.saturating_add(u64::from(self.policy.settle_margin_blocks)) > self.chain.settle_until
	}

	/// Time-priced and the latest receipt's seconds lag more than the receipt timeout.
	pub fn is_late(&self, now: Duration) -> bool {
		self.terms.prices.per_hour > 0
			&& self.seconds(now).saturating_sub(self.latest.seconds) > self.policy.receipt_timeout.as_secs()
	}

	/// Owes something and paid nothing for the payment timeout: drop its connections.
	pub fn is_stalled(&self, now: Duration) -> bool {
		(self.unpaid_bytes() > 0 || self.is_late(now)) && now.saturating_sub(self.paid_at) > self.policy.payment_timeout
	}

	/// Whether the on-chain view must be refreshed: it is older than the refresh interval, or
	/// the credit is used up (a top-up may be waiting on-chain).
	pub fn needs_refresh(&self, now: Duration) -> bool {
		now.saturating_sub(self.refreshed_at) >= self.policy.refresh_interval
			|| matches!(self.allowance(now), Err(Hold::DepositExhausted))
	}

	/// Takes a fresher on-chain view (a top-up, a settlement, a close).
	pub fn refresh(&mut self, terms: SessionTerms, chain: ChainView, now: Duration) {
		if terms.settled.amount > self.latest.amount {
			self.latest = terms.settled;
			self.served_bytes = self.served_bytes.max(self.latest.bytes);
			self.paid_at = now;
		}
		self.terms = terms;
		self.chain = chain;
		self.refreshed_at = now;
	}

	/// How many more bytes may be served now, or why none.
	pub fn allowance(&self, now: Duration) -> Result<u64, Hold> {
		if self.service_ended() {
			return Err(Hold::Ended);
		}
		if self.is_late(now) {
			return Err(Hold::Late);
		}
		let used = self.served_bytes.saturating_add(self.reserved_bytes);
		let affordable = self.affordable_bytes(now);
		if used >= affordable {
			return Err(Hold::DepositExhausted);
		}
		let limit = self.latest.bytes.saturating_add(self.policy.credit_limit_bytes).min(affordable);
		match limit.checked_sub(used) {
			Some(n) if n > 0 => Ok(n),
			_ => Err(Hold::Unpaid { owed_bytes: used.saturating_sub(self.latest.bytes) }),
		}
	}

	/// Reserves up to `wanted` bytes to send now; returns how many were granted (at least one)
	/// or why none. The caller sends at most that many and then calls [`Ledger::release`].
	pub fn reserve(&mut self, wanted: u64, now: Duration) -> Result<u64, Hold> {
		let granted = self.allowance(now)?.min(wanted);
		self.reserved_bytes += granted;
		Ok(granted)
	}

	/// Ends a reservation of `reserved` bytes of which `sent` were sent.
	pub fn release(&mut self, reserved: u64, sent: u64) {
		self.reserved_bytes = self.reserved_bytes.saturating_sub(reserved);
		self.served_bytes = self.served_bytes.saturating_add(sent.min(reserved));
	}

	/// Counts `n` bytes the data plane forwarded (it enforces [`Ledger::limit`] itself).
	pub fn add_served(&mut self, n: u64) {
		self.served_bytes = self.served_bytes.saturating_add(n);
	}

	/// The data plane's own count of the session's bytes, when it is ahead.
	pub fn observe_served(&mut self, total: u64) {
		self.served_bytes = self.served_bytes.max(total);
	}

	/// Checks `signed` as the chain will and as this agent requires: bound to this session,
	/// newer, usage not decreasing, at least `min_seconds` of time, the amount exactly its
	/// usage's cost, within the deposit, the signature; and only while receipts can still
	/// settle. Changes nothing.
	pub fn check_receipt(&self, signed: &SignedUsageReceipt, min_seconds: u64) -> Result<(), ReceiptError> {
		if self.receipts_closed() {
			return Err(ReceiptError::TooLate { settle_until: self.chain.settle_until });
		}
		crate::meter::check_receipt(&self.terms, &self.latest, signed, min_seconds)
	}

	/// Applies a receipt that passed [`Ledger::check_receipt`] and was persisted.
	pub fn accept(&mut self, receipt: UsageReceipt, now: Duration) {
		if receipt.sequence > self.latest.sequence {
			if receipt.bytes > self.latest.bytes || receipt.seconds > self.latest.seconds {
				self.paid_at = now;
			}
			self.latest = receipt;
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::meter::next_receipt;
	use interlattice_pq_crypto::keys::MlDsaKeyPair;
	use pallet_provider_registry::Prices;
	use pallet_session_escrow::types::GIB;

	const GENESIS: [u8; 32] = [7; 32];
	const MIB: u64 = 1 << 20;

	fn secs(s: u64) -> Duration {
		Duration::from_secs(s)
	}

	fn terms(client: &MlDsaKeyPair, deposit: u128, per_hour: u128) -> SessionTerms {
		let settled = UsageReceipt {
			genesis_hash: GENESIS,
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
			genesis_hash: GENESIS,
			provider: [8; 32],
			nonce: [9; 32],
			client_key: client.public().clone(),
			prices: Prices { per_gib: GIB, per_hour },
			deposit,
			settled,
		}
	}

	fn open() -> ChainView {
		ChainView { best_block: 10, closing: false, expires_at: 1_000, settle_until: 1_600 }
	}

	fn policy() -> PaymentPolicy {
		PaymentPolicy { credit_limit_bytes: MIB, ..Default::default() }
	}

	fn sign(client: &MlDsaKeyPair, r: UsageReceipt) -> SignedUsageReceipt {
		SignedUsageReceipt { signature: client.sign(&r.signing_payload()).unwrap(), receipt: r }
	}

	fn ledger(client: &MlDsaKeyPair) -> Ledger {
		Ledger::new(policy(), terms(client, u128::MAX / 4, 0), open(), None, Served::default(), secs(0))
	}

	#[test]
	fn the_credit_is_per_session_not_per_connection() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l = ledger(&client);
		l.connect(secs(0));
		assert_eq!(l.reserve(10 * MIB, secs(0)), Ok(MIB));
		l.release(MIB, MIB);
		l.disconnect(secs(1));
		// A reconnect is the same session: no new credit.
		l.connect(secs(2));
		assert_eq!(l.allowance(secs(2)), Err(Hold::Unpaid { owed_bytes: MIB }));
		// A receipt moves the credit.
		let r = next_receipt(l.terms(), 0, MIB, 0).unwrap();
		l.check_receipt(&sign(&client, r), 0).unwrap();
		l.accept(r, secs(3));
		assert_eq!(l.allowance(secs(3)), Ok(MIB));
	}

	#[test]
	fn a_restarted_agent_resumes_the_served_counts() {
		let client = MlDsaKeyPair::dev("charlie");
		let l = Ledger::new(
			policy(),
			terms(&client, u128::MAX / 4, 0),
			open(),
			None,
			Served { bytes: MIB, seconds: 30 },
			secs(0),
		);
		assert_eq!(l.allowance(secs(0)), Err(Hold::Unpaid { owed_bytes: MIB }));
		assert_eq!(l.seconds(secs(100)), 30, "no connection: time does not count");
	}

	#[test]
	fn concurrent_reservations_never_exceed_the_credit() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l = ledger(&client);
		let chunk = 256 << 10;
		let mut granted = 0;
		for _ in 0..200 {
			match l.reserve(chunk, secs(0)) {
				Ok(n) => granted += n,
				Err(Hold::Unpaid { .. }) => {},
				Err(other) => panic!("{other:?}"),
			}
		}
		assert_eq!(granted, MIB, "200 streams together got exactly the credit");
		// Streams that sent less give the rest back.
		l.release(chunk, 1_000);
		assert_eq!(l.allowance(secs(0)), Ok(chunk - 1_000));
	}

	#[test]
	fn the_deposit_bounds_service() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l = Ledger::new(policy(), terms(&client, 300, 0), open(), None, Served::default(), secs(0));
		assert_eq!(l.reserve(MIB, secs(0)), Ok(300));
		assert_eq!(l.allowance(secs(0)), Err(Hold::DepositExhausted));
		assert!(l.needs_refresh(secs(0)), "a top-up may be waiting");
		// A top-up seen on-chain moves it.
		l.refresh(terms(&client, 600, 0), open(), secs(1));
		assert_eq!(l.allowance(secs(1)), Ok(300));
	}

	#[test]
	fn late_receipts_hold_time_priced_service_and_stalled_sessions_are_dropped() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l =
			Ledger::new(policy(), terms(&client, u128::MAX / 4, 3_600), open(), None, Served::default(), secs(0));
		l.connect(secs(0));
		assert!(!l.is_late(secs(60)));
		assert!(l.is_late(secs(61)));
		assert_eq!(l.allowance(secs(61)), Err(Hold::Late));
		assert!(!l.is_stalled(secs(119)));
		assert!(l.is_stalled(secs(121)));
		// Paying catches up.
		let r = next_receipt(l.terms(), 0, 0, 61).unwrap();
		l.check_receipt(&sign(&client, r), 0).unwrap();
		l.accept(r, secs(61));
		assert!(!l.is_late(secs(62)) && !l.is_stalled(secs(150)));
		assert_eq!(l.seconds(secs(62)), 62);
	}

	#[test]
	fn no_service_after_the_end_and_no_receipts_that_cannot_settle() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l = ledger(&client);
		let r = next_receipt(l.terms(), 0, 100, 0).unwrap();
		let signed = sign(&client, r);
		// Expired: no service, receipts still settle.
		l.refresh(l.terms().clone(), ChainView { best_block: 1_000, ..open() }, secs(1));
		assert_eq!(l.allowance(secs(1)), Err(Hold::Ended));
		l.check_receipt(&signed, 0).unwrap();
		// Closing.
		l.refresh(l.terms().clone(), ChainView { closing: true, settle_until: 700, ..open() }, secs(2));
		assert_eq!(l.allowance(secs(2)), Err(Hold::Ended));
		// The window's last blocks: receipts refused, they could not settle.
		l.refresh(l.terms().clone(), ChainView { best_block: 1_595, ..open() }, secs(3));
		assert!(matches!(l.check_receipt(&signed, 0), Err(ReceiptError::TooLate { .. })));
	}

	#[test]
	fn the_on_chain_view_is_refreshed_on_schedule() {
		let client = MlDsaKeyPair::dev("charlie");
		let mut l = ledger(&client);
		assert!(!l.needs_refresh(secs(14)));
		assert!(l.needs_refresh(secs(15)));
		l.refresh(l.terms().clone(), open(), secs(15));
		assert!(!l.needs_refresh(secs(16)));
		// A settlement newer than what the agent holds (another agent of the provider) counts.
		let mut t = l.terms().clone();
		t.settled = next_receipt(&t, 3, 2 * MIB, 0).unwrap();
		l.refresh(t, open(), secs(20));
		assert_eq!((l.latest().sequence, l.served_bytes()), (4, 2 * MIB));
	}
}
