//! The client author's reference of our pallets, rendered from the runtime's metadata: calls
//! with their arguments and indices, events, errors with their indices and what the pool
//! reports for them, constants with their values, storage items, and every type they use
//! with its SCALE shape. `docs/pallets.md` is this output; `tests/tests/pallet_reference.rs`
//! fails when it differs from what the runtime's metadata says, so it cannot drift.

use std::{collections::BTreeMap, fmt::Write};

use codec::{Compact, Decode};
use frame_metadata::{
	v14::{StorageEntryModifier, StorageEntryType, StorageHasher},
	v15::RuntimeMetadataV15,
	RuntimeMetadata, RuntimeMetadataPrefixed,
};
use scale_info::{form::PortableForm, PortableRegistry, Type, TypeDef, TypeDefPrimitive};

/// The runtime's metadata in `version` (14, 15 or 16), as the node serves it.
pub fn runtime_metadata_at(version: u32) -> RuntimeMetadata {
	let bytes = interlattice_runtime::Runtime::metadata_at_version(version).expect("the runtime offers this version");
	RuntimeMetadataPrefixed::decode(&mut &bytes[..]).expect("the runtime's metadata decodes").1
}

/// The runtime's metadata, version 15 (what polkadot.js and subxt read).
pub fn runtime_metadata() -> RuntimeMetadataV15 {
	match runtime_metadata_at(15) {
		RuntimeMetadata::V15(m) => m,
		_ => unreachable!("version 15 was asked for"),
	}
}

/// Types whose shape a client takes from Substrate's own documentation.
const SUBSTRATE_TYPES: &[&str] = &["DispatchError", "AccountId32", "Perbill", "BoundedVec", "Option"];

struct Renderer<'a> {
	types: &'a PortableRegistry,
	/// Named types met while rendering, to be described in the "Types" section.
	named: BTreeMap<String, u32>,
}

