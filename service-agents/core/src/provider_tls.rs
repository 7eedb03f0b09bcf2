//! TLS authenticated by a provider's registered ML-DSA-65 service key: no certificate
//! authority, no classical signature between a client and the key the chain lists.
//!
//! The agent holds an X.509 certificate whose subject public key is its ML-DSA-65 service key
//! (`id-ml-dsa-65`, RFC 9881; self-signed with it) and signs TLS 1.3's CertificateVerify with
//! that key (signature scheme `mldsa65`, 0x0905, draft-ietf-tls-mldsa). A client that offers
//! `mldsa65` gets that certificate; any other client (a browser, curl) gets the agent's
//! ordinary certificate (configured, or self-signed ECDSA). Our client offers only `mldsa65`
//! and TLS 1.3 and accepts a server only if the certificate's key is the one registered
//! on-chain for the provider it dials ([`PinnedProviderKeys`]). Together with the hybrid key
//! exchange (X25519MLKEM768) this makes the whole channel post-quantum: a quantum adversary
//! can neither read it later nor stand in the middle now.

use std::{
	collections::HashMap,
	sync::{Arc, RwLock},
};

use interlattice_pq_crypto::{
	keys::MlDsaKeyPair, verify_tls, MlDsaPublicKey, MlDsaSignature, ML_DSA_65_PUBLIC_KEY_LEN, ML_DSA_65_SIGNATURE_LEN,
};
use rustls::{
	client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
	pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
	server::{ClientHello, ResolvesServerCert},
	sign::{CertifiedKey, Signer, SigningKey},
	CertificateError, ClientConfig, DigitallySignedStruct, Error, ServerConfig, SignatureAlgorithm, SignatureScheme,
};

use crate::tls::{provider, TlsError};

/// `id-ml-dsa-65` (2.16.840.1.101.3.4.3.18), the content of its DER OBJECT IDENTIFIER.
const ID_ML_DSA_65: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12];
/// `id-at-commonName` (2.5.4.3).
const ID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OBJECT_IDENTIFIER: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// One DER element: `tag`, definite length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
	let mut out = vec![tag];
	let len = content.len();
	if len < 0x80 {
		out.push(len as u8);
	} else {
		let bytes = len.to_be_bytes();
		let skip = bytes.iter().take_while(|b| **b == 0).count();
		out.push(0x80 | (bytes.len() - skip) as u8);
		out.extend_from_slice(&bytes[skip..]);
	}
	out.extend_from_slice(content);
	out
}

/// Reads one DER element off `input`: its tag, its content and what follows. `None` if it is
/// truncated, uses an indefinite or non-minimal length, or is longer than the input.
fn read_der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
	let (&tag, rest) = input.split_first()?;
	let (&first, rest) = rest.split_first()?;
	let (len, rest) = if first < 0x80 {
		(first as usize, rest)
	} else {
		let n = (first & 0x7f) as usize;
		if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
			return None;
		}
		let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
		if len < 0x80 {
			return None;
		}
		(len, &rest[n..])
	};
	(rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
	read_der(input).and_then(|(t, content, rest)| (t == tag).then_some((content, rest)))
}

fn ml_dsa_algorithm() -> Vec<u8> {
	der(SEQUENCE, &der(OBJECT_IDENTIFIER, ID_ML_DSA_65))
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
	let mut content = vec![0u8];
	content.extend_from_slice(bytes);
	der(BIT_STRING, &content)
}

/// The agent's certificate: X.509 v3, subject and issuer `CN=name`, valid from 2025 with no
/// end (RFC 5280's 99991231235959Z), subject public key the ML-DSA-65 `key`, self-signed.
pub fn certificate(key: &MlDsaKeyPair, name: &str) -> Result<CertificateDer<'static>, TlsError> {
	let mut serial = [0u8; 16];
	getrandom::fill(&mut serial).map_err(|e| TlsError::Config(Error::General(e.to_string())))?;
	serial[0] = (serial[0] & 0x7f) | 0x40;
	let name = der(
		SEQUENCE,
		&der(
			SET,
			&der(SEQUENCE, &[der(OBJECT_IDENTIFIER, ID_COMMON_NAME), der(UTF8_STRING, name.as_bytes())].concat()),
		),
	);
	let validity =
		der(SEQUENCE, &[der(UTC_TIME, b"250101000000Z"), der(GENERALIZED_TIME, b"99991231235959Z")].concat());
	let public_key_info = der(SEQUENCE, &[ml_dsa_algorithm(), bit_string(key.public().as_ref())].concat());
	let to_be_signed = der(
		SEQUENCE,
		&[
			der(VERSION, &der(INTEGER, &[2])),
			der(INTEGER, &serial),
			ml_dsa_algorithm(),
			name.clone(),
			validity,
			name,
			public_key_info,
		]
		.concat(),
	);
	let signature = key.sign_tls(&to_be_signed).map_err(|e| TlsError::Config(Error::General(e.to_string())))?;
	Ok(CertificateDer::from(der(
		SEQUENCE,
		&[to_be_signed, ml_dsa_algorithm(), bit_string(signature.as_ref())].concat(),
	)))
}

