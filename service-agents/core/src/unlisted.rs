//! An unlisted service (issue 21): the agent's endpoints are not in the registry. Each paying
//! client is given one address of the provider's pool, chosen by a keyed hash ring from its
//! account (so one account learns one address), sealed to the session's ML-KEM-768 key
//! ([`crate::reveal`]). Clients report addresses they cannot reach; an address reported by
//! `burn_threshold` distinct paying accounts is retired, its clients are moved to another,
//! and accounts that learned `max_burned_per_account` addresses that were later retired get
//! no more reveals. Policy and knobs: `docs/unlisted-endpoints.md`.
//!
//! [`RevealPolicy`] is the state machine (no I/O); [`Revealer`] follows the chain's events
//! and submits the reveals; [`RevealRecords`] are kept in a JSON file written atomically.

use std::{
	collections::{BTreeMap, BTreeSet},
	path::{Path, PathBuf},
	time::Duration,
};

use interlattice_runtime::{AccountId, RuntimeCall, RuntimeEvent};
use pallet_provider_registry::ServiceKind;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
	chain::ChainClient,
	registration::endpoint_of,
	reveal::{reveal_key, seal, session_info},
	settler::Settler,
};

/// Points each address has on the ring: enough for an even split of accounts.
const RING_POINTS_PER_ADDRESS: u32 = 64;
/// On its first start the agent looks this many blocks back for requests (about 2 hours).
const CATCH_UP_BLOCKS: u64 = 1_200;
/// Most blocks handled in one step (the rest in the next).
const MAX_BLOCKS_PER_STEP: u64 = 100;

/// `[unlisted]`: the service's endpoints are revealed to paying clients, never registered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlistedSection {
	/// The addresses clients are given (the form of `provider.endpoint`: `host:port` for the
	/// VPN, `https://host:port` for the CDN); each must reach this agent.
	pub pool: Vec<String>,
	/// Where the ring key (32 random bytes, made on the first start, mode 0600) and the
	/// records of who learned which address are kept.
	pub dir: PathBuf,
	/// Distinct paying accounts that must report an address before it is retired.
	#[serde(default = "default_burn_threshold")]
	pub burn_threshold: usize,
	/// An account that learned this many addresses that were later retired gets no more
	/// reveals.
	#[serde(default = "default_max_burned")]
	pub max_burned_per_account: usize,
	/// Milliseconds between looks at the chain for requests and reports.
	#[serde(default = "default_poll_ms")]
	pub poll_interval_ms: u64,
}

fn default_burn_threshold() -> usize {
	3
}
fn default_max_burned() -> usize {
	2
}
fn default_poll_ms() -> u64 {
	2_000
}

impl UnlistedSection {
	/// Checks the settings for `service`.
	pub fn check(&self, service: ServiceKind) -> Result<(), String> {
		if self.pool.is_empty() {
			return Err("unlisted.pool needs at least one address".into());
		}
		for address in &self.pool {
			if !endpoint_of(service, address.as_bytes()) || address.len() > 255 || address.trim() != address {
				return Err(format!("unlisted.pool: {address:?} is not a {service:?} endpoint of at most 255 bytes"));
			}
		}
		if self.pool.iter().collect::<BTreeSet<_>>().len() != self.pool.len() {
			return Err("unlisted.pool lists an address twice".into());
		}
		if self.burn_threshold == 0 || self.max_burned_per_account == 0 {
			return Err("unlisted.burn_threshold and max_burned_per_account must be at least 1".into());
		}
		Ok(())
	}
}

fn point(ring_key: &[u8; 32], kind: &[u8], item: &[u8], index: u32) -> u64 {
	let hash = sp_crypto_hashing::blake2_256(
		&[b"interlattice/unlisted/ring/v1".as_slice(), ring_key, kind, item, &index.to_le_bytes()].concat(),
	);
	u64::from_le_bytes(hash[..8].try_into().expect("8 of 32 bytes; qed"))
}

/// The address of `pool` (minus `retired`) that `account` is given: the first address point
/// at or after the account's point on a ring keyed by `ring_key` (each address has
/// [`RING_POINTS_PER_ADDRESS`] points). Deterministic: one account always gets the same
/// address while it is not retired; retiring an address moves only its own accounts; an
/// outsider without the key cannot tell which accounts share an address. `None` when every
/// address is retired.
pub fn assign<'a>(ring_key: &[u8; 32], pool: &'a [String], retired: &BTreeSet<String>, account: &[u8]) -> Option<&'a str> {
	let target = point(ring_key, b"account", account, 0);
	pool.iter()
		.filter(|a| !retired.contains(*a))
		.flat_map(|a| (0..RING_POINTS_PER_ADDRESS).map(move |i| (point(ring_key, b"address", a.as_bytes(), i), a)))
		.min_by_key(|(p, a)| (p.wrapping_sub(target), *a))
		.map(|(_, a)| a.as_str())
}