impl Renderer<'_> {
	fn ty(&self, id: u32) -> &Type<PortableForm> {
		self.types.resolve(id).expect("metadata types refer to registered types")
	}

	/// A type's name as a client sees it, e.g. `BoundedVec<u8>`, `[u8; 32]`, `Prices<u128>`.
	fn name(&mut self, id: u32) -> String {
		let ty = self.ty(id).clone();
		match &ty.type_def {
			TypeDef::Primitive(p) => primitive(p).to_string(),
			TypeDef::Array(a) => format!("[{}; {}]", self.name(a.type_param.id), a.len),
			TypeDef::Sequence(s) => format!("Vec<{}>", self.name(s.type_param.id)),
			TypeDef::Compact(c) => format!("Compact<{}>", self.name(c.type_param.id)),
			TypeDef::BitSequence(_) => "BitVec".into(),
			TypeDef::Tuple(t) => {
				let items: Vec<String> = t.fields.iter().map(|f| self.name(f.id)).collect();
				format!("({})", items.join(", "))
			},
			TypeDef::Composite(_) | TypeDef::Variant(_) => {
				let base = ty.path.segments.last().cloned().unwrap_or_else(|| format!("type {id}"));
				if !SUBSTRATE_TYPES.contains(&base.as_str()) {
					self.named.entry(base.clone()).or_insert(id);
				}
				let params: Vec<String> = ty.type_params.iter().filter_map(|p| p.ty.map(|t| self.name(t.id))).collect();
				if params.is_empty() {
					base
				} else {
					format!("{base}<{}>", params.join(", "))
				}
			},
		}
	}

	/// Decodes a SCALE value of type `id` into a readable string.
	fn value(&mut self, id: u32, input: &mut &[u8]) -> Option<String> {
		let ty = self.ty(id).clone();
		Some(match &ty.type_def {
			TypeDef::Primitive(p) => match p {
				TypeDefPrimitive::Bool => bool::decode(input).ok()?.to_string(),
				TypeDefPrimitive::U8 => u8::decode(input).ok()?.to_string(),
				TypeDefPrimitive::U16 => u16::decode(input).ok()?.to_string(),
				TypeDefPrimitive::U32 => group(u32::decode(input).ok()?.into()),
				TypeDefPrimitive::U64 => group(u64::decode(input).ok()?.into()),
				TypeDefPrimitive::U128 => {
					let v = u128::decode(input).ok()?;
					format!("{} ({} LAT)", group(v), lat(v))
				},
				_ => return None,
			},
			TypeDef::Compact(_) => group(Compact::<u128>::decode(input).ok()?.0),
			TypeDef::Array(a)
				if matches!(self.ty(a.type_param.id).type_def, TypeDef::Primitive(TypeDefPrimitive::U8)) =>
			{
				let (bytes, rest) = input.split_at_checked(a.len as usize)?;
				*input = rest;
				format!("0x{}", hex::encode(bytes))
			},
			TypeDef::Composite(c) if ty.path.segments.last().is_some_and(|s| s == "Perbill") => {
				let parts = u32::decode(input).ok()?;
				let _ = c;
				format!("{} % (Perbill {parts})", parts as f64 / 10_000_000.0)
			},
			TypeDef::Composite(c) => {
				let mut fields = Vec::new();
				for f in &c.fields {
					let v = self.value(f.ty.id, input)?;
					fields.push(match &f.name {
						Some(n) => format!("{n}: {v}"),
						None => v,
					});
				}
				format!("{{ {} }}", fields.join(", "))
			},
			TypeDef::Variant(v) => {
				let index = u8::decode(input).ok()?;
				let variant = v.variants.iter().find(|x| x.index == index)?;
				let mut fields = Vec::new();
				for f in &variant.fields {
					fields.push(self.value(f.ty.id, input)?);
				}
				if fields.is_empty() {
					variant.name.clone()
				} else {
					format!("{}({})", variant.name, fields.join(", "))
				}
			},
			_ => return None,
		})
	}

	fn fields(&mut self, fields: &[scale_info::Field<PortableForm>]) -> String {
		let parts: Vec<String> = fields
			.iter()
			.map(|f| {
				let ty = self.name(f.ty.id);
				match &f.name {
					Some(n) => format!("`{n}: {ty}`"),
					None => format!("`{ty}`"),
				}
			})
			.collect();
		if parts.is_empty() {
			"—".into()
		} else {
			parts.join(", ")
		}
	}
}

fn primitive(p: &TypeDefPrimitive) -> &'static str {
	match p {
		TypeDefPrimitive::Bool => "bool",
		TypeDefPrimitive::Char => "char",
		TypeDefPrimitive::Str => "str",
		TypeDefPrimitive::U8 => "u8",
		TypeDefPrimitive::U16 => "u16",
		TypeDefPrimitive::U32 => "u32",
		TypeDefPrimitive::U64 => "u64",
		TypeDefPrimitive::U128 => "u128",
		TypeDefPrimitive::U256 => "u256",
		TypeDefPrimitive::I8 => "i8",
		TypeDefPrimitive::I16 => "i16",
		TypeDefPrimitive::I32 => "i32",
		TypeDefPrimitive::I64 => "i64",
		TypeDefPrimitive::I128 => "i128",
		TypeDefPrimitive::I256 => "i256",
	}
}

/// 1234567 → "1_234_567".
fn group(v: u128) -> String {
	let digits = v.to_string();
	let mut out = String::new();
	for (i, c) in digits.chars().enumerate() {
		if i > 0 && (digits.len() - i).is_multiple_of(3) {
			out.push('_');
		}
		out.push(c);
	}
	out
}

/// Units as LAT (12 decimals), without trailing zeros.
fn lat(v: u128) -> String {
	let whole = v / 1_000_000_000_000;
	let frac = v % 1_000_000_000_000;
	if frac == 0 {
		whole.to_string()
	} else {
		format!("{whole}.{}", format!("{frac:012}").trim_end_matches('0'))
	}
}

