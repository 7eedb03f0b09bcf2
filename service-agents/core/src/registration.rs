//! `register`: an agent writes to the provider registry only what is its own. A provider may
//! run a dVPN agent and a dCDN agent on one account; each adds its service and its endpoint
//! and leaves the other's alone. Endpoints belong to a service by their form: a dCDN
//! endpoint is a URL (`http://…`, `https://…`), a dVPN endpoint is `host:port`. Provider-wide
//! fields (country, region, hosting, prices, service key) change only when the agent's
//! configuration names them; a country change keeps the region and hosting unless they are
//! named too. The stake is bonded at the first registration only.

use interlattice_runtime::RuntimeCall;
use pallet_provider_registry::{Hosting, Location, Prices, ServiceKind, Services};

use crate::{
	chain::{ChainClient, Provider},
	config::{parse_lat, ProviderSection},
	identity::Identity,
};

pub use crate::opening::endpoint_of;

fn with(services: Services, service: ServiceKind) -> Services {
	match (services, service) {
		(s, kind) if s.offers(kind) => s,
		_ => Services::Both,
	}
}

fn only(service: ServiceKind) -> Services {
	match service {
		ServiceKind::Vpn => Services::Vpn,
		ServiceKind::Cdn => Services::Cdn,
	}
}

fn hosting(s: &str) -> Result<Hosting, String> {
	match s {
		"datacenter" => Ok(Hosting::Datacenter),
		"residential" => Ok(Hosting::Residential),
		other => Err(format!("provider.hosting {other:?} must be \"datacenter\" or \"residential\"")),
	}
}

fn country(s: &str) -> Result<[u8; 2], String> {
	let b = s.as_bytes();
	if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
		return Err(format!("provider.country {s:?} must be two capital letters (ISO 3166-1)"));
	}
	Ok([b[0], b[1]])
}

type Endpoints = pallet_provider_registry::EndpointsOf<interlattice_runtime::Runtime>;

fn bounded_endpoints(list: Vec<Vec<u8>>) -> Result<Endpoints, String> {
	let items = list
		.into_iter()
		.map(|e| {
			let text = String::from_utf8_lossy(&e).into_owned();
			e.try_into().map_err(|_| format!("endpoint {text:?} is too long"))
		})
		.collect::<Result<Vec<_>, _>>()?;
	items.try_into().map_err(|_| "too many endpoints for the registry".to_string())
}

/// The call that makes the registry say what `provider` configures for `service`, given what
/// it holds (`existing`); `None` if it says so already.
pub fn registration_call(
	service: ServiceKind,
	provider: &ProviderSection,
	identity: &Identity,
	existing: Option<&Provider>,
	unlisted: bool,
) -> Result<Option<RuntimeCall>, String> {
	use pallet_provider_registry::Call;
	// An unlisted service registers no endpoint (and removes one it had).
	let endpoint = match (&provider.endpoint, unlisted) {
		(None, true) => None,
		(Some(_), true) => return Err("provider.endpoint and [unlisted] exclude each other".into()),
		(None, false) => return Err("provider.endpoint is needed to register (or an [unlisted] section)".into()),
		(Some(e), false) => Some(e.clone().into_bytes()),
	};
	if let Some(endpoint) = endpoint.as_ref().filter(|e| !endpoint_of(service, e)) {
		return Err(format!(
			"provider.endpoint {:?} is not a {} endpoint ({})",
			String::from_utf8_lossy(endpoint),
			if service == ServiceKind::Cdn { "dCDN" } else { "dVPN" },
			if service == ServiceKind::Cdn { "http://host:port or https://…" } else { "host:port" }
		));
	}
	let prices = match (&provider.price_per_gib, &provider.price_per_hour) {
		(Some(g), Some(h)) => Some(Prices { per_gib: parse_lat(g)?, per_hour: parse_lat(h)? }),
		(None, None) => None,
		_ => return Err("provider.price_per_gib and price_per_hour go together".into()),
	};
	let service_key = identity.service_key.as_ref().map(|k| k.public().clone());
	let Some(p) = existing else {
		let country = country(provider.country.as_deref().ok_or("provider.country is needed to register")?)?;
		let location = Location {
			country,
			region: provider
				.region
				.clone()
				.unwrap_or_default()
				.into_bytes()
				.try_into()
				.map_err(|_| "provider.region is too long")?,
			hosting: provider.hosting.as_deref().map(hosting).transpose()?.unwrap_or(Hosting::Datacenter),
		};
		return Ok(Some(RuntimeCall::ProviderRegistry(Call::register_provider {
			services: only(service),
			endpoints: bounded_endpoints(endpoint.into_iter().collect())?,
			location,
			prices: prices.ok_or("provider.price_per_gib and price_per_hour are needed to register")?,
			service_key: Box::new(service_key.ok_or("provider.service_key is needed to register")?),
			stake: parse_lat(provider.stake.as_deref().ok_or("provider.stake is needed to register")?)?,
		})));
	};
	let services = with(p.services, service);
	// Our endpoint replaces only our service's endpoints; the others stay, in order.
	let mut endpoints: Vec<Vec<u8>> = p.endpoints.iter().filter(|e| !endpoint_of(service, e)).cloned().collect();
	let ours_now: Vec<&Vec<u8>> = p.endpoints.iter().filter(|e| endpoint_of(service, e)).collect();
	let endpoints_change = ours_now != endpoint.iter().collect::<Vec<_>>();
	endpoints.extend(endpoint);
	let country_change = provider.country.as_deref().map(country).transpose()?.filter(|c| *c != p.country);
	let region_change = provider.region.as_ref().filter(|r| r.as_bytes() != p.region.as_slice());
	let hosting_change = provider.hosting.as_deref().map(hosting).transpose()?.filter(|h| *h != p.hosting);
	let location = (country_change.is_some() || region_change.is_some() || hosting_change.is_some())
		.then(|| -> Result<_, String> {
			Ok(Location {
				country: country_change.unwrap_or(p.country),
				region: region_change
					.map(|r| r.as_bytes().to_vec())
					.unwrap_or_else(|| p.region.clone())
					.try_into()
					.map_err(|_| "provider.region is too long")?,
				hosting: hosting_change.unwrap_or(p.hosting),
			})
		})
		.transpose()?;
	let update = Call::update_provider {
		services: (services != p.services).then_some(services),
		endpoints: if endpoints_change { Some(bounded_endpoints(endpoints)?) } else { None },
		location,
		prices: prices.filter(|pr| *pr != p.prices),
		service_key: service_key.filter(|k| *k != p.service_key).map(Box::new),
	};
	let Call::update_provider { services, endpoints, location, prices, service_key } = &update else {
		unreachable!("built above; qed")
	};
	if services.is_none() && endpoints.is_none() && location.is_none() && prices.is_none() && service_key.is_none() {
		return Ok(None);
	}
	Ok(Some(RuntimeCall::ProviderRegistry(update)))
}

