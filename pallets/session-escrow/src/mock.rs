//! A test runtime: system, real balances, the real provider registry, and the escrow.

use frame_support::{derive_impl, parameter_types, traits::ConstU32};
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use pallet_provider_registry::{Hosting, Location, Prices, Services};
use sp_runtime::{BuildStorage, Perbill};

use crate as pallet_session_escrow;

type Block = frame_system::mocking::MockBlock<Test>;
pub type AccountId = u64;
pub type Balance = u128;

#[frame_support::runtime]
mod runtime {
	#[runtime::runtime]
	#[runtime::derive(
		RuntimeCall,
		RuntimeEvent,
		RuntimeError,
		RuntimeOrigin,
		RuntimeHoldReason,
		RuntimeFreezeReason,
		RuntimeTask,
		RuntimeViewFunction
	)]
	pub struct Test;

	#[runtime::pallet_index(0)]
	pub type System = frame_system;
	#[runtime::pallet_index(1)]
	pub type Balances = pallet_balances;
	#[runtime::pallet_index(2)]
	pub type Registry = pallet_provider_registry;
	#[runtime::pallet_index(3)]
	pub type Escrow = pallet_session_escrow;
}

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
	type Block = Block;
	type AccountData = pallet_balances::AccountData<Balance>;
}

#[derive_impl(pallet_balances::config_preludes::TestDefaultConfig)]
impl pallet_balances::Config for Test {
	type Balance = Balance;
	type AccountStore = System;
	type RuntimeHoldReason = RuntimeHoldReason;
}

parameter_types! {
	pub const MinStake: Balance = 1_000;
	pub const UnbondingPeriod: u64 = 1_000;
}

impl pallet_provider_registry::Config for Test {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type MinStake = MinStake;
	type UnbondingPeriod = UnbondingPeriod;
	type MaxEndpoints = ConstU32<2>;
	type MaxEndpointLen = ConstU32<64>;
	type MaxRegionLen = ConstU32<32>;
	type MaxUnbondingChunks = ConstU32<3>;
	type MaxSlashReasonLen = ConstU32<64>;
	type SlashOrigin = frame_system::EnsureRoot<AccountId>;
	type SlashDestination = ();
	type WeightInfo = ();
}

pub const MIN_DEPOSIT: Balance = 100;
pub const MAX_DURATION: u64 = 500;
pub const WINDOW: u64 = 50;
pub const MAX_SESSIONS: u32 = 4;
pub const MAX_BATCH: u32 = 8;
pub const TREASURY: AccountId = 99;
pub const GENESIS: [u8; 32] = [0x42; 32];

parameter_types! {
	pub const MinDeposit: Balance = MIN_DEPOSIT;
	pub const MaxSessionDuration: u64 = MAX_DURATION;
	pub const SettlementWindow: u64 = WINDOW;
	pub static Fee: Perbill = Perbill::zero();
	pub static FeeTo: Option<AccountId> = Some(TREASURY);
}

impl crate::Config for Test {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type Registry = Registry;
	type MinDeposit = MinDeposit;
	type MaxSessionDuration = MaxSessionDuration;
	type SettlementWindow = SettlementWindow;
	type MaxSessionsPerClient = ConstU32<MAX_SESSIONS>;
	type MaxReceiptsPerBatch = ConstU32<MAX_BATCH>;
	type ProtocolFee = Fee;
	type FeeDestination = FeeTo;
	type WeightInfo = ();
}

/// The providers of the test runtime.
pub const VPN_PROVIDER: AccountId = 10;
pub const CDN_PROVIDER: AccountId = 11;
pub const CLIENT: AccountId = 1;
pub const OTHER_CLIENT: AccountId = 2;
pub const POOR: AccountId = 3;
pub const INITIAL: Balance = 1_000_000;

/// Prices chosen so that costs are readable: the VPN costs 1 unit per MiB and 1 per second,
/// the CDN 2 units per MiB.
pub const VPN_PRICES: Prices<Balance> = Prices { per_gib: 1024, per_hour: 3600 };
pub const CDN_PRICES: Prices<Balance> = Prices { per_gib: 2048, per_hour: 0 };
pub const MIB: u64 = 1 << 20;

/// The ML-DSA-65 key pair of client key number `n`.
pub fn client_key(n: u8) -> MlDsaKeyPair {
	MlDsaKeyPair::from_seed([n; 32])
}

/// Test externalities with funded accounts and two active providers; checks the pallets'
/// invariants after the test.
pub fn new_test_ext() -> TestExternalities {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> {
		balances: vec![
			(CLIENT, INITIAL),
			(OTHER_CLIENT, INITIAL),
			(POOR, 150),
			(VPN_PROVIDER, INITIAL),
			(CDN_PROVIDER, INITIAL),
			(TREASURY, 10),
		],
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	pallet_session_escrow::GenesisConfig::<Test>::default().assimilate_storage(&mut storage).unwrap();
	let mut ext = sp_io::TestExternalities::new(storage);
	ext.execute_with(|| {
		System::set_block_number(1);
		frame_system::BlockHash::<Test>::insert(0, sp_core::H256(GENESIS));
		for (who, services, prices, seed) in
			[(VPN_PROVIDER, Services::Vpn, VPN_PRICES, 200u8), (CDN_PROVIDER, Services::Cdn, CDN_PRICES, 201)]
		{
			Registry::register_provider(
				RuntimeOrigin::signed(who),
				services,
				vec![b"203.0.113.1:7310".to_vec().try_into().unwrap()].try_into().unwrap(),
				Location { country: *b"DE", region: Default::default(), hosting: Hosting::Datacenter },
				prices,
				Box::new(MlDsaKeyPair::from_seed([seed; 32]).public().clone()),
				10_000,
			)
			.unwrap();
		}
	});
	TestExternalities(ext)
}

/// Runs the pallets' `try_state` after every test body.
pub struct TestExternalities(pub sp_io::TestExternalities);

impl TestExternalities {
	pub fn execute_with<R>(mut self, f: impl FnOnce() -> R) -> R {
		self.0.execute_with(|| {
			let r = f();
			Escrow::do_try_state().expect("escrow invariants hold after the test");
			r
		})
	}
}
