//! One `impl Config` per pallet. `#[derive_impl]` supplies the defaults; only what differs is
//! written here.

use frame_support::{
	derive_impl,
	dispatch::DispatchClass,
	parameter_types,
	traits::{ConstBool, ConstU128, ConstU32, ConstU64, ConstU8, VariantCountOf},
	weights::{
		constants::{ExtrinsicBaseWeight, ParityDbWeight, WEIGHT_REF_TIME_PER_SECOND},
		IdentityFee, Weight,
	},
};
use frame_system::limits::{BlockLength, BlockWeights};
use pallet_transaction_payment::{ConstFeeMultiplier, FungibleAdapter, Multiplier};
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_runtime::{traits::One, Perbill};
use sp_version::RuntimeVersion;

use super::{
	AccountId, Aura, Balance, Balances, Block, BlockNumber, Hash, Nonce, OriginCaller, PalletInfo, Runtime,
	RuntimeCall, RuntimeEvent, RuntimeFreezeReason, RuntimeHoldReason, RuntimeOrigin, RuntimeTask, System, DAYS,
	EXISTENTIAL_DEPOSIT, HOURS, SLOT_DURATION, SS58_PREFIX, UNIT, VERSION,
};

/// Share of a block's weight and length available to normal (non-operational) transactions.
const NORMAL_DISPATCH_RATIO: Perbill = Perbill::from_percent(75);
/// Most compute per block: two seconds.
const MAX_BLOCK_WEIGHT: Weight = Weight::from_parts(2u64 * WEIGHT_REF_TIME_PER_SECOND, u64::MAX);

parameter_types! {
	pub const BlockHashCount: BlockNumber = 2400;
	pub const Version: RuntimeVersion = VERSION;
	/// Two seconds of compute per six-second block, 75 % of it for normal transactions (as
	/// `BlockWeights::with_sensible_defaults`). Every transaction's base weight adds one
	/// storage read to Substrate's measured base: the signature check reads the account's
	/// ML-DSA key or lock (`crate::signature`). An ML-DSA-65 verification costs what an
	/// sr25519 one does (39.8 µs against 39.3 µs, `pallet_pq_weights`), which the base covers.
	pub RuntimeBlockWeights: BlockWeights = BlockWeights::builder()
		.for_class(DispatchClass::all(), |weights| {
			weights.base_extrinsic = ExtrinsicBaseWeight::get().saturating_add(ParityDbWeight::get().reads(1));
		})
		.for_class(DispatchClass::Normal, |weights| {
			weights.max_total = Some(NORMAL_DISPATCH_RATIO * MAX_BLOCK_WEIGHT);
		})
		.for_class(DispatchClass::Operational, |weights| {
			weights.max_total = Some(MAX_BLOCK_WEIGHT);
			weights.reserved = Some(MAX_BLOCK_WEIGHT.saturating_sub(NORMAL_DISPATCH_RATIO * MAX_BLOCK_WEIGHT));
		})
		.avg_block_initialization(Perbill::from_percent(10))
		.build_or_panic();
	/// 5 MiB blocks, of which normal transactions may fill `NORMAL_DISPATCH_RATIO`.
	pub RuntimeBlockLength: BlockLength = BlockLength::builder()
		.max_length(5 * 1024 * 1024)
		.modify_max_length_for_class(DispatchClass::Normal, |max| *max = NORMAL_DISPATCH_RATIO * *max)
		.build();
	pub const SS58Prefix: u16 = SS58_PREFIX;
}

#[derive_impl(frame_system::config_preludes::SolochainDefaultConfig)]
impl frame_system::Config for Runtime {
	type Block = Block;
	type BlockWeights = RuntimeBlockWeights;
	type BlockLength = RuntimeBlockLength;
	type AccountId = AccountId;
	type Nonce = Nonce;
	type Hash = Hash;
	type BlockHashCount = BlockHashCount;
	/// The node stores its state in ParityDB (see docs/decisions.md).
	type DbWeight = ParityDbWeight;
	type Version = Version;
	type AccountData = pallet_balances::AccountData<Balance>;
	type SS58Prefix = SS58Prefix;
	type MaxConsumers = ConstU32<16>;
}

impl pallet_aura::Config for Runtime {
	type AuthorityId = AuraId;
	type DisabledValidators = ();
	type MaxAuthorities = ConstU32<32>;
	type AllowMultipleBlocksPerSlot = ConstBool<false>;
	type SlotDuration = pallet_aura::MinimumPeriodTimesTwo<Runtime>;
}

impl pallet_grandpa::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type WeightInfo = ();
	type MaxAuthorities = ConstU32<32>;
	type MaxNominators = ConstU32<0>;
	type MaxSetIdSessionEntries = ConstU64<0>;
	type KeyOwnerProof = sp_core::Void;
	type EquivocationReportSystem = ();
}

impl pallet_timestamp::Config for Runtime {
	/// Milliseconds since the Unix epoch.
	type Moment = u64;
	type OnTimestampSet = Aura;
	type MinimumPeriod = ConstU64<{ SLOT_DURATION / 2 }>;
	type WeightInfo = pallet_timestamp::weights::SubstrateWeight<Runtime>;
}

