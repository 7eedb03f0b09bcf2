//! TLS for the agents and their clients (the dCDN's HTTPS, the dVPN's HTTPS transport): rustls with the *ring* provider, preferring the hybrid
//! post-quantum key exchange **X25519MLKEM768** (draft-ietf-tls-ecdhe-mlkem, code point
//! 0x11EC) built here from ML-KEM-768 (`libcrux-ml-kem`, the crate the dVPN handshake uses)
//! and ring's X25519. Peers without it (OpenSSL before 3.5, older browsers) negotiate X25519.
//!
//! Wire format of the group: the client's key share is the ML-KEM-768 encapsulation key
//! (1184 bytes) followed by its X25519 public key (32); the server's is the ML-KEM-768
//! ciphertext (1088) followed by its X25519 public key (32); the shared secret is the ML-KEM
//! shared secret (32) followed by the X25519 shared secret (32).

use std::{path::Path, sync::Arc};

use libcrux_ml_kem::mlkem768;
use rustls::{
	client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
	crypto::{ring, ActiveKeyExchange, CompletedKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup},
	pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
	ClientConfig, DigitallySignedStruct, NamedGroup, ProtocolVersion, RootCertStore, SignatureScheme,
};
use zeroize::Zeroizing;

const EK_LEN: usize = 1184;
const CT_LEN: usize = 1088;
const X25519_LEN: usize = 32;

/// The hybrid group, for a provider's `kx_groups`.
pub static X25519MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

#[derive(Debug)]
struct X25519MlKem768;

fn invalid_share() -> rustls::Error {
	rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare)
}

fn random<const N: usize>() -> Result<[u8; N], rustls::Error> {
	let mut out = [0u8; N];
	getrandom::fill(&mut out).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
	Ok(out)
}

impl SupportedKxGroup for X25519MlKem768 {
	fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
		let pair = mlkem768::generate_key_pair(random::<64>()?);
		let classical = ring::kx_group::X25519.start()?;
		let mut pub_key = pair.public_key().as_slice().to_vec();
		pub_key.extend_from_slice(classical.pub_key());
		let private = Zeroizing::new(*pair.private_key().as_slice());
		Ok(Box::new(Active { private, classical, pub_key }))
	}

	fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
		if client_share.len() != EK_LEN + X25519_LEN {
			return Err(invalid_share());
		}
		let ek: [u8; EK_LEN] = client_share[..EK_LEN].try_into().map_err(|_| invalid_share())?;
		let ek = mlkem768::MlKem768PublicKey::from(ek);
		if !mlkem768::validate_public_key(&ek) {
			return Err(invalid_share());
		}
		let (ciphertext, pq_secret) = mlkem768::encapsulate(&ek, random::<32>()?);
		let classical = ring::kx_group::X25519.start_and_complete(&client_share[EK_LEN..])?;
		let mut pub_key = ciphertext.as_slice().to_vec();
		pub_key.extend_from_slice(&classical.pub_key);
		let mut secret = Zeroizing::new(pq_secret.to_vec());
		secret.extend_from_slice(classical.secret.secret_bytes());
		Ok(CompletedKeyExchange { group: self.name(), pub_key, secret: SharedSecret::from(&secret[..]) })
	}

	fn name(&self) -> NamedGroup {
		NamedGroup::X25519MLKEM768
	}

	fn usable_for_version(&self, version: ProtocolVersion) -> bool {
		version == ProtocolVersion::TLSv1_3
	}
}

struct Active {
	private: Zeroizing<[u8; 2400]>,
	classical: Box<dyn ActiveKeyExchange>,
	pub_key: Vec<u8>,
}

impl ActiveKeyExchange for Active {
	fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, rustls::Error> {
		if server_share.len() != CT_LEN + X25519_LEN {
			return Err(invalid_share());
		}
		let ct: [u8; CT_LEN] = server_share[..CT_LEN].try_into().map_err(|_| invalid_share())?;
		let private = mlkem768::MlKem768PrivateKey::from(*self.private);
		let pq_secret = Zeroizing::new(mlkem768::decapsulate(&private, &mlkem768::MlKem768Ciphertext::from(ct)));
		let classical = self.classical.complete(&server_share[CT_LEN..])?;
		let mut secret = Zeroizing::new(pq_secret.to_vec());
		secret.extend_from_slice(classical.secret_bytes());
		Ok(SharedSecret::from(&secret[..]))
	}

	fn pub_key(&self) -> &[u8] {
		&self.pub_key
	}

	fn group(&self) -> NamedGroup {
		NamedGroup::X25519MLKEM768
	}
}

