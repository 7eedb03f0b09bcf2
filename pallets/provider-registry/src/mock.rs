//! A test runtime: system, real balances, and the registry.

use frame_support::{derive_impl, parameter_types, traits::ConstU32};
use sp_runtime::BuildStorage;

use crate as pallet_provider_registry;

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

pub const MIN_STAKE: Balance = 1_000;
pub const UNBONDING_PERIOD: u64 = 100;
pub const TREASURY: AccountId = 99;

parameter_types! {
	pub const MinStake: Balance = MIN_STAKE;
	pub const UnbondingPeriod: u64 = UNBONDING_PERIOD;
	pub static SlashTo: Option<AccountId> = Some(TREASURY);
}

impl crate::Config for Test {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type MinStake = MinStake;
	type UnbondingPeriod = UnbondingPeriod;
	type MaxEndpoints = ConstU32<4>;
	type MaxEndpointLen = ConstU32<64>;
	type MaxRegionLen = ConstU32<32>;
	type MaxUnbondingChunks = ConstU32<3>;
	type MaxSlashReasonLen = ConstU32<64>;
	type SlashOrigin = frame_system::EnsureRoot<AccountId>;
	type SlashDestination = SlashTo;
	type WeightInfo = ();
}

pub const ALICE: AccountId = 1;
pub const BOB: AccountId = 2;
pub const CHARLIE: AccountId = 3;
pub const POOR: AccountId = 4;

/// Test externalities with funded accounts; checks the pallet's invariants after the test.
pub fn new_test_ext() -> TestExternalities {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> {
		balances: vec![(ALICE, 100_000), (BOB, 100_000), (CHARLIE, 100_000), (POOR, 500), (TREASURY, 10)],
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	let mut ext = sp_io::TestExternalities::new(storage);
	ext.execute_with(|| System::set_block_number(1));
	TestExternalities(ext)
}

/// Externalities as [`new_test_ext`]'s, without the `try_state` check at the end: for tests
/// that write records straight into storage (the index's property test).
pub fn new_unchecked_ext() -> sp_io::TestExternalities {
	new_test_ext().0
}

/// Runs `try_state` after every test body.
pub struct TestExternalities(sp_io::TestExternalities);

impl TestExternalities {
	pub fn execute_with<R>(mut self, f: impl FnOnce() -> R) -> R {
		self.0.execute_with(|| {
			let r = f();
			Registry::do_try_state().expect("invariants hold after the test");
			r
		})
	}
}

/// Plain externalities for the benchmark test suite.
#[cfg(feature = "runtime-benchmarks")]
pub fn new_test_ext_for_benchmarks() -> sp_io::TestExternalities {
	let storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	let mut ext = sp_io::TestExternalities::new(storage);
	ext.execute_with(|| System::set_block_number(1));
	ext
}