/// One session's reveal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
	/// The client's account (SS58-free hex: the records are the provider's, not a UI).
	pub client: String,
	/// The address revealed.
	pub address: String,
}

/// What the agent remembers: who learned which address, who reported which, what is retired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealRecords {
	/// The chain the records are of (genesis hash, hex); records of another chain (a dev
	/// chain started afresh) are set aside.
	#[serde(default)]
	pub genesis: String,
	/// The last block whose events were handled.
	pub last_block: u64,
	/// The current reveal of each session not yet closed.
	pub reveals: BTreeMap<u64, Reveal>,
	/// Each address's accounts that learned it.
	pub learned: BTreeMap<String, BTreeSet<String>>,
	/// Each address's accounts that reported it unreachable.
	pub reports: BTreeMap<String, BTreeSet<String>>,
	/// Addresses retired (burned).
	pub retired: BTreeSet<String>,
}

impl RevealRecords {
	/// Reads the records at `path`; none yet is an empty record.
	pub fn load(path: &Path) -> Result<Self, String> {
		match std::fs::read(path) {
			Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
			Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
			Err(e) => Err(format!("{}: {e}", path.display())),
		}
	}

	/// Writes the records to `path` atomically (a temporary file, fsynced, renamed).
	pub fn save(&self, path: &Path) -> std::io::Result<()> {
		let tmp = path.with_extension("json.tmp");
		{
			use std::io::Write;
			let mut f = std::fs::File::create(&tmp)?;
			f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
			f.sync_all()?;
		}
		std::fs::rename(&tmp, path)?;
		if let Some(dir) = path.parent() {
			crate::keys::sync_dir(dir)?;
		}
		Ok(())
	}
}

/// What to do about a request for an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
	/// Seal this address to the session.
	Reveal(String),
	/// The account learned too many addresses that were later burned.
	Refuse,
	/// Every address of the pool is retired.
	PoolExhausted,
}

/// What a report changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportOutcome {
	/// The address retired by this report, if it crossed the threshold.
	pub retired: Option<String>,
	/// Sessions to give a new address (they had the retired one).
	pub moves: Vec<u64>,
}

/// The reveal policy over the records: no I/O.
pub struct RevealPolicy {
	/// Keys the ring.
	pub ring_key: [u8; 32],
	/// The pool, in configuration order.
	pub pool: Vec<String>,
	/// Distinct reporting accounts that retire an address.
	pub burn_threshold: usize,
	/// Burned addresses learned that stop reveals to an account.
	pub max_burned_per_account: usize,
	/// The records.
	pub records: RevealRecords,
}

impl RevealPolicy {
	/// How many addresses `client` learned that were later retired.
	pub fn burned_by(&self, client: &str) -> usize {
		self.records.retired.iter().filter(|a| self.records.learned.get(*a).is_some_and(|s| s.contains(client))).count()
	}

	/// Session `session_id` of `client` asks for an endpoint (or must move off a retired one).
	pub fn request(&mut self, session_id: u64, client: &str) -> Decision {
		if self.burned_by(client) >= self.max_burned_per_account {
			self.records.reveals.remove(&session_id);
			return Decision::Refuse;
		}
		let Some(address) = assign(&self.ring_key, &self.pool, &self.records.retired, client.as_bytes()) else {
			self.records.reveals.remove(&session_id);
			return Decision::PoolExhausted;
		};
		let address = address.to_string();
		self.records.learned.entry(address.clone()).or_default().insert(client.to_string());
		self.records.reveals.insert(session_id, Reveal { client: client.to_string(), address: address.clone() });
		Decision::Reveal(address)
	}

	/// `client` reports session `session_id`'s address unreachable. Counts only for the
	/// session's own client and its current address; one vote per account.
	pub fn report(&mut self, session_id: u64, client: &str) -> ReportOutcome {
		let Some(reveal) = self.records.reveals.get(&session_id).filter(|r| r.client == client).cloned() else {
			return ReportOutcome::default();
		};
		if self.records.retired.contains(&reveal.address) {
			return ReportOutcome::default();
		}
		let reporters = self.records.reports.entry(reveal.address.clone()).or_default();
		reporters.insert(client.to_string());
		if reporters.len() < self.burn_threshold {
			return ReportOutcome::default();
		}
		self.records.retired.insert(reveal.address.clone());
		let moves = self.records.reveals.iter().filter(|(_, r)| r.address == reveal.address).map(|(id, _)| *id).collect();
		ReportOutcome { retired: Some(reveal.address), moves }
	}

