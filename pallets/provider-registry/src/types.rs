//! The records the registry stores.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use frame_support::{
	pallet_prelude::*, traits::fungible::Inspect, CloneNoBound, DebugNoBound, EqNoBound, PartialEqNoBound,
};
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::MlDsaPublicKey;
use scale_info::TypeInfo;
use sp_runtime::Saturating;

use crate::Config;

/// Balance of the pallet's currency.
pub type BalanceOf<T> = <<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;
/// One network endpoint, e.g. `vpn.example.net:51820` or `https://cdn.example.net` (ASCII).
pub type EndpointOf<T> = BoundedVec<u8, <T as Config>::MaxEndpointLen>;
/// A provider's endpoints.
pub type EndpointsOf<T> = BoundedVec<EndpointOf<T>, <T as Config>::MaxEndpoints>;
/// A provider's location.
pub type LocationOf<T> = Location<<T as Config>::MaxRegionLen>;
/// A provider's record.
pub type ProviderRecordOf<T> = ProviderRecord<T>;
/// A provider's unbonding chunks.
pub type UnbondingOf<T> =
	BoundedVec<UnbondingChunk<BalanceOf<T>, BlockNumberFor<T>>, <T as Config>::MaxUnbondingChunks>;
/// Why a provider was slashed, in words (UTF-8, bounded).
pub type SlashReasonOf<T> = BoundedVec<u8, <T as Config>::MaxSlashReasonLen>;

/// One of the services of the marketplace.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	MaxEncodedLen,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
pub enum ServiceKind {
	/// Decentralised VPN: tunnels priced per GiB and per hour.
	Vpn,
	/// Decentralised CDN: content priced per GiB.
	Cdn,
}

/// The services a provider offers.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	MaxEncodedLen,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
pub enum Services {
	/// Only the VPN.
	Vpn,
	/// Only the CDN.
	Cdn,
	/// Both.
	Both,
}

impl Services {
	/// Whether `kind` is among these services.
	pub fn offers(self, kind: ServiceKind) -> bool {
		matches!(
			(self, kind),
			(Services::Both, _) | (Services::Vpn, ServiceKind::Vpn) | (Services::Cdn, ServiceKind::Cdn)
		)
	}
}

/// Where a provider's servers run, as far as it declares.
#[derive(
	CloneNoBound,
	PartialEqNoBound,
	EqNoBound,
	DebugNoBound,
	Encode,
	Decode,
	DecodeWithMemTracking,
	MaxEncodedLen,
	TypeInfo,
)]
#[scale_info(skip_type_params(MaxRegionLen))]
pub struct Location<MaxRegionLen: Get<u32>> {
	/// ISO 3166-1 alpha-2 country code, upper case ASCII (`DE`, `BR`, …).
	pub country: [u8; 2],
	/// Region or city, free UTF-8 text (may be empty).
	pub region: BoundedVec<u8, MaxRegionLen>,
	/// Whether the servers are in a data centre or on residential lines.
	pub hosting: Hosting,
}

/// Kind of network the provider's servers sit on.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	MaxEncodedLen,
	TypeInfo,
	Default,
	serde::Serialize,
	serde::Deserialize,
)]
pub enum Hosting {
	/// A data centre or cloud.
	#[default]
	Datacenter,
	/// A residential connection (harder to block by address range).
	Residential,
}

/// A provider's prices, in the smallest unit of the native token.
#[derive(
	Clone, Copy, PartialEq, Eq, Debug, Default, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo,
)]
pub struct Prices<Balance> {
	/// Price per GiB (2^30 bytes) transferred, both directions counted.
	pub per_gib: Balance,
	/// Price per hour of service, for time-priced services (the VPN); zero if not used.
	pub per_hour: Balance,
}

/// Where a provider is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
pub enum ProviderStatus {
	/// Registered; listed as active while its stake is at least the minimum.
	Registered,
	/// Deregistered: not listed, all stake unbonding; removed once everything is withdrawn.
	Deregistered,
}

/// Stake on its way out: withdrawable from block `unlock_at` on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
pub struct UnbondingChunk<Balance, BlockNumber> {
	/// Amount still held, slashable until withdrawn.
	pub amount: Balance,
	/// First block at which it can be withdrawn.
	pub unlock_at: BlockNumber,
}

/// Everything the registry knows about one provider.
#[derive(CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, MaxEncodedLen, TypeInfo)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct ProviderRecord<T: Config> {
	/// The services offered.
	pub services: Services,
	/// Network endpoints clients dial.
	pub endpoints: EndpointsOf<T>,
	/// Declared location.
	pub location: LocationOf<T>,
	/// Prices.
	pub prices: Prices<BalanceOf<T>>,
	/// ML-DSA-65 public key the provider's agent proves in handshakes.
	pub service_key: MlDsaPublicKey,
	/// Bonded stake (held, slashable). The provider is active while this is at least
	/// `MinStake` and it is registered.
	pub stake: BalanceOf<T>,
	/// Stake being unbonded (still held and slashable until withdrawn).
	pub unbonding: UnbondingOf<T>,
	/// Registered or deregistered.
	pub status: ProviderStatus,
	/// Block of registration.
	pub registered_at: BlockNumberFor<T>,
}

impl<T: Config> ProviderRecord<T> {
	/// Stake plus everything still unbonding: what the hold must equal.
	pub fn total_held(&self) -> BalanceOf<T> {
		self.unbonding.iter().fold(self.stake, |acc, c| acc.saturating_add(c.amount))
	}

	/// Whether the provider is listed as active given the minimum stake.
	pub fn is_active(&self, min_stake: BalanceOf<T>) -> bool {
		self.status == ProviderStatus::Registered && self.stake >= min_stake
	}
}

/// What the registry tells other pallets (the escrow) about a provider.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProviderSummary<Balance> {
	/// Services offered.
	pub services: Services,
	/// Current prices.
	pub prices: Prices<Balance>,
	/// The agent's ML-DSA-65 key.
	pub service_key: MlDsaPublicKey,
	/// Whether it is active (registered with at least the minimum stake).
	pub active: bool,
}

/// A provider registered at genesis (development and test networks), as a chain spec writes it:
/// `{"account": …, "services": "Vpn", "endpoints": ["…"], "country": "DE", "pricePerGib": …,
/// "pricePerHour": …, "serviceKey": "0x…", "stake": …}`, with `region` (default empty) and
/// `hosting` (default `Datacenter`) optional.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenesisProvider<AccountId, Balance> {
	/// The provider's account; genesis must endow it with at least `stake` plus the existential
	/// deposit.
	pub account: AccountId,
	/// The services it offers.
	pub services: Services,
	/// Its endpoints, as text.
	pub endpoints: alloc::vec::Vec<alloc::string::String>,
	/// ISO 3166-1 alpha-2 country code, upper case.
	pub country: alloc::string::String,
	/// Region or city (may be empty).
	#[serde(default)]
	pub region: alloc::string::String,
	/// Whether its servers are in a data centre or on residential lines.
	#[serde(default)]
	pub hosting: Hosting,
	/// Price per GiB transferred.
	pub price_per_gib: Balance,
	/// Price per hour of session.
	pub price_per_hour: Balance,
	/// Its ML-DSA-65 service key (receipts are signed to it).
	pub service_key: MlDsaPublicKey,
	/// Stake held from its account.
	pub stake: Balance,
}
