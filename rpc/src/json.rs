//! The JSON shapes of the custom RPC methods, shared by the node (which produces them) and the
//! clients and agents (which read them). Documented with examples in `docs/rpc.md`.

use std::{fmt, str::FromStr};

use pallet_provider_registry::{
	Hosting, ProviderCounts, ProviderFilter, ProviderInfo, ProviderOrder, ProviderStatus, RegistryStats, ServiceKind,
	Services,
};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sp_core::crypto::{AccountId32, Ss58AddressFormat, Ss58Codec};

/// A token amount (or any `u128`) as a decimal string. Reads a string, or a JSON number when
/// it is an integer no larger than 2^53 (safe in JavaScript).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Amount(pub u128);

impl Serialize for Amount {
	fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
		s.collect_str(&self.0)
	}
}

impl<'de> Deserialize<'de> for Amount {
	fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
		struct V;
		impl de::Visitor<'_> for V {
			type Value = Amount;
			fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
				f.write_str("an amount as a decimal string (or an integer up to 2^53)")
			}
			fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
				if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
					return Err(E::custom(format!("`{v}` is not a decimal amount")));
				}
				v.parse().map(Amount).map_err(|_| E::custom(format!("amount `{v}` exceeds 2^128")))
			}
			fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
				if v > (1 << 53) {
					return Err(E::custom("amounts above 2^53 must be strings"));
				}
				Ok(Amount(v.into()))
			}
			fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
				u64::try_from(v).map_err(|_| E::custom("amounts are not negative")).and_then(|v| self.visit_u64(v))
			}
		}
		d.deserialize_any(V)
	}
}

/// An account: SS58 in output (the chain's prefix); SS58 of any prefix or `0x` + 64 hex digits
/// in input.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Account(pub AccountId32);

impl Account {
	/// SS58 with `prefix`.
	pub fn to_ss58(&self, prefix: u16) -> String {
		self.0.to_ss58check_with_version(Ss58AddressFormat::custom(prefix))
	}
}

impl FromStr for Account {
	type Err = String;
	fn from_str(s: &str) -> Result<Self, String> {
		if let Some(h) = s.strip_prefix("0x") {
			let bytes = hex::decode(h).map_err(|_| format!("`{s}` is not hex"))?;
			let raw: [u8; 32] = bytes.try_into().map_err(|_| format!("`{s}` is not 32 bytes"))?;
			return Ok(Account(raw.into()));
		}
		AccountId32::from_ss58check_with_version(s)
			.map(|(a, _)| Account(a))
			.map_err(|e| format!("`{s}` is not an SS58 account ({e:?})"))
	}
}

impl<'de> Deserialize<'de> for Account {
	fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
		String::deserialize(d)?.parse().map_err(de::Error::custom)
	}
}

/// `"vpn"` or `"cdn"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceJson {
	/// The dVPN.
	Vpn,
	/// The dCDN.
	Cdn,
}

impl From<ServiceJson> for ServiceKind {
	fn from(s: ServiceJson) -> Self {
		match s {
			ServiceJson::Vpn => ServiceKind::Vpn,
			ServiceJson::Cdn => ServiceKind::Cdn,
		}
	}
}

/// `"vpn"`, `"cdn"` or `"both"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServicesJson {
	/// Only the dVPN.
	Vpn,
	/// Only the dCDN.
	Cdn,
	/// Both.
	Both,
}

impl From<Services> for ServicesJson {
	fn from(s: Services) -> Self {
		match s {
			Services::Vpn => ServicesJson::Vpn,
			Services::Cdn => ServicesJson::Cdn,
			Services::Both => ServicesJson::Both,
		}
	}
}

/// `"datacenter"` or `"residential"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostingJson {
	/// A data centre.
	Datacenter,
	/// A residential line.
	Residential,
}

impl From<Hosting> for HostingJson {
	fn from(h: Hosting) -> Self {
		match h {
			Hosting::Datacenter => HostingJson::Datacenter,
			Hosting::Residential => HostingJson::Residential,
		}
	}
}

impl From<HostingJson> for Hosting {
	fn from(h: HostingJson) -> Self {
		match h {
			HostingJson::Datacenter => Hosting::Datacenter,
			HostingJson::Residential => Hosting::Residential,
		}
	}
}

/// `"stake"` (largest first), `"pricePerGib"`, `"pricePerHour"` (cheapest first),
/// `"registeredAt"` (oldest first).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrderJson {
	/// Largest bonded stake first.
	#[default]
	Stake,
	/// Cheapest per GiB first.
	PricePerGib,
	/// Cheapest per hour first.
	PricePerHour,
	/// Oldest first.
	RegisteredAt,
}