	/// Session `session_id` ended: its reveal is forgotten (who learned what is kept).
	pub fn ended(&mut self, session_id: u64) {
		self.records.reveals.remove(&session_id);
	}

	/// The pool index of `address`, for logs (addresses are not logged).
	pub fn index_of(&self, address: &str) -> usize {
		self.pool.iter().position(|a| a == address).unwrap_or(usize::MAX)
	}
}

/// Reads the ring key in `dir`, or makes one (32 random bytes, mode 0600).
pub fn ring_key(dir: &Path) -> Result<[u8; 32], String> {
	let path = dir.join("ring.key");
	match std::fs::read(&path) {
		Ok(bytes) => bytes.try_into().map_err(|_| format!("{}: not 32 bytes", path.display())),
		Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
			std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
			let mut key = [0u8; 32];
			getrandom::fill(&mut key).map_err(|e| e.to_string())?;
			use std::{io::Write, os::unix::fs::OpenOptionsExt};
			let tmp = path.with_extension("tmp");
			let mut f = std::fs::OpenOptions::new()
				.write(true)
				.create(true)
				.truncate(true)
				.mode(0o600)
				.open(&tmp)
				.map_err(|e| format!("{}: {e}", tmp.display()))?;
			f.write_all(&key).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
			std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
			Ok(key)
		},
		Err(e) => Err(format!("{}: {e}", path.display())),
	}
}

/// Follows the chain for requests, reports and ends of this agent's sessions, and reveals.
pub struct Revealer {
	chain: ChainClient,
	settler: Settler,
	provider: AccountId,
	service: ServiceKind,
	policy: RevealPolicy,
	records_path: PathBuf,
	poll: Duration,
}

/// How the records (and the ring) name an account: its 32 bytes in hex.
pub fn account_hex(a: &AccountId) -> String {
	hex::encode(<AccountId as AsRef<[u8]>>::as_ref(a))
}

impl Revealer {
	/// Sets up the revealer of `provider`'s `service` (reads the ring key and the records).
	pub fn new(
		chain: ChainClient,
		settler: Settler,
		provider: AccountId,
		service: ServiceKind,
		section: &UnlistedSection,
	) -> Result<Self, String> {
		section.check(service)?;
		let ring_key = ring_key(&section.dir)?;
		let records_path = section.dir.join("records.json");
		let genesis = hex::encode(chain.genesis_hash());
		let mut records = RevealRecords::load(&records_path)?;
		if records.genesis != genesis {
			if records != RevealRecords::default() {
				let aside = records_path.with_extension(format!("json.{}", &records.genesis.get(..16).unwrap_or("unknown")));
				tracing::warn!(records = %records_path.display(), kept_as = %aside.display(), "unlisted: the records are of another chain; starting afresh");
				std::fs::rename(&records_path, &aside).map_err(|e| format!("{}: {e}", records_path.display()))?;
			}
			records = RevealRecords { genesis, ..Default::default() };
		}
		Ok(Revealer {
			chain,
			settler,
			provider,
			service,
			policy: RevealPolicy {
				ring_key,
				pool: section.pool.clone(),
				burn_threshold: section.burn_threshold,
				max_burned_per_account: section.max_burned_per_account,
				records,
			},
			records_path,
			poll: Duration::from_millis(section.poll_interval_ms.max(100)),
		})
	}

	/// Runs until `stop`.
	pub async fn run(mut self, stop: CancellationToken) {
		tracing::info!(addresses = self.policy.pool.len(), "unlisted: revealing endpoints to paying clients");
		loop {
			if let Err(e) = self.step().await {
				tracing::warn!(error = %e, "unlisted: could not follow the chain; retrying");
			}
			tokio::select! {
				_ = stop.cancelled() => return,
				_ = tokio::time::sleep(self.poll) => {},
			}
		}
	}

	/// Handles the blocks since the last step.
	pub async fn step(&mut self) -> Result<(), String> {
		let best = self.chain.best_number().await.map_err(|e| e.to_string())?;
		let mut next = match self.policy.records.last_block {
			0 => best.saturating_sub(CATCH_UP_BLOCKS).max(1),
			n => n + 1,
		};
		let last = best.min(next + MAX_BLOCKS_PER_STEP - 1);
		while next <= last {
			let hash = self.chain.block_hash(next).await.map_err(|e| e.to_string())?;
			let events = self.chain.events(hash).await.map_err(|e| e.to_string())?;
			for record in events {
				self.handle(record.event).await?;
			}
			self.policy.records.last_block = next;
			self.policy.records.save(&self.records_path).map_err(|e| format!("{}: {e}", self.records_path.display()))?;
			next += 1;
		}
		Ok(())
	}