/// Joins doc lines into markdown: lines of a paragraph are joined, an empty line starts a
/// new paragraph, a `- ` line a list item.
fn docs(lines: &[String]) -> String {
	let mut out = String::new();
	let mut in_list = false;
	for line in lines {
		let line = line.trim();
		if line.is_empty() {
			out.push_str("\n\n");
			in_list = false;
		} else if let Some(item) = line.strip_prefix("- ") {
			if !in_list && !out.is_empty() && !out.ends_with("\n\n") {
				out.push_str("\n\n");
			} else if in_list {
				out.push('\n');
			}
			out.push_str("- ");
			out.push_str(item);
			in_list = true;
		} else if in_list && (line.starts_with("Errors:") || line.starts_with("Returns")) {
			out.push_str("\n\n");
			out.push_str(line);
			in_list = false;
		} else {
			if !out.is_empty() && !out.ends_with('\n') {
				out.push(' ');
			}
			out.push_str(line);
		}
	}
	while out.contains("\n\n\n") {
		out = out.replace("\n\n\n", "\n\n");
	}
	out.trim().to_string()
}

/// Docs squeezed into a table cell.
fn cell(lines: &[String]) -> String {
	docs(lines).replace('\n', " ").replace('|', "\\|")
}

fn hasher(h: &StorageHasher) -> &'static str {
	match h {
		StorageHasher::Blake2_128 => "Blake2_128",
		StorageHasher::Blake2_256 => "Blake2_256",
		StorageHasher::Blake2_128Concat => "Blake2_128Concat",
		StorageHasher::Twox128 => "Twox128",
		StorageHasher::Twox256 => "Twox256",
		StorageHasher::Twox64Concat => "Twox64Concat",
		StorageHasher::Identity => "Identity",
	}
}

/// What the transaction pool answers for a settlement call whose receipt fails with an
/// escrow error (the runtime's `CheckReceipts` extension, `invalid_receipt`).
fn pool_code(pallet: &str, error: &str, index: u8) -> Option<String> {
	if pallet != "SessionEscrow" {
		return None;
	}
	Some(match error {
		"ReceiptReplayed" => "`Stale`".into(),
		"BadSignature" => "`BadProof`".into(),
		_ => format!("`Custom({index})`"),
	})
}

