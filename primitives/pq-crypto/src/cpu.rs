//! The CPU features native Interlattice binaries are compiled for, checked at start-up.
//!
//! On x86-64 the workspace compiles native code with AVX2 (`.cargo/config.toml`): libcrux's
//! AVX2 ML-DSA code is selected at run time either way, but only with AVX2 enabled at compile
//! time do its SHA-3 helpers inline their intrinsics, which makes an ML-DSA-65 verification
//! ~1.7× faster (docs/benchmarks.md, docs/decisions.md). A binary built that way stops with an
//! illegal instruction on a CPU without AVX2 (before 2013); [`check`] turns that into a clear
//! error, and the README says how to build for such a CPU.

/// A CPU feature this binary was compiled to use is missing on the CPU running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
	"this binary was compiled for CPUs with {0}, which this CPU lacks; rebuild it for this \
	 CPU with RUSTFLAGS=\"-C target-cpu=native\" (see the README, \"Building\")"
)]
pub struct MissingCpuFeature(pub &'static str);

/// Checks that the CPU running this binary has every instruction-set extension the binary was
/// compiled to require. Call it first thing in `main`.
pub fn check() -> Result<(), MissingCpuFeature> {
	#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
	if !x86_64_has_avx2() {
		return Err(MissingCpuFeature("AVX2"));
	}
	Ok(())
}

/// AVX2 detected with CPUID and XGETBV directly: `is_x86_feature_detected!` answers `true`
/// without asking the CPU when the feature is enabled at compile time, which is exactly the
/// case to check here.
#[cfg(target_arch = "x86_64")]
pub fn x86_64_has_avx2() -> bool {
	use core::arch::x86_64::{__cpuid, __cpuid_count};
	let leaf1 = __cpuid(1);
	let (osxsave, avx) = (leaf1.ecx & (1 << 27) != 0, leaf1.ecx & (1 << 28) != 0);
	if !(osxsave && avx) {
		return false;
	}
	// XGETBV(0): the OS saves the SSE (bit 1) and AVX (bit 2) register state.
	let xcr0: u64 = {
		let (eax, edx): (u32, u32);
		// SAFETY: OSXSAVE is set, so XGETBV is available and enabled by the OS.
		unsafe {
			core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") eax, out("edx") edx, options(nomem, nostack, preserves_flags));
		}
		(u64::from(edx) << 32) | u64::from(eax)
	};
	if xcr0 & 0b110 != 0b110 {
		return false;
	}
	// Leaf 7 exists when the maximum leaf is at least 7.
	__cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 5) != 0
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn this_machine_runs_what_it_was_built_for() {
		assert_eq!(check(), Ok(()));
	}

	#[cfg(target_arch = "x86_64")]
	#[test]
	fn direct_detection_agrees_with_std_when_not_compiled_in() {
		// std's run-time detection only asks the CPU when AVX2 is not a compile-time feature;
		// when it is, the binary already ran AVX2 code, so the CPU has it.
		if cfg!(target_feature = "avx2") {
			assert!(x86_64_has_avx2());
		} else {
			assert_eq!(x86_64_has_avx2(), std::arch::is_x86_feature_detected!("avx2"));
		}
	}
}