	async fn handle(&mut self, event: RuntimeEvent) -> Result<(), String> {
		use pallet_session_escrow::Event;
		let RuntimeEvent::SessionEscrow(event) = event else { return Ok(()) };
		match event {
			Event::EndpointRequested { session_id, provider } if provider == self.provider => {
				self.reveal(session_id).await
			},
			Event::EndpointReported { session_id, client, provider } if provider == self.provider => {
				let outcome = self.policy.report(session_id, &account_hex(&client));
				if let Some(address) = &outcome.retired {
					tracing::warn!(
						pool_index = self.policy.index_of(address),
						moved = outcome.moves.len(),
						"unlisted: an address was reported by enough paying clients and is retired"
					);
				}
				for id in outcome.moves {
					self.reveal(id).await?;
				}
				Ok(())
			},
			Event::SessionClosed { session_id, .. } => {
				self.policy.ended(session_id);
				Ok(())
			},
			_ => Ok(()),
		}
	}

	/// Reveals an address to session `session_id` if it is ours, open and asked for one.
	async fn reveal(&mut self, session_id: u64) -> Result<(), String> {
		let Some(session) = self.chain.session(session_id).await.map_err(|e| e.to_string())? else {
			return Ok(());
		};
		if session.provider != self.provider || session.service != self.service || session.closing {
			return Ok(());
		}
		let Some(key) = reveal_key(&self.chain, session_id).await.map_err(|e| e.to_string())? else {
			return Ok(());
		};
		let address = match self.policy.request(session_id, &account_hex(&session.client)) {
			Decision::Reveal(address) => address,
			Decision::Refuse => {
				tracing::warn!(session_id, "unlisted: no reveal: the client learned too many addresses that were burned");
				return Ok(());
			},
			Decision::PoolExhausted => {
				tracing::error!(session_id, "unlisted: no reveal: every address of the pool is retired");
				return Ok(());
			},
		};
		let sealed = seal(&key, &session_info(&self.chain.genesis_hash().into(), &session), &address)
			.map_err(|e| e.to_string())?;
		let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::reveal_endpoint {
			session_id,
			sealed: Box::new(sealed),
		});
		match self.settler.submit_in_turn(call).await {
			Ok(()) => {
				tracing::info!(session_id, pool_index = self.policy.index_of(&address), "unlisted: endpoint revealed");
				Ok(())
			},
			// The session closed meanwhile, or the client's key was refused: nothing to do.
			Err(e) if !e.is_transient() => {
				tracing::warn!(session_id, error = %e, "unlisted: the reveal was refused");
				Ok(())
			},
			Err(e) => Err(e.to_string()),
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn pool(n: usize) -> Vec<String> {
		(1..=n).map(|i| format!("198.51.100.{i}:7310")).collect()
	}

	fn policy(n: usize, threshold: usize, max_burned: usize) -> RevealPolicy {
		RevealPolicy {
			ring_key: [5; 32],
			pool: pool(n),
			burn_threshold: threshold,
			max_burned_per_account: max_burned,
			records: RevealRecords::default(),
		}
	}

	fn account(i: u32) -> String {
		hex::encode(sp_crypto_hashing::blake2_256(&i.to_le_bytes()))
	}

	#[test]
	fn one_account_one_address_and_the_pool_shared_evenly() {
		let pool = pool(4);
		let none = BTreeSet::new();
		let mut counts = BTreeMap::new();
		for i in 0..4_000 {
			let a = assign(&[5; 32], &pool, &none, account(i).as_bytes()).unwrap();
			assert_eq!(assign(&[5; 32], &pool, &none, account(i).as_bytes()), Some(a), "deterministic");
			*counts.entry(a).or_insert(0) += 1;
		}
		assert_eq!(counts.len(), 4);
		for (a, n) in &counts {
			assert!((600..=1_400).contains(n), "{a} got {n} of 4000 accounts");
		}
		// Another ring key gives another assignment: an outsider cannot predict it.
		let other = (0..200)
			.filter(|i| {
				assign(&[5; 32], &pool, &none, account(*i).as_bytes())
					!= assign(&[6; 32], &pool, &none, account(*i).as_bytes())
			})
			.count();
		assert!(other > 100, "only {other} of 200 accounts moved with another key");
	}

	#[test]
	fn retiring_an_address_moves_only_its_accounts() {
		let pool = pool(4);
		let none = BTreeSet::new();
		let retired: BTreeSet<String> = [pool[0].clone()].into();
		for i in 0..1_000 {
			let before = assign(&[5; 32], &pool, &none, account(i).as_bytes()).unwrap();
			let after = assign(&[5; 32], &pool, &retired, account(i).as_bytes()).unwrap();
			assert_ne!(after, pool[0]);
			if before != pool[0] {
				assert_eq!(before, after, "an account of a live address kept it");
			}
		}
		let all: BTreeSet<String> = pool.iter().cloned().collect();
		assert_eq!(assign(&[5; 32], &pool, &all, b"x"), None);
	}

	/// Reports from distinct paying clients retire an address and move its sessions; one
	/// account reporting many times does not; reports for another's session do not count.
	#[test]
	fn distinct_reporters_retire_an_address_one_account_alone_does_not() {
		let mut p = policy(2, 2, 2);
		// Find three accounts that share an address.
		let first = match p.request(0, &account(0)) {
			Decision::Reveal(a) => a,
			d => panic!("{d:?}"),
		};
		let mut mates = vec![];
		for i in 1..100 {
			if p.request(u64::from(i), &account(i)) == Decision::Reveal(first.clone()) {
				mates.push(i);
			}
			if mates.len() == 2 {
				break;
			}
		}
		let (b, c) = (mates[0], mates[1]);
		// Account 0 reports five times: no retirement.
		for _ in 0..5 {
			assert_eq!(p.report(0, &account(0)), ReportOutcome::default());
		}
		// A report naming someone else's session does not count.
		assert_eq!(p.report(0, &account(b)), ReportOutcome::default());
		assert!(p.records.retired.is_empty());
		// A second distinct account: retired, and every session that had it moves.
		let outcome = p.report(u64::from(b), &account(b));
		assert_eq!(outcome.retired.as_deref(), Some(first.as_str()));
		let mut moves = outcome.moves.clone();
		moves.sort();
		assert_eq!(moves, vec![0, u64::from(b), u64::from(c)]);
		// The next request of a moved client gets the other address.
		match p.request(u64::from(c), &account(c)) {
			Decision::Reveal(a) => assert_ne!(a, first),
			d => panic!("{d:?}"),
		}
		assert_eq!(p.burned_by(&account(c)), 1);
	}

	#[test]
	fn accounts_that_learned_too_many_burned_addresses_are_refused() {
		let mut p = policy(3, 1, 2);
		let spy = account(0);
		for round in 0..2 {
			let Decision::Reveal(_) = p.request(round, &spy) else { panic!("revealed") };
			let outcome = p.report(round, &spy);
			assert!(outcome.retired.is_some(), "threshold 1: retired at once");
		}
		assert_eq!(p.burned_by(&spy), 2);
		assert_eq!(p.request(9, &spy), Decision::Refuse);
		// An honest account that learned none of them still gets the last address.
		assert!(matches!(p.request(10, &account(1)), Decision::Reveal(_)));
	}

	#[test]
	fn records_survive_a_restart_and_a_torn_temporary_file() {
		let dir = tempfile::tempdir().unwrap();
		let path = dir.path().join("records.json");
		let mut p = policy(2, 2, 2);
		p.request(4, &account(4));
		p.records.last_block = 17;
		p.records.save(&path).unwrap();
		// A crash while writing the next version leaves a torn temporary file only.
		std::fs::write(path.with_extension("json.tmp"), b"{\"last_blo").unwrap();
		assert_eq!(RevealRecords::load(&path).unwrap(), p.records);
		// The ring key is made once and kept.
		let key = ring_key(dir.path()).unwrap();
		assert_eq!(ring_key(dir.path()).unwrap(), key);
		use std::os::unix::fs::PermissionsExt;
		assert_eq!(std::fs::metadata(dir.path().join("ring.key")).unwrap().permissions().mode() & 0o777, 0o600);
	}

	#[test]
	fn the_section_is_checked() {
		let section = |pool: &[&str]| UnlistedSection {
			pool: pool.iter().map(|s| s.to_string()).collect(),
			dir: "/tmp/x".into(),
			burn_threshold: 3,
			max_burned_per_account: 2,
			poll_interval_ms: 1000,
		};
		assert!(section(&["198.51.100.1:7310"]).check(ServiceKind::Vpn).is_ok());
		assert!(section(&[]).check(ServiceKind::Vpn).is_err());
		assert!(section(&["https://a:1"]).check(ServiceKind::Vpn).is_err());
		assert!(section(&["a:1"]).check(ServiceKind::Cdn).is_err());
		assert!(section(&["a:1", "a:1"]).check(ServiceKind::Vpn).is_err());
	}
}