/// `register`: registers the provider as configured (bonding `provider.stake`), or updates
/// what differs of what is this agent's. Returns what it did, in words.
pub async fn register(
	chain: &ChainClient,
	service: ServiceKind,
	provider: &ProviderSection,
	identity: &Identity,
	unlisted: bool,
) -> Result<String, String> {
	let existing = chain.provider(&identity.provider).await.map_err(|e| e.to_string())?;
	match registration_call(service, provider, identity, existing.as_ref(), unlisted)? {
		None => Ok(format!("provider {} is registered as configured; nothing to do", identity.provider)),
		Some(call) => {
			let what = if existing.is_some() { "updated" } else { "registered" };
			let inclusion = chain.submit_and_watch(call, &identity.account).await.map_err(|e| e.to_string())?;
			Ok(format!("provider {} {what} in block #{}", identity.provider, inclusion.number))
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use pallet_provider_registry::ProviderStatus;
	use sp_core::Pair;

	fn identity() -> Identity {
		let account = sp_keyring::Sr25519Keyring::Charlie.pair();
		Identity {
			provider: account.public().into(),
			account: account.into(),
			service_key: Some(interlattice_pq_crypto::keys::MlDsaKeyPair::dev("charlie")),
		}
	}

	fn section(endpoint: &str) -> ProviderSection {
		ProviderSection {
			account: None,
			account_file: None,
			service_key: None,
			endpoint: Some(endpoint.into()),
			country: Some("DE".into()),
			region: None,
			hosting: None,
			price_per_gib: Some("0.5".into()),
			price_per_hour: Some("0.1".into()),
			stake: Some("10000".into()),
		}
	}

	fn registered(services: Services, endpoints: &[&str]) -> Provider {
		Provider {
			account: sp_keyring::Sr25519Keyring::Charlie.to_account_id(),
			services,
			endpoints: endpoints.iter().map(|e| e.as_bytes().to_vec()).collect(),
			country: *b"DE",
			region: b"Berlin".to_vec(),
			hosting: Hosting::Residential,
			prices: Prices { per_gib: 500_000_000_000, per_hour: 100_000_000_000 },
			service_key: interlattice_pq_crypto::keys::MlDsaKeyPair::dev("charlie").public().clone(),
			stake: 10_000 * crate::config::UNIT,
			unbonding: 0,
			status: ProviderStatus::Registered,
			active: true,
			registered_at: 0,
		}
	}

	fn update(call: Option<RuntimeCall>) -> pallet_provider_registry::Call<interlattice_runtime::Runtime> {
		match call {
			Some(RuntimeCall::ProviderRegistry(c)) => c,
			other => panic!("expected a registry call, got {other:?}"),
		}
	}

	/// Issue 17 item 3: a provider that also serves the dCDN keeps its CDN endpoint when its
	/// VPN agent registers (before: the VPN agent replaced the whole list).
	#[test]
	fn each_agent_changes_only_its_own_service_and_endpoint() {
		let id = identity();
		let p = registered(Services::Cdn, &["http://198.51.100.7:7320"]);
		let call = update(registration_call(ServiceKind::Vpn, &section("198.51.100.7:7310"), &id, Some(&p), false).unwrap());
		let pallet_provider_registry::Call::update_provider { services, endpoints, location, prices, service_key } =
			call
		else {
			panic!("an update")
		};
		assert_eq!(services, Some(Services::Both));
		let endpoints: Vec<Vec<u8>> = endpoints.unwrap().into_iter().map(|e| e.into_inner()).collect();
		assert_eq!(endpoints, vec![b"http://198.51.100.7:7320".to_vec(), b"198.51.100.7:7310".to_vec()]);
		assert!(location.is_none() && prices.is_none() && service_key.is_none());
		// Registered as configured: nothing to do, for either agent.
		let both = registered(Services::Both, &["http://198.51.100.7:7320", "198.51.100.7:7310"]);
		assert!(registration_call(ServiceKind::Vpn, &section("198.51.100.7:7310"), &id, Some(&both), false)
			.unwrap()
			.is_none());
		assert!(registration_call(ServiceKind::Cdn, &section("http://198.51.100.7:7320"), &id, Some(&both), false)
			.unwrap()
			.is_none());
		// An endpoint of the wrong form is refused.
		assert!(registration_call(ServiceKind::Cdn, &section("198.51.100.7:7320"), &id, Some(&both), false).is_err());
	}

	/// Issue 17 item 3: a country change keeps the registered region and hosting (before:
	/// they were reset to empty and "datacenter").
	#[test]
	fn a_country_change_keeps_region_and_hosting() {
		let id = identity();
		let p = registered(Services::Vpn, &["198.51.100.7:7310"]);
		let mut moved = section("198.51.100.7:7310");
		moved.country = Some("NL".into());
		let pallet_provider_registry::Call::update_provider { location, endpoints, .. } =
			update(registration_call(ServiceKind::Vpn, &moved, &id, Some(&p), false).unwrap())
		else {
			panic!("an update")
		};
		let location = location.unwrap();
		assert_eq!(
			(location.country, location.region.into_inner(), location.hosting),
			(*b"NL", b"Berlin".to_vec(), Hosting::Residential)
		);
		assert!(endpoints.is_none());
		// Fields the configuration leaves out are not touched.
		let mut quiet = section("198.51.100.7:7310");
		quiet.price_per_gib = None;
		quiet.price_per_hour = None;
		quiet.country = None;
		assert!(registration_call(ServiceKind::Vpn, &quiet, &id, Some(&p), false).unwrap().is_none());
	}

	/// Issue 21: an unlisted service registers no endpoint and removes the one it had; the
	/// other service's endpoint stays.
	#[test]
	fn an_unlisted_service_registers_no_endpoint() {
		let id = identity();
		let mut unlisted = section("198.51.100.7:7310");
		unlisted.endpoint = None;
		let both = registered(Services::Both, &["http://198.51.100.7:7320", "198.51.100.7:7310"]);
		let pallet_provider_registry::Call::update_provider { endpoints, .. } =
			update(registration_call(ServiceKind::Vpn, &unlisted, &id, Some(&both), true).unwrap())
		else {
			panic!("an update")
		};
		let endpoints: Vec<Vec<u8>> = endpoints.unwrap().into_iter().map(|e| e.into_inner()).collect();
		assert_eq!(endpoints, vec![b"http://198.51.100.7:7320".to_vec()]);
		let cdn_only = registered(Services::Both, &["http://198.51.100.7:7320"]);
		assert!(registration_call(ServiceKind::Vpn, &unlisted, &id, Some(&cdn_only), true).unwrap().is_none());
		let Some(RuntimeCall::ProviderRegistry(pallet_provider_registry::Call::register_provider { endpoints, .. })) =
			registration_call(ServiceKind::Vpn, &unlisted, &id, None, true).unwrap()
		else {
			panic!("a registration")
		};
		assert!(endpoints.is_empty());
		// Both an endpoint and [unlisted], or neither: refused.
		assert!(registration_call(ServiceKind::Vpn, &section("198.51.100.7:7310"), &id, None, true).is_err());
		assert!(registration_call(ServiceKind::Vpn, &unlisted, &id, None, false).is_err());
	}

	#[test]
	fn a_first_registration_needs_everything() {
		let id = identity();
		let call =
			update(registration_call(ServiceKind::Cdn, &section("http://198.51.100.7:7320"), &id, None, false).unwrap());
		assert!(matches!(call, pallet_provider_registry::Call::register_provider { services: Services::Cdn, .. }));
		let mut missing = section("http://198.51.100.7:7320");
		missing.stake = None;
		assert!(registration_call(ServiceKind::Cdn, &missing, &id, None, false).unwrap_err().contains("stake"));
	}
}