impl From<OrderJson> for ProviderOrder {
	fn from(o: OrderJson) -> Self {
		match o {
			OrderJson::Stake => ProviderOrder::StakeDescending,
			OrderJson::PricePerGib => ProviderOrder::PricePerGibAscending,
			OrderJson::PricePerHour => ProviderOrder::PricePerHourAscending,
			OrderJson::RegisteredAt => ProviderOrder::RegisteredAtAscending,
		}
	}
}

/// Parameter of `registry_providers`: every field optional.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderQuery {
	/// Offers this service.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub service: Option<ServiceJson>,
	/// ISO 3166-1 alpha-2 country code (case-insensitive).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub country: Option<String>,
	/// Kind of network.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub hosting: Option<HostingJson>,
	/// Price per GiB at most this.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub max_price_per_gib: Option<Amount>,
	/// Price per hour at most this.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub max_price_per_hour: Option<Amount>,
	/// Bonded stake at least this.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub min_stake: Option<Amount>,
	/// Only active providers (default `true`).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub active_only: Option<bool>,
	/// Order (default `"stake"`).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub order: Option<OrderJson>,
	/// Matches to skip (default 0).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub offset: Option<u32>,
	/// Page size (default [`DEFAULT_PAGE_LIMIT`], at most
	/// [`pallet_provider_registry::MAX_PAGE_LIMIT`]).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub limit: Option<u32>,
}

/// Page size when a query gives none.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;

/// A [`ProviderQuery`] checked and converted for the runtime API.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CheckedQuery {
	/// The filter.
	pub filter: ProviderFilter<u128>,
	/// The order.
	pub order: ProviderOrder,
	/// Matches skipped.
	pub offset: u32,
	/// Page size.
	pub limit: u32,
}

impl ProviderQuery {
	/// Checks the query: a two-letter country code, a page size within bounds.
	pub fn check(self) -> Result<CheckedQuery, String> {
		let country = match self.country {
			None => None,
			Some(c) => {
				let upper = c.to_ascii_uppercase();
				let code: [u8; 2] = upper
					.as_bytes()
					.try_into()
					.ok()
					.filter(|b: &[u8; 2]| b.iter().all(u8::is_ascii_uppercase))
					.ok_or_else(|| format!("country `{c}` is not an ISO 3166-1 alpha-2 code"))?;
				Some(code)
			},
		};
		let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
		let max = pallet_provider_registry::MAX_PAGE_LIMIT;
		if limit == 0 || limit > max {
			return Err(format!("limit {limit} is outside 1..={max}"));
		}
		Ok(CheckedQuery {
			filter: ProviderFilter {
				service: self.service.map(Into::into),
				country,
				hosting: self.hosting.map(Into::into),
				max_price_per_gib: self.max_price_per_gib.map(|a| a.0),
				max_price_per_hour: self.max_price_per_hour.map(|a| a.0),
				min_stake: self.min_stake.map(|a| a.0),
				active_only: self.active_only.unwrap_or(true),
			},
			order: self.order.unwrap_or_default().into(),
			offset: self.offset.unwrap_or(0),
			limit,
		})
	}
}

/// Prices of a provider.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricesJson {
	/// Per GiB transferred (both directions), smallest unit.
	pub per_gib: Amount,
	/// Per hour of service, smallest unit (0 when not time-priced).
	pub per_hour: Amount,
}

/// One provider.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderJson {
	/// SS58 account.
	pub account: String,
	/// Services offered.
	pub services: ServicesJson,
	/// Endpoints clients dial.
	pub endpoints: Vec<String>,
	/// ISO 3166-1 alpha-2 country code.
	pub country: String,
	/// Region or city (may be empty).
	pub region: String,
	/// Data centre or residential.
	pub hosting: HostingJson,
	/// Prices.
	pub prices: PricesJson,
	/// ML-DSA-65 service public key, `0x` + hex (1952 bytes).
	pub service_key: HexJson,
	/// Bonded stake.
	pub stake: Amount,
	/// Stake held but unbonding.
	pub unbonding: Amount,
	/// `"registered"` or `"deregistered"`.
	pub status: StatusJson,
	/// Registered with at least the minimum stake.
	pub active: bool,
	/// Block of registration.
	pub registered_at: u32,
}

/// `"registered"` or `"deregistered"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusJson {
	/// Registered.
	Registered,
	/// Deregistered, stake unbonding.
	Deregistered,
}

