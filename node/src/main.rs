//! The Interlattice node binary: everything lives in the library crate.

fn main() -> sc_cli::Result<()> {
	interlattice_node::command::run()
}
