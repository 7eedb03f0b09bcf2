//! Native cost of one ML-DSA-65 verification (what the host function runs) next to sr25519
//! and ed25519 verification, the schemes Substrate's own host functions verify.
//!
//! `cargo bench -p interlattice-pq-crypto --bench verify`; results in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, verify, UsageReceipt};
use sp_core::{ed25519, sr25519, Pair};

fn bench(c: &mut Criterion) {
	let receipt = UsageReceipt {
		genesis_hash: [1; 32],
		provider: [5; 32],
		session_id: 1,
		session_nonce: [6; 32],
		sequence: 1,
		bytes: 1 << 30,
		seconds: 3600,
		amount: 1_000_000_000_000,
	};
	let message = receipt.signing_payload();

	let ml_dsa = MlDsaKeyPair::from_seed([3; 32]);
	let ml_dsa_sig = ml_dsa.sign(&message).unwrap();
	c.bench_function("ml_dsa_65_verify", |b| b.iter(|| assert!(verify(ml_dsa.public(), &message, &ml_dsa_sig))));
	// libcrux's portable code, for comparison: `verify` above picks AVX2 at run time on x86-64.
	let (pk, sig) = (
		libcrux_ml_dsa::MLDSAVerificationKey::new(ml_dsa.public().0),
		libcrux_ml_dsa::MLDSASignature::new(ml_dsa_sig.0),
	);
	c.bench_function("ml_dsa_65_verify_portable", |b| {
		b.iter(|| {
			assert!(libcrux_ml_dsa::ml_dsa_65::portable::verify(&pk, &message, interlattice_pq_crypto::CONTEXT, &sig)
				.is_ok())
		})
	});
	c.bench_function("ml_dsa_65_sign", |b| b.iter(|| ml_dsa.sign(&message).unwrap()));

	let sr = sr25519::Pair::from_seed(&[3; 32]);
	let sr_sig = sr.sign(&message);
	let sr_pub = sr.public();
	c.bench_function("sr25519_verify", |b| b.iter(|| assert!(sr25519::Pair::verify(&sr_sig, &message, &sr_pub))));

	let ed = ed25519::Pair::from_seed(&[3; 32]);
	let ed_sig = ed.sign(&message);
	let ed_pub = ed.public();
	c.bench_function("ed25519_verify", |b| b.iter(|| assert!(ed25519::Pair::verify(&ed_sig, &message, &ed_pub))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