impl ProviderJson {
	/// From the runtime API's answer.
	pub fn new(p: ProviderInfo<AccountId32, u128, u32>, ss58_prefix: u16) -> Self {
		let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
		ProviderJson {
			account: Account(p.account).to_ss58(ss58_prefix),
			services: p.services.into(),
			endpoints: p.endpoints.into_iter().map(text).collect(),
			country: text(p.country.to_vec()),
			region: text(p.region),
			hosting: p.hosting.into(),
			prices: PricesJson { per_gib: Amount(p.prices.per_gib), per_hour: Amount(p.prices.per_hour) },
			service_key: HexJson::new(&p.service_key.0),
			stake: Amount(p.stake),
			unbonding: Amount(p.unbonding),
			status: match p.status {
				ProviderStatus::Registered => StatusJson::Registered,
				ProviderStatus::Deregistered => StatusJson::Deregistered,
			},
			active: p.active,
			registered_at: p.registered_at,
		}
	}
}

/// Bytes as a JSON string, `0x` + hex, held already serialised: the node's serialisation of
/// an answer (generic code, compiled in the node crate, unoptimised in dev builds) copies it
/// as it is instead of checking each of its characters for escapes, which cost ~0.2 ms per
/// 1,952-byte key (most of a listing's time at 100,000 providers, docs/benchmarks.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexJson(Box<serde_json::value::RawValue>);

impl HexJson {
	/// `bytes` as `"0x…"`.
	pub fn new(bytes: &[u8]) -> Self {
		let mut hex = vec![0u8; 2 + 2 * bytes.len()];
		hex[..2].copy_from_slice(b"0x");
		// The output is exactly twice the input's length: no error; only ASCII is written.
		let _ = hex::encode_to_slice(bytes, &mut hex[2..]);
		let hex = String::from_utf8(hex).unwrap_or_default();
		// `to_raw_value`, not `RawValue::from_string`: that one parses the JSON again, in
		// `serde_json`'s own (unoptimised in dev builds) code. Serialising a string does not
		// fail (were it to, `null`).
		HexJson(serde_json::value::to_raw_value(&hex).unwrap_or_default())
	}
}

impl PartialEq for HexJson {
	fn eq(&self, other: &Self) -> bool {
		self.0.get() == other.0.get()
	}
}

impl Eq for HexJson {}

/// Answer of `registry_providers`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPageJson {
	/// Matches in all pages.
	pub total: u32,
	/// Matches skipped.
	pub offset: u32,
	/// This page.
	#[serde(serialize_with = "serialize_providers")]
	pub providers: Vec<ProviderJson>,
	/// The block it answers at, and whether the node's index or the runtime API answered.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub at: Option<AnsweredAtJson>,
}

/// A page's providers, serialised by [`render_providers`] and written out as they are.
fn serialize_providers<S: serde::Serializer>(providers: &[ProviderJson], s: S) -> Result<S::Ok, S::Error> {
	render_providers(providers).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// A page's providers as JSON, made here: not generic, so compiled (optimised) in this crate.
/// Serialised by the node's RPC server directly, a page of 100 (~420 KB) went through generic
/// code compiled in the node crate, unoptimised in dev builds (docs/benchmarks.md).
#[inline(never)]
fn render_providers(providers: &[ProviderJson]) -> serde_json::Result<Box<serde_json::value::RawValue>> {
	serde_json::value::to_raw_value(providers)
}

/// Where a registry answer comes from.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnsweredAtJson {
	/// The block's hash (`0x` hex).
	pub hash: String,
	/// Its number.
	pub number: u32,
	/// `"index"` (the node's in-memory index of the registry) or `"runtime"` (the runtime API:
	/// a block the index is not at).
	pub source: String,
}

/// One change of the registry (`registry_subscribeProviders`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderChangeJson {
	/// `"added"`, `"changed"` or `"removed"`.
	pub change: String,
	/// The provider's account.
	pub account: String,
	/// Its record after the change (`null` when removed).
	pub provider: Option<ProviderJson>,
	/// The new best block the change is in (after a re-org: the block whose state it reaches).
	pub block: String,
	/// Its number.
	pub number: u32,
}

/// Counts of one service or country.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountsJson {
	/// Registered (including deregistered ones still unbonding).
	pub registered: u32,
	/// Active.
	pub active: u32,
}

impl From<ProviderCounts> for CountsJson {
	fn from(c: ProviderCounts) -> Self {
		CountsJson { registered: c.registered, active: c.active }
	}
}

/// Counts of one country.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountryCountsJson {
	/// ISO 3166-1 alpha-2 code.
	pub country: String,
	/// Registered.
	pub registered: u32,
	/// Active.
	pub active: u32,
}