/// Renders the reference of `pallets` (by name) as markdown.
pub fn render(metadata: &RuntimeMetadataV15, pallets: &[&str]) -> String {
	let mut r = Renderer { types: &metadata.types, named: BTreeMap::new() };
	let mut out = String::new();
	let w = &mut out;
	writeln!(w, "# Pallet reference: calls, events, errors, constants, storage").unwrap();
	writeln!(w).unwrap();
	writeln!(
		w,
		"Generated from the runtime's metadata by `tests/tests/pallet_reference.rs`, which fails when this \
		 file differs from the metadata; do not edit by hand. Regenerate with \
		 `INTERLATTICE_BLESS=1 cargo test -p interlattice-tests --test pallet_reference`. How the pieces fit \
		 together (transactions, receipts, the pool's answers, fees): `docs/client-guide.md`."
	)
	.unwrap();
	writeln!(w).unwrap();
	writeln!(
		w,
		"Encodings are SCALE. A call is `[pallet index][call index][arguments in order]`; an event in \
		 `System.Events` is `[pallet index][event index][fields in order]`; a module error is \
		 `DispatchError::Module {{ index: pallet index, error: [error index, 0, 0, 0] }}`. `[u8; N]` is N raw \
		 bytes (no length prefix), `Vec<T>` and `BoundedVec<T>` a compact length then the items, \
		 `Option<T>` one byte (0 none, 1 some) then `T`, `Box<T>` is `T`, an enum one byte (its variant's \
		 index) then the variant's fields. Amounts are `u128` in units (1 LAT = 10^12 units); block \
		 numbers are `u32` (6 s blocks)."
	)
	.unwrap();
	for pallet in pallets {
		let p = metadata.pallets.iter().find(|p| p.name == *pallet).expect("the pallet is in the runtime");
		writeln!(w).unwrap();
		writeln!(w, "## {} (pallet index {})", p.name, p.index).unwrap();
		if !p.docs.is_empty() {
			writeln!(w).unwrap();
			writeln!(w, "{}", docs(&p.docs)).unwrap();
		}
		if let Some(calls) = &p.calls {
			writeln!(w).unwrap();
			writeln!(w, "### Calls").unwrap();
			let ty = r.ty(calls.ty.id).clone();
			let TypeDef::Variant(v) = &ty.type_def else { panic!("calls are an enum") };
			for call in &v.variants {
				writeln!(w).unwrap();
				writeln!(
					w,
					"#### `{}` (call index {}; bytes `0x{:02x}{:02x}`)",
					call.name, call.index, p.index, call.index
				)
				.unwrap();
				writeln!(w).unwrap();
				writeln!(w, "Arguments: {}", r.fields(&call.fields)).unwrap();
				writeln!(w).unwrap();
				writeln!(w, "{}", docs(&call.docs)).unwrap();
			}
		}
		if let Some(event) = &p.event {
			writeln!(w).unwrap();
			writeln!(w, "### Events").unwrap();
			writeln!(w).unwrap();
			writeln!(w, "| index | event | fields | meaning |").unwrap();
			writeln!(w, "|---|---|---|---|").unwrap();
			let ty = r.ty(event.ty.id).clone();
			let TypeDef::Variant(v) = &ty.type_def else { panic!("events are an enum") };
			for e in &v.variants {
				let fields = r.fields(&e.fields);
				writeln!(w, "| {} | `{}` | {} | {} |", e.index, e.name, fields, cell(&e.docs)).unwrap();
			}
		}
		if let Some(error) = &p.error {
			writeln!(w).unwrap();
			writeln!(w, "### Errors").unwrap();
			writeln!(w).unwrap();
			let with_pool = p.name == "SessionEscrow";
			if with_pool {
				writeln!(
					w,
					"The last column is what the transaction pool answers when a settlement call's receipt \
					 fails that check before the transaction is accepted (`InvalidTransaction`)."
				)
				.unwrap();
				writeln!(w).unwrap();
				writeln!(w, "| index | error | meaning | pool |").unwrap();
				writeln!(w, "|---|---|---|---|").unwrap();
			} else {
				writeln!(w, "| index | error | meaning |").unwrap();
				writeln!(w, "|---|---|---|").unwrap();
			}
			let ty = r.ty(error.ty.id).clone();
			let TypeDef::Variant(v) = &ty.type_def else { panic!("errors are an enum") };
			for e in &v.variants {
				match pool_code(&p.name, &e.name, e.index) {
					Some(code) => writeln!(w, "| {} | `{}` | {} | {} |", e.index, e.name, cell(&e.docs), code),
					None => writeln!(w, "| {} | `{}` | {} |", e.index, e.name, cell(&e.docs)),
				}
				.unwrap();
			}
		}
		if !p.constants.is_empty() {
			writeln!(w).unwrap();
			writeln!(w, "### Constants").unwrap();
			writeln!(w).unwrap();
			writeln!(w, "| constant | type | value | meaning |").unwrap();
			writeln!(w, "|---|---|---|---|").unwrap();
			for c in &p.constants {
				let ty = r.name(c.ty.id);
				let value =
					r.value(c.ty.id, &mut &c.value[..]).unwrap_or_else(|| format!("0x{}", hex::encode(&c.value)));
				writeln!(w, "| `{}` | `{}` | {} | {} |", c.name, ty, value, cell(&c.docs)).unwrap();
			}
		}
		if let Some(storage) = &p.storage {
			writeln!(w).unwrap();
			writeln!(w, "### Storage").unwrap();
			writeln!(w).unwrap();
			writeln!(
				w,
				"Key: `twox128(\"{}\") ++ twox128(item name) ++` each map key hashed with its hasher (the \
				 `Concat` hashers append the key itself, so keys can be listed with `state_getKeysPaged`).",
				storage.prefix
			)
			.unwrap();
			writeln!(w).unwrap();
			writeln!(w, "| item | keys (hasher) | value | when absent | meaning |").unwrap();
			writeln!(w, "|---|---|---|---|---|").unwrap();
			for e in &storage.entries {
				let (keys, value) = match &e.ty {
					StorageEntryType::Plain(v) => ("—".to_string(), r.name(v.id)),
					StorageEntryType::Map { hashers, key, value } => {
						let key_ty = r.ty(key.id).clone();
						let key_ids: Vec<u32> = match (&key_ty.type_def, hashers.len()) {
							(TypeDef::Tuple(t), n) if n > 1 => t.fields.iter().map(|f| f.id).collect(),
							_ => vec![key.id],
						};
						let keys: Vec<String> = key_ids
							.iter()
							.zip(hashers)
							.map(|(k, h)| format!("`{}` ({})", r.name(*k), hasher(h)))
							.collect();
						(keys.join(", "), r.name(value.id))
					},
				};
				let absent = match e.modifier {
					StorageEntryModifier::Optional => "none".to_string(),
					StorageEntryModifier::Default => format!("`0x{}`", hex::encode(&e.default)),
				};
				writeln!(w, "| `{}` | {} | `{}` | {} | {} |", e.name, keys, value, absent, cell(&e.docs)).unwrap();
			}
		}
	}
	// Every named type met above, and the types they use in turn.
	writeln!(w).unwrap();
	writeln!(w, "## Types").unwrap();
	writeln!(w).unwrap();
	writeln!(
		w,
		"Every type named above (Substrate's own — {} — as Substrate documents them).",
		SUBSTRATE_TYPES.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
	)
	.unwrap();
	let mut done = std::collections::BTreeSet::new();
	while let Some((name, id)) = r.named.iter().find(|(n, _)| !done.contains(*n)).map(|(n, i)| (n.clone(), *i)) {
		done.insert(name.clone());
		let ty = r.ty(id).clone();
		// The pallets' own Call/Event/Error enums are the sections above.
		if matches!(name.as_str(), "Call" | "Event" | "Error") {
			continue;
		}
		writeln!(w).unwrap();
		writeln!(w, "### `{name}`").unwrap();
		writeln!(w).unwrap();
		if !ty.docs.is_empty() {
			writeln!(w, "{}", docs(&ty.docs)).unwrap();
			writeln!(w).unwrap();
		}
		match &ty.type_def {
			TypeDef::Composite(c) => {
				writeln!(w, "A struct: its fields in order.").unwrap();
				writeln!(w).unwrap();
				writeln!(w, "| field | type | meaning |").unwrap();
				writeln!(w, "|---|---|---|").unwrap();
				for (i, f) in c.fields.iter().enumerate() {
					let fname = f.name.clone().unwrap_or_else(|| i.to_string());
					let fty = r.name(f.ty.id);
					writeln!(w, "| `{fname}` | `{fty}` | {} |", cell(&f.docs)).unwrap();
				}
			},
			TypeDef::Variant(v) => {
				writeln!(w, "An enum: one byte (the index), then the variant's fields.").unwrap();
				writeln!(w).unwrap();
				writeln!(w, "| index | variant | fields | meaning |").unwrap();
				writeln!(w, "|---|---|---|---|").unwrap();
				for x in &v.variants {
					let fields = r.fields(&x.fields);
					writeln!(w, "| {} | `{}` | {} | {} |", x.index, x.name, fields, cell(&x.docs)).unwrap();
				}
			},
			_ => {},
		}
	}
	out
}
