//! Who an agent is: the provider account (sr25519 or ML-DSA-65, signs registrations and
//! settlements; [`AccountKey`]) and
//! the service key (ML-DSA-65, proves the agent in handshakes). Secrets come from the
//! environment or from files only their owner can read, never from the command line.

use std::path::Path;

use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::AccountId;
use zeroize::Zeroizing;

use crate::{
	account::AccountKey,
	config::{load_service_key, ProviderSection},
};

/// The environment variable that overrides the account's secret URI.
pub const ACCOUNT_ENV: &str = "INTERLATTICE_ACCOUNT";
/// The environment variable that overrides the service key.
pub const SERVICE_KEY_ENV: &str = "INTERLATTICE_SERVICE_KEY";

/// The agent's keys.
pub struct Identity {
	/// The provider account's key pair.
	pub account: AccountKey,
	/// Its account id.
	pub provider: AccountId,
	/// The ML-DSA-65 service key (none for an agent that does no handshakes).
	pub service_key: Option<MlDsaKeyPair>,
}

/// Reads a secret from a file only its owner can read (mode 0600 or stricter).
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, String> {
	use std::os::unix::fs::PermissionsExt;
	let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
	if meta.permissions().mode() & 0o077 != 0 {
		return Err(format!("{} can be read by others: chmod 600 it", path.display()));
	}
	let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?);
	Ok(Zeroizing::new(text.trim().to_string()))
}

impl Identity {
	/// From the environment ([`ACCOUNT_ENV`], [`SERVICE_KEY_ENV`]), else the `[provider]`
	/// section (`account_file`, then `account`; `service_key`).
	pub fn load(provider: &ProviderSection, needs_service_key: bool) -> Result<Self, String> {
		let secret: Zeroizing<String> =
			match (std::env::var(ACCOUNT_ENV).ok(), &provider.account_file, &provider.account) {
				(Some(s), _, _) => Zeroizing::new(s),
				(None, Some(file), _) => read_secret_file(file)?,
				(None, None, Some(s)) => Zeroizing::new(s.clone()),
				(None, None, None) => {
					return Err(format!(
					"no provider account: set {ACCOUNT_ENV}, or provider.account_file (a 0600 file holding the secret URI)"
				))
				},
			};
		let account = AccountKey::from_secret(&secret).map_err(|e| format!("the provider account: {e}"))?;
		let service_key = match std::env::var(SERVICE_KEY_ENV).ok().or_else(|| provider.service_key.clone()) {
			Some(spec) => Some(load_service_key(&spec)?),
			None if needs_service_key => {
				return Err(format!("no service key: set provider.service_key or {SERVICE_KEY_ENV}"))
			},
			None => None,
		};
		Ok(Identity { provider: account.account_id(), account, service_key })
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn secret_files_must_be_private() {
		use std::os::unix::fs::PermissionsExt;
		let dir = tempfile::tempdir().unwrap();
		let file = dir.path().join("account");
		std::fs::write(&file, "//Dave\n").unwrap();
		std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
		assert!(read_secret_file(&file).unwrap_err().contains("chmod 600"));
		std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
		assert_eq!(read_secret_file(&file).unwrap().as_str(), "//Dave");
		let section = ProviderSection {
			account: None,
			account_file: Some(file),
			service_key: Some("dev:dave".into()),
			endpoint: None,
			country: None,
			region: None,
			hosting: None,
			price_per_gib: None,
			price_per_hour: None,
			stake: None,
		};
		let id = Identity::load(&section, true).unwrap();
		assert_eq!(id.provider, sp_keyring::Sr25519Keyring::Dave.to_account_id());
		assert!(id.service_key.is_some());
	}
}