/// ring's provider with X25519MLKEM768 first: offered and preferred, X25519 and the NIST
/// curves after it.
pub fn provider() -> Arc<CryptoProvider> {
	let mut p = ring::default_provider();
	p.kx_groups.insert(0, X25519MLKEM768);
	Arc::new(p)
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
	/// A PEM file is missing or malformed.
	#[error("{path}: {message}")]
	Pem {
		/// The file.
		path: String,
		/// What is wrong.
		message: String,
	},
	/// rustls refused the configuration (e.g. the key does not match the certificate).
	#[error("TLS configuration: {0}")]
	Config(#[from] rustls::Error),
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
	let pem = |message: String| TlsError::Pem { path: path.display().to_string(), message };
	let certs = CertificateDer::pem_file_iter(path)
		.map_err(|e| pem(e.to_string()))?
		.collect::<Result<Vec<_>, _>>()
		.map_err(|e| pem(e.to_string()))?;
	if certs.is_empty() {
		return Err(pem("no certificate in the file".into()));
	}
	Ok(certs)
}

/// A certificate chain and its private key from PEM files.
pub fn load_certificate(
	certificate: &Path,
	private_key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
	let certs = certificates(certificate)?;
	let key = PrivateKeyDer::from_pem_file(private_key)
		.map_err(|e| TlsError::Pem { path: private_key.display().to_string(), message: e.to_string() })?;
	Ok((certs, key))
}

/// The client's TLS configuration, trusting the certificates in `ca` (PEM) — an agent's own
/// self-signed certificate or a private CA.
pub fn client_config(ca: &Path) -> Result<ClientConfig, TlsError> {
	let mut roots = RootCertStore::empty();
	for cert in certificates(ca)? {
		roots.add(cert).map_err(TlsError::Config)?;
	}
	let mut config = ClientConfig::builder_with_provider(provider())
		.with_safe_default_protocol_versions()?
		.with_root_certificates(roots)
		.with_no_client_auth();
	config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
	Ok(config)
}

/// A self-signed certificate (ECDSA P-256) for `names` and its key, for an agent that has no
/// certificate of its own.
#[cfg(feature = "agent")]
pub fn self_signed(names: Vec<String>) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
	let cert = rcgen::generate_simple_self_signed(names)
		.map_err(|e| TlsError::Config(rustls::Error::General(format!("cannot make a certificate: {e}"))))?;
	let der = cert
		.serialize_der()
		.map_err(|e| TlsError::Config(rustls::Error::General(format!("cannot make a certificate: {e}"))))?;
	let key = PrivateKeyDer::try_from(cert.serialize_private_key_der())
		.map_err(|e| TlsError::Config(rustls::Error::General(e.into())))?;
	Ok((vec![CertificateDer::from(der)], key))
}

/// A client configuration that accepts any certificate but still checks that the server
/// holds the certificate's key (the handshake signature): for a channel whose peer is
/// authenticated inside it (the dVPN's post-quantum handshake signs with the provider's
/// registered ML-DSA key, and its capability is bound to this TLS connection), where TLS
/// only has to look like any HTTPS. ALPN `h2` and `http/1.1`, as browsers offer.
pub fn client_config_authenticated_inside() -> Result<ClientConfig, TlsError> {
	let provider = provider();
	let mut config = ClientConfig::builder_with_provider(provider.clone())
		.with_safe_default_protocol_versions()?
		.dangerous()
		.with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
		.with_no_client_auth();
	config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
	Ok(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
	fn verify_server_cert(
		&self,
		_end_entity: &CertificateDer<'_>,
		_intermediates: &[CertificateDer<'_>],
		_server_name: &ServerName<'_>,
		_ocsp_response: &[u8],
		_now: UnixTime,
	) -> Result<ServerCertVerified, rustls::Error> {
		Ok(ServerCertVerified::assertion())
	}

	fn verify_tls12_signature(
		&self,
		message: &[u8],
		cert: &CertificateDer<'_>,
		dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, rustls::Error> {
		rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
	}

	fn verify_tls13_signature(
		&self,
		message: &[u8],
		cert: &CertificateDer<'_>,
		dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, rustls::Error> {
		rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
	}

	fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
		self.0.signature_verification_algorithms.supported_schemes()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn both_sides_derive_the_same_hybrid_secret_and_refuse_bad_shares() {
		let client = X25519MLKEM768.start().unwrap();
		assert_eq!(client.pub_key().len(), EK_LEN + X25519_LEN);
		let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
		assert_eq!(server.pub_key.len(), CT_LEN + X25519_LEN);
		let server_secret = server.secret.secret_bytes().to_vec();
		assert_eq!(server_secret.len(), 64);
		let client_secret = client.complete(&server.pub_key).unwrap();
		assert_eq!(client_secret.secret_bytes(), &server_secret[..]);

		// Wrong lengths, an all-zero X25519 key, a tampered ciphertext.
		assert!(X25519MLKEM768.start_and_complete(&[0u8; 10]).is_err());
		let mut low_order = X25519MLKEM768.start().unwrap().pub_key().to_vec();
		low_order[EK_LEN..].fill(0);
		assert!(X25519MLKEM768.start_and_complete(&low_order).is_err());
		assert!(X25519MLKEM768.start().unwrap().complete(&[1u8; 5]).is_err());
		let client = X25519MLKEM768.start().unwrap();
		let mut server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
		let expected = server.secret.secret_bytes().to_vec();
		server.pub_key[7] ^= 1;
		let tampered = client.complete(&server.pub_key).unwrap();
		assert_ne!(tampered.secret_bytes(), &expected[..], "ML-KEM's implicit rejection gives another secret");
	}
}