/// The ML-DSA-65 public key of a certificate, if its subject public key is one.
pub fn public_key_of(certificate: &[u8]) -> Option<MlDsaPublicKey> {
	let (certificate, _) = expect(certificate, SEQUENCE)?;
	let (mut fields, _) = expect(certificate, SEQUENCE)?;
	if let Some((VERSION, _, rest)) = read_der(fields) {
		fields = rest;
	}
	// serialNumber, signature, issuer, validity, subject; then subjectPublicKeyInfo.
	for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
		fields = expect(fields, tag)?.1;
	}
	let (info, _) = expect(fields, SEQUENCE)?;
	let (algorithm, rest) = expect(info, SEQUENCE)?;
	let (oid, parameters) = expect(algorithm, OBJECT_IDENTIFIER)?;
	let (bits, _) = expect(rest, BIT_STRING)?;
	let key = bits.strip_prefix(&[0u8])?;
	if oid != ID_ML_DSA_65 || !parameters.is_empty() || key.len() != ML_DSA_65_PUBLIC_KEY_LEN {
		return None;
	}
	let mut bytes = [0u8; ML_DSA_65_PUBLIC_KEY_LEN];
	bytes.copy_from_slice(key);
	Some(MlDsaPublicKey(bytes))
}

/// The service key as a rustls signing key (TLS 1.3, `mldsa65` only).
struct ServiceSigningKey(Arc<MlDsaKeyPair>);

impl std::fmt::Debug for ServiceSigningKey {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		write!(f, "ServiceSigningKey({:?})", self.0.public())
	}
}

impl SigningKey for ServiceSigningKey {
	fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
		offered
			.contains(&SignatureScheme::ML_DSA_65)
			.then(|| Box::new(ServiceSigningKey(self.0.clone())) as Box<dyn Signer>)
	}

	fn algorithm(&self) -> SignatureAlgorithm {
		SignatureAlgorithm::Unknown(0x05)
	}
}

impl Signer for ServiceSigningKey {
	fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
		self.0.sign_tls(message).map(|s| s.as_ref().to_vec()).map_err(|e| Error::General(e.to_string()))
	}

	fn scheme(&self) -> SignatureScheme {
		SignatureScheme::ML_DSA_65
	}
}

/// Picks the certificate per client: the service-key certificate for a client that offers
/// `mldsa65`, the ordinary one for every other.
#[derive(Debug)]
struct ByClient {
	service_key: Arc<CertifiedKey>,
	ordinary: Arc<CertifiedKey>,
}

impl ResolvesServerCert for ByClient {
	fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
		Some(if hello.signature_schemes().contains(&SignatureScheme::ML_DSA_65) {
			self.service_key.clone()
		} else {
			self.ordinary.clone()
		})
	}
}