/// Answer of `registry_stats`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatsJson {
	/// All providers.
	pub providers: CountsJson,
	/// Providers offering the VPN.
	pub vpn: CountsJson,
	/// Providers offering the CDN.
	pub cdn: CountsJson,
	/// Per country, by code.
	pub countries: Vec<CountryCountsJson>,
	/// Sum of bonded stake.
	pub total_stake: Amount,
	/// Sum of unbonding stake.
	pub total_unbonding: Amount,
	/// Minimum stake of an active provider.
	pub min_stake: Amount,
	/// The block it answers at, and whether the node's index or the runtime API answered.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub at: Option<AnsweredAtJson>,
}

impl From<RegistryStats<u128>> for RegistryStatsJson {
	fn from(s: RegistryStats<u128>) -> Self {
		RegistryStatsJson {
			providers: s.providers.into(),
			vpn: s.vpn.into(),
			cdn: s.cdn.into(),
			countries: s
				.countries
				.into_iter()
				.map(|(c, n)| CountryCountsJson {
					country: String::from_utf8_lossy(&c).into_owned(),
					registered: n.registered,
					active: n.active,
				})
				.collect(),
			total_stake: Amount(s.total_stake),
			total_unbonding: Amount(s.total_unbonding),
			min_stake: Amount(s.min_stake),
			at: None,
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn amounts_are_strings_and_read_safely() {
		assert_eq!(serde_json::to_string(&Amount(u128::MAX)).unwrap(), format!("\"{}\"", u128::MAX));
		assert_eq!(
			serde_json::from_str::<Amount>("\"340282366920938463463374607431768211455\"").unwrap(),
			Amount(u128::MAX)
		);
		assert_eq!(serde_json::from_str::<Amount>("12").unwrap(), Amount(12));
		assert!(serde_json::from_str::<Amount>("9007199254740993").is_err(), "2^53+1 as a number is unsafe");
		assert!(serde_json::from_str::<Amount>("\"340282366920938463463374607431768211456\"").is_err());
		assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
		assert!(serde_json::from_str::<Amount>("-1").is_err());
		assert!(serde_json::from_str::<Amount>("1.5").is_err());
		assert!(serde_json::from_str::<Amount>("\"\"").is_err());
		assert!(serde_json::from_str::<Amount>("\"1e3\"").is_err());
	}

	#[test]
	fn accounts_read_ss58_and_hex() {
		let raw = [7u8; 32];
		let a = Account(raw.into());
		let ss58 = a.to_ss58(4242);
		assert_eq!(ss58.parse::<Account>().unwrap(), a);
		assert_eq!(a.to_ss58(42).parse::<Account>().unwrap(), a, "any prefix is accepted");
		assert_eq!(format!("0x{}", hex::encode(raw)).parse::<Account>().unwrap(), a);
		assert!("0x0707".parse::<Account>().is_err());
		assert!("nonsense".parse::<Account>().is_err());
	}

	#[test]
	fn queries_are_checked() {
		let q: ProviderQuery = serde_json::from_str(
			r#"{"service":"vpn","country":"de","hosting":"residential","maxPricePerGib":"500","minStake":"1000","activeOnly":false,"order":"pricePerGib","offset":20,"limit":10}"#,
		)
		.unwrap();
		let c = q.check().unwrap();
		assert_eq!(c.filter.service, Some(ServiceKind::Vpn));
		assert_eq!(c.filter.country, Some(*b"DE"));
		assert_eq!(c.filter.hosting, Some(Hosting::Residential));
		assert_eq!((c.filter.max_price_per_gib, c.filter.max_price_per_hour), (Some(500), None));
		assert_eq!(c.filter.min_stake, Some(1000));
		assert!(!c.filter.active_only);
		assert_eq!((c.order, c.offset, c.limit), (ProviderOrder::PricePerGibAscending, 20, 10));

		let d = ProviderQuery::default().check().unwrap();
		assert!(d.filter.active_only);
		assert_eq!((d.order, d.offset, d.limit), (ProviderOrder::StakeDescending, 0, DEFAULT_PAGE_LIMIT));

		for bad in ["DEU", "D", "1A", "ÄÖ"] {
			let q = ProviderQuery { country: Some(bad.into()), ..Default::default() };
			assert!(q.check().unwrap_err().contains("country"), "{bad}");
		}
		for limit in [0, pallet_provider_registry::MAX_PAGE_LIMIT + 1] {
			let q = ProviderQuery { limit: Some(limit), ..Default::default() };
			assert!(q.check().unwrap_err().contains("limit"));
		}
		assert!(serde_json::from_str::<ProviderQuery>(r#"{"colour":"red"}"#).is_err(), "unknown fields are refused");
		assert!(serde_json::from_str::<ProviderQuery>(r#"{"service":"email"}"#).is_err());
	}
}

/// A 64-bit counter (session id, sequence number, bytes, seconds) as a decimal string: it may
/// exceed 2^53. Reads a string, or a JSON number up to 2^53.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Counter(pub u64);

impl Serialize for Counter {
	fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
		s.collect_str(&self.0)
	}
}

impl<'de> Deserialize<'de> for Counter {
	fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
		let Amount(v) = Amount::deserialize(d)?;
		u64::try_from(v).map(Counter).map_err(|_| de::Error::custom("exceeds 2^64"))
	}
}

/// `"open"` or `"closing"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatusJson {
	/// In service.
	Open,
	/// Closed by the client; the provider can still settle until `settleUntil`.
	Closing,
}

/// One session (`escrow_*` methods).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson {
	/// The session's id.
	pub session_id: Counter,
	/// Who pays (SS58).
	pub client: String,
	/// Who serves (SS58).
	pub provider: String,
	/// `"vpn"` or `"cdn"`.
	pub service: ServiceJson,
	/// The ML-DSA-65 key that signs this session's receipts.
	pub client_key: interlattice_pq_crypto::MlDsaPublicKey,
	/// The session's nonce (`0x` hex, 32 bytes): every receipt of the session names it.
	pub nonce: String,
	/// Prices fixed for the session.
	pub prices: PricesJson,
	/// Total deposited.
	pub deposit: Amount,
	/// Cumulative amount settled (provider's pay plus protocol fee).
	pub settled: Amount,
	/// Still escrowed: `deposit - settled`.
	pub remaining: Amount,
	/// Sequence of the last settled receipt (0: none).
	pub sequence: Counter,
	/// Cumulative bytes of the last settled receipt.
	pub bytes: Counter,
	/// Cumulative seconds of the last settled receipt.
	pub seconds: Counter,
	/// Block of opening.
	pub opened_at: u32,
	/// Last block of service.
	pub expires_at: u32,
	/// Open or closing.
	pub status: SessionStatusJson,
	/// Last block in which receipts settle.
	pub settle_until: u32,
}

impl SessionJson {
	/// From the runtime API's answer.
	pub fn new(s: pallet_session_escrow::SessionInfo<AccountId32, u128, u32>, ss58_prefix: u16) -> Self {
		SessionJson {
			session_id: Counter(s.session_id),
			client: Account(s.client).to_ss58(ss58_prefix),
			provider: Account(s.provider).to_ss58(ss58_prefix),
			service: match s.service {
				ServiceKind::Vpn => ServiceJson::Vpn,
				ServiceKind::Cdn => ServiceJson::Cdn,
			},
			client_key: s.client_key,
			nonce: format!("0x{}", hex::encode(s.nonce)),
			prices: PricesJson { per_gib: Amount(s.prices.per_gib), per_hour: Amount(s.prices.per_hour) },
			deposit: Amount(s.deposit),
			settled: Amount(s.settled),
			remaining: Amount(s.deposit.saturating_sub(s.settled)),
			sequence: Counter(s.sequence),
			bytes: Counter(s.bytes),
			seconds: Counter(s.seconds),
			opened_at: s.opened_at,
			expires_at: s.expires_at,
			status: if s.closing { SessionStatusJson::Closing } else { SessionStatusJson::Open },
			settle_until: s.settle_until,
		}
	}
}

/// Paging of `escrow_providerSessions`: sessions come in storage order; a page starts after
/// the session `after` (the last one of the previous page).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPageQuery {
	/// Start after this session (default: from the first).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub after: Option<Counter>,
	/// Page size (default [`DEFAULT_PAGE_LIMIT`], at most
	/// [`pallet_session_escrow::MAX_SESSIONS_PAGE`]).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub limit: Option<u32>,
}

#[cfg(test)]
mod session_tests {
	use super::*;

	#[test]
	fn counters_are_strings_and_read_safely() {
		assert_eq!(serde_json::to_string(&Counter(u64::MAX)).unwrap(), format!("\"{}\"", u64::MAX));
		assert_eq!(serde_json::from_str::<Counter>("\"18446744073709551615\"").unwrap(), Counter(u64::MAX));
		assert_eq!(serde_json::from_str::<Counter>("7").unwrap(), Counter(7));
		assert!(serde_json::from_str::<Counter>("\"18446744073709551616\"").is_err());
		assert!(serde_json::from_str::<Counter>("\"x\"").is_err());
	}
}