impl pallet_balances::Config for Runtime {
	type MaxLocks = ConstU32<50>;
	type MaxReserves = ();
	type ReserveIdentifier = [u8; 8];
	type Balance = Balance;
	type RuntimeEvent = RuntimeEvent;
	type DustRemoval = ();
	type ExistentialDeposit = ConstU128<EXISTENTIAL_DEPOSIT>;
	type AccountStore = System;
	type WeightInfo = pallet_balances::weights::SubstrateWeight<Runtime>;
	type FreezeIdentifier = RuntimeFreezeReason;
	type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
	/// Stakes and escrows are holds, one reason per pallet that holds funds.
	type RuntimeHoldReason = RuntimeHoldReason;
	type RuntimeFreezeReason = RuntimeFreezeReason;
	type DoneSlashHandler = ();
}

parameter_types! {
	pub FeeMultiplier: Multiplier = Multiplier::one();
}

impl pallet_transaction_payment::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type OnChargeTransaction = FungibleAdapter<Balances, ()>;
	type OperationalFeeMultiplier = ConstU8<5>;
	/// One unit of fee per picosecond of weight: a full block's compute costs 2 LAT.
	type WeightToFee = IdentityFee<Balance>;
	/// One unit of fee per byte: a 100-byte transfer costs 100 of the smallest unit.
	type LengthToFee = IdentityFee<Balance>;
	type FeeMultiplierUpdate = ConstFeeMultiplier<FeeMultiplier>;
	type WeightInfo = pallet_transaction_payment::weights::SubstrateWeight<Runtime>;
}

impl pallet_sudo::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeCall = RuntimeCall;
	type WeightInfo = pallet_sudo::weights::SubstrateWeight<Runtime>;
}

impl pallet_utility::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeCall = RuntimeCall;
	type PalletsOrigin = OriginCaller;
	type WeightInfo = pallet_utility::weights::SubstrateWeight<Runtime>;
}

parameter_types! {
	/// Minimum bonded stake of an active provider: 1,000 LAT.
	pub const ProviderMinStake: Balance = 1_000 * UNIT;
	/// Unbonded stake stays held (and slashable) for 7 days: longer than any settlement or
	/// dispute window of the session escrow.
	pub const ProviderUnbondingPeriod: BlockNumber = 7 * DAYS;
	/// Slashed stake is burned until the chain has a treasury.
	pub const ProviderSlashDestination: Option<AccountId> = None;
}

impl pallet_provider_registry::Config for Runtime {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type MinStake = ProviderMinStake;
	type UnbondingPeriod = ProviderUnbondingPeriod;
	type MaxEndpoints = ConstU32<8>;
	type MaxEndpointLen = ConstU32<128>;
	type MaxRegionLen = ConstU32<64>;
	type MaxUnbondingChunks = ConstU32<16>;
	type MaxSlashReasonLen = ConstU32<256>;
	type SlashOrigin = frame_system::EnsureRoot<AccountId>;
	type SlashDestination = ProviderSlashDestination;
	type WeightInfo = crate::weights::pallet_provider_registry::WeightInfo<Runtime>;
}

#[cfg(feature = "runtime-benchmarks")]
impl pallet_pq_weights::Config for Runtime {}

parameter_types! {
	/// Smallest session deposit: one LAT.
	pub const SessionMinDeposit: Balance = UNIT;
	/// Longest session: three days.
	pub const MaxSessionDuration: BlockNumber = 3 * DAYS;
	/// The provider's last receipts settle up to an hour after a session ends. With
	/// `MaxSessionDuration` this stays far below the registry's seven-day unbonding period,
	/// so stake cannot leave while its sessions can still settle (`tests` below).
	pub const SessionSettlementWindow: BlockNumber = HOURS;
	/// 1 % of every settled amount is burned (no treasury yet; a later runtime can send it to
	/// one by setting `SessionFeeDestination`).
	pub const SessionProtocolFee: Perbill = Perbill::from_percent(1);
	pub const SessionFeeDestination: Option<AccountId> = None;
}

impl pallet_session_escrow::Config for Runtime {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type Registry = crate::ProviderRegistry;
	type MinDeposit = SessionMinDeposit;
	type MaxSessionDuration = MaxSessionDuration;
	type SettlementWindow = SessionSettlementWindow;
	type MaxSessionsPerClient = ConstU32<32>;
	/// 500 receipts of ~3.4 KB fill under half of a block's normal-class length.
	type MaxReceiptsPerBatch = ConstU32<500>;
	type ProtocolFee = SessionProtocolFee;
	type FeeDestination = SessionFeeDestination;
	type WeightInfo = crate::weights::pallet_session_escrow::WeightInfo<Runtime>;
}

parameter_types! {
	/// Storage deposit of an ML-DSA transaction key (about 2 KB of state): 0.1 LAT.
	pub const PqKeyDeposit: Balance = 100 * crate::MILLI_UNIT;
}

impl pallet_pq_accounts::Config for Runtime {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type KeyDeposit = PqKeyDeposit;
	type WeightInfo = crate::weights::pallet_pq_accounts::WeightInfo<Runtime>;
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn stake_unbonds_only_after_every_session_it_backs_has_settled() {
		let longest_settlement: BlockNumber = MaxSessionDuration::get() + SessionSettlementWindow::get();
		assert!(ProviderUnbondingPeriod::get() > longest_settlement);
	}

	#[test]
	fn a_full_batch_of_receipts_fits_in_a_block() {
		let receipt = <interlattice_pq_crypto::SignedUsageReceipt as codec::MaxEncodedLen>::max_encoded_len();
		let batch = receipt * 500 + 16;
		let normal = *RuntimeBlockLength::get().max.get(DispatchClass::Normal) as usize;
		assert!(batch < normal, "{batch} > {normal}");
	}
}