/// The agent's TLS configuration: `service_key`'s certificate for our clients, `ordinary`
/// (a certificate chain and its key) for the rest; TLS 1.3 and 1.2, ALPN `h2` and
/// `http/1.1`, X25519MLKEM768 preferred.
pub fn server_config(
	service_key: Arc<MlDsaKeyPair>,
	name: &str,
	ordinary: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Result<ServerConfig, TlsError> {
	let provider = provider();
	let (chain, key) = ordinary;
	let ordinary = Arc::new(CertifiedKey::new(chain, provider.key_provider.load_private_key(key)?));
	let service_key =
		Arc::new(CertifiedKey::new(vec![certificate(&service_key, name)?], Arc::new(ServiceSigningKey(service_key))));
	let mut config = ServerConfig::builder_with_provider(provider)
		.with_safe_default_protocol_versions()?
		.with_no_client_auth()
		.with_cert_resolver(Arc::new(ByClient { service_key, ordinary }));
	config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
	Ok(config)
}

/// The registered service keys of the providers a client dials, by host: a server is
/// accepted only with one of the keys pinned for the host it was dialled as.
#[derive(Debug, Default)]
pub struct PinnedProviderKeys {
	pins: RwLock<HashMap<String, Vec<MlDsaPublicKey>>>,
}

/// The host of `endpoint` (`https://host:port/…`, `host:port`, `[v6]:port`) as the
/// verifier sees it: lower case, IPv6 without brackets.
pub fn endpoint_host(endpoint: &str) -> String {
	let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
	let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
	let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
	let host = match authority.strip_prefix('[') {
		Some(v6) => v6.split(']').next().unwrap_or_default(),
		None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
	};
	host.to_ascii_lowercase()
}

fn server_host(name: &ServerName<'_>) -> String {
	match name {
		ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
		ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
		_ => String::new(),
	}
}

impl PinnedProviderKeys {
	/// Accepts `key` for the host of `endpoint` from now on.
	pub fn pin(&self, endpoint: &str, key: MlDsaPublicKey) {
		let mut pins = self.pins.write().unwrap_or_else(|p| p.into_inner());
		let keys = pins.entry(endpoint_host(endpoint)).or_default();
		if !keys.contains(&key) {
			keys.push(key);
		}
	}
}

fn refused(message: impl Into<String>) -> Error {
	Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(std::io::Error::other(
		message.into(),
	)))))
}

