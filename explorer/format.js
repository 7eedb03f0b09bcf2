// Amounts, accounts and DOM helpers. Amounts travel as decimal strings of the smallest unit
// (docs/rpc.md: u128 does not fit a JavaScript number); they are BigInt here, never floats.

export const token = { symbol: 'LAT', decimals: 12 };

/** Takes the chain's `system_properties` (tokenSymbol, tokenDecimals; a value or a list). */
export function setToken(properties) {
  const first = (v) => (Array.isArray(v) ? v[0] : v);
  const symbol = first(properties?.tokenSymbol);
  const decimals = first(properties?.tokenDecimals);
  if (typeof symbol === 'string' && symbol) token.symbol = symbol;
  if (Number.isInteger(decimals) && decimals >= 0 && decimals <= 30) token.decimals = decimals;
}

const SHOWN_DECIMALS = 4;

/**
 * "10,000 LAT", "0.55 LAT", "<0.0001 LAT": at most four decimals, rounded half up.
 * @param {string|number|bigint} amount in the smallest unit
 */
export function formatAmount(amount, { symbol = true } = {}) {
  let n;
  try {
    n = BigInt(amount);
  } catch {
    return String(amount);
  }
  const unit = 10n ** BigInt(token.decimals);
  const step = token.decimals > SHOWN_DECIMALS ? 10n ** BigInt(token.decimals - SHOWN_DECIMALS) : 1n;
  const negative = n < 0n;
  if (negative) n = -n;
  let text;
  if (n > 0n && n < step) {
    text = `<0.${'1'.padStart(SHOWN_DECIMALS, '0')}`;
  } else {
    const rounded = ((n + step / 2n) / step) * step;
    const whole = rounded / unit;
    const digits = Math.min(SHOWN_DECIMALS, token.decimals);
    const frac = ((rounded % unit) / step).toString().padStart(digits, '0').replace(/0+$/, '');
    text = whole.toLocaleString('en-US') + (frac ? `.${frac}` : '');
  }
  if (negative) text = `-${text}`;
  return symbol ? `${text} ${token.symbol}` : text;
}

/** The exact amount in tokens, every decimal: for a tooltip. */
export function exactAmount(amount) {
  try {
    const n = BigInt(amount);
    const unit = 10n ** BigInt(token.decimals);
    const frac = (n % unit).toString().padStart(token.decimals, '0').replace(/0+$/, '');
    return `${(n / unit).toString()}${frac ? `.${frac}` : ''} ${token.symbol} (${n} in the smallest unit)`;
  } catch {
    return String(amount);
  }
}

/**
 * A price typed in tokens ("0.5", "2", ".25") as a decimal string of the smallest unit;
 * "" for an empty input, null for something that is not an amount.
 */
export function parseAmount(text) {
  const t = text.trim().replace(/,/g, '');
  if (t === '') return '';
  const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[1] === '' && (m[2] ?? '') === '')) return null;
  const frac = m[2] ?? '';
  if (frac.length > token.decimals) return null;
  const n = BigInt(m[1] || '0') * 10n ** BigInt(token.decimals) + BigInt(frac.padEnd(token.decimals, '0') || '0');
  return n.toString();
}

/** "mHnrEH…pWLF": enough to tell accounts apart; the whole one goes in a tooltip. */
export function shortAccount(account) {
  const s = String(account ?? '');
  return s.length > 14 ? `${s.slice(0, 6)}…${s.slice(-6)}` : s;
}

/** A 0x-hex key as its first bytes only (keys are 1952 bytes). */
export function shortKey(hex) {
  const s = String(hex ?? '');
  return s.length > 12 ? `${s.slice(0, 10)}…` : s;
}

/**
 * An element with text: `el('td', {class: 'num', title: …}, 'text', child…)`. Text goes in
 * through text nodes only, never as markup.
 */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Block number as "#1,234". */
export function formatBlock(n) {
  return typeof n === 'number' ? `#${n.toLocaleString('en-US')}` : '—';
}
