fn main() {
	// Under `cargo clippy` the workspace wrapper (clippy-driver of the native toolchain) would
	// also wrap the Wasm build, which uses another toolchain (`WASM_BUILD_TOOLCHAIN`) and then
	// fails its target check. The Wasm build is not linted; the runtime's native build is.
	std::env::remove_var("RUSTC_WORKSPACE_WRAPPER");
	#[cfg(feature = "std")]
	substrate_wasm_builder::WasmBuilder::build_using_defaults();
}