impl ServerCertVerifier for PinnedProviderKeys {
	fn verify_server_cert(
		&self,
		end_entity: &CertificateDer<'_>,
		_intermediates: &[CertificateDer<'_>],
		server_name: &ServerName<'_>,
		_ocsp_response: &[u8],
		_now: UnixTime,
	) -> Result<ServerCertVerified, Error> {
		let host = server_host(server_name);
		let key = public_key_of(end_entity)
			.ok_or_else(|| refused(format!("{host} did not present an ML-DSA-65 service key certificate")))?;
		let pins = self.pins.read().unwrap_or_else(|p| p.into_inner());
		match pins.get(&host) {
			Some(keys) if keys.contains(&key) => Ok(ServerCertVerified::assertion()),
			Some(_) => {
				Err(refused(format!("{host} presented a key that is not its provider's registered service key")))
			},
			None => Err(refused(format!("no provider's service key is known for {host}"))),
		}
	}

	fn verify_tls12_signature(
		&self,
		_message: &[u8],
		_cert: &CertificateDer<'_>,
		_dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, Error> {
		Err(Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
	}

	fn verify_tls13_signature(
		&self,
		message: &[u8],
		cert: &CertificateDer<'_>,
		dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, Error> {
		let key = public_key_of(cert).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
		let signature = <[u8; ML_DSA_65_SIGNATURE_LEN]>::try_from(dss.signature())
			.map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
		if dss.scheme != SignatureScheme::ML_DSA_65 || !verify_tls(&key, message, &MlDsaSignature(signature)) {
			return Err(Error::InvalidCertificate(CertificateError::BadSignature));
		}
		Ok(HandshakeSignatureValid::assertion())
	}

	fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
		vec![SignatureScheme::ML_DSA_65]
	}
}

/// The client's TLS configuration: TLS 1.3 only, the `pins` decide which servers are
/// accepted, X25519MLKEM768 preferred, ALPN `h2` and `http/1.1`.
pub fn client_config(pins: Arc<PinnedProviderKeys>) -> Result<ClientConfig, TlsError> {
	let mut config = ClientConfig::builder_with_provider(provider())
		.with_protocol_versions(&[&rustls::version::TLS13])?
		.dangerous()
		.with_custom_certificate_verifier(pins)
		.with_no_client_auth();
	config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
	Ok(config)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_certificate_carries_the_service_key_and_verifies_with_it() {
		let key = MlDsaKeyPair::dev("dave");
		let cert = certificate(&key, "interlattice-provider").unwrap();
		assert_eq!(public_key_of(&cert), Some(key.public().clone()));
		// The self-signature: the TBS certificate under the TLS context.
		let (body, _) = expect(&cert, SEQUENCE).unwrap();
		let (_, _, after_tbs) = read_der(body).unwrap();
		let tbs_len = body.len() - after_tbs.len();
		let (_, rest) = expect(after_tbs, SEQUENCE).unwrap();
		let (bits, _) = expect(rest, BIT_STRING).unwrap();
		let signature = MlDsaSignature(bits[1..].try_into().unwrap());
		assert!(verify_tls(key.public(), &body[..tbs_len], &signature));
		assert!(!interlattice_pq_crypto::verify(key.public(), &body[..tbs_len], &signature));
		// Every truncation and a changed OID are refused, never a panic.
		for len in 0..cert.len() {
			assert_eq!(public_key_of(&cert[..len]), None, "{len}");
		}
		// The subject public key's algorithm (the second of the three identifiers) changed to
		// id-ml-dsa-44.
		let mut other = cert.to_vec();
		let at: Vec<usize> =
			other.windows(ID_ML_DSA_65.len()).enumerate().filter(|(_, w)| *w == ID_ML_DSA_65).map(|(i, _)| i).collect();
		assert_eq!(at.len(), 3);
		other[at[1] + 8] = 0x11;
		assert_eq!(public_key_of(&other), None);
	}

	#[test]
	fn hosts_are_compared_as_the_verifier_sees_them() {
		assert_eq!(endpoint_host("https://Provider.example:443/x"), "provider.example");
		assert_eq!(endpoint_host("https://127.0.0.1:7320"), "127.0.0.1");
		assert_eq!(endpoint_host("https://[::1]:7320/"), "::1");
		assert_eq!(endpoint_host("host.example"), "host.example");
		let ip = ServerName::try_from("127.0.0.1").unwrap();
		assert_eq!(server_host(&ip), endpoint_host("https://127.0.0.1:1"));
		let v6 = ServerName::try_from("::1").unwrap();
		assert_eq!(server_host(&v6), endpoint_host("https://[::1]:1"));
	}

	fn agent_config(agent: &MlDsaKeyPair) -> ServerConfig {
		let ordinary = crate::tls::self_signed(vec!["localhost".into()]).unwrap();
		server_config(Arc::new(MlDsaKeyPair::from_seed(*agent.seed())), "provider", ordinary).unwrap()
	}

	/// A TLS handshake in memory between `server` and a client pinned to `pinned`; the
	/// client's error if it fails.
	fn handshake(server: ServerConfig, pinned: Option<&MlDsaPublicKey>) -> Result<(), String> {
		let pins = Arc::new(PinnedProviderKeys::default());
		if let Some(key) = pinned {
			pins.pin("https://localhost:7320", key.clone());
		}
		let client = client_config(pins).unwrap();
		let mut client =
			rustls::ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap()).unwrap();
		let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
		for _ in 0..10 {
			let mut buffer = Vec::new();
			client.write_tls(&mut buffer).unwrap();
			let mut flight = &buffer[..];
			while !flight.is_empty() {
				server.read_tls(&mut flight).unwrap();
				server.process_new_packets().map_err(|e| format!("server: {e}"))?;
			}
			let mut buffer = Vec::new();
			server.write_tls(&mut buffer).unwrap();
			let mut flight = &buffer[..];
			while !flight.is_empty() {
				client.read_tls(&mut flight).unwrap();
				client.process_new_packets().map_err(|e| e.to_string())?;
			}
			if !client.is_handshaking() && !server.is_handshaking() {
				assert_eq!(
					client.negotiated_key_exchange_group().map(|g| g.name()),
					Some(rustls::NamedGroup::X25519MLKEM768)
				);
				return Ok(());
			}
		}
		Err("the handshake did not finish".into())
	}

	#[test]
	fn a_client_accepts_only_the_pinned_provider_key() {
		let dave = MlDsaKeyPair::dev("dave");
		let charlie = MlDsaKeyPair::dev("charlie");
		handshake(agent_config(&dave), Some(dave.public())).expect("the registered key is accepted");
		let impostor = handshake(agent_config(&charlie), Some(dave.public())).unwrap_err();
		assert!(impostor.contains("not its provider's registered service key"), "{impostor}");
		let unknown = handshake(agent_config(&dave), None).unwrap_err();
		assert!(unknown.contains("no provider's service key is known"), "{unknown}");
		// A man in the middle replays Dave's (public) certificate but cannot sign with his key.
		let stolen = Arc::new(CertifiedKey::new(
			vec![certificate(&dave, "provider").unwrap()],
			Arc::new(ServiceSigningKey(Arc::new(MlDsaKeyPair::dev("charlie")))),
		));
		let mut mitm = agent_config(&charlie);
		mitm.cert_resolver = Arc::new(ByClient { service_key: stolen.clone(), ordinary: stolen });
		let error = handshake(mitm, Some(dave.public())).unwrap_err();
		assert!(error.contains("BadSignature"), "{error}");
	}
}
