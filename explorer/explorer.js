// The Interlattice explorer: providers on a world map and in a filterable list, the
// registry's totals, an account's sessions, all kept current through the node's
// subscriptions. Talks to the node's WebSocket JSON-RPC only (docs/rpc.md); the node is
// `?rpc=ws://host:port`, by default ws://<this page's host>:9944.
import { RpcClient, RpcError, Disconnected } from './rpc.js';
import {
  el, exactAmount, formatAmount, formatBlock, parseAmount, setToken, shortAccount, shortKey,
} from './format.js';
import { LEGEND, WorldMap } from './map.js';

// Set once per page load: a test reads it to tell a live update from a reload.
window.__explorerLoadId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

const $ = (id) => document.getElementById(id);
const FEED_MAX = 12;
const REFRESH_DEBOUNCE_MS = 300;
const INPUT_DEBOUNCE_MS = 300;
const SESSIONS_PAGE = 20;

const state = {
  offset: 0,
  limit: 20,
  query: null, // the query of the providers on screen
  providersSeq: 0,
  statsSeq: 0,
  stats: null,
  names: new Map(), // alpha-2 -> English name
  map: null,
  account: '', // the account whose sessions are shown
  providerSessions: [], // pages loaded so far, flattened
  providerSessionsMore: false,
  sessionsSeq: 0,
  sessionsBusy: false,
  refreshTimer: null,
};

// ---- The node ---------------------------------------------------------------------------

function nodeUrl() {
  const given = new URLSearchParams(location.search).get('rpc');
  if (given) return given;
  const host = location.hostname || '127.0.0.1';
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:9944`;
}

const url = nodeUrl();
$('node-url').textContent = url;
const rpc = new RpcClient(url);

let countdown = null;
rpc.addEventListener('state', (ev) => {
  const { state: s, retryIn, error } = ev.detail;
  const badge = $('connection');
  badge.dataset.state = s;
  document.body.classList.toggle('stale', s !== 'open');
  clearInterval(countdown);
  if (s === 'open') {
    badge.textContent = 'connected';
    $('banner').hidden = true;
    return;
  }
  setLive('off');
  if (s === 'connecting') {
    badge.textContent = 'connecting…';
    if (!$('banner').hidden) $('banner-text').textContent = `Reconnecting to ${url}…`;
    return;
  }
  badge.textContent = 'disconnected';
  $('banner').hidden = false;
  if (error) {
    $('banner-text').textContent = `Cannot connect to ${url}: ${error}`;
    return;
  }
  if (retryIn !== undefined) {
    const until = Date.now() + retryIn;
    const tick = () => {
      const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      badge.textContent = `reconnecting in ${s} s`;
      $('banner-text').textContent = `Disconnected from ${url}; reconnecting in ${s} s. What is shown may be out of date.`;
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
});
$('retry').addEventListener('click', () => rpc.retryNow());

rpc.addEventListener('open', async () => {
  setLive('on');
  try {
    const [chain, properties] = await Promise.all([rpc.call('system_chain'), rpc.call('system_properties')]);
    setToken(properties);
    $('chain-name').textContent = chain;
  } catch (e) {
    report(e);
  }
  refreshAll();
});

rpc.subscribe({
  subscribe: 'chain_subscribeNewHeads',
  unsubscribe: 'chain_unsubscribeNewHeads',
  notification: 'chain_newHead',
  onData: (header) => {
    const n = Number.parseInt(header?.number, 16);
    if (Number.isFinite(n)) $('best-block').textContent = formatBlock(n);
    // Sessions change with settlements, which the registry subscription does not report.
    if (state.account) refreshSessions();
  },
  onError: report,
});

rpc.subscribe({
  subscribe: 'registry_subscribeProviders',
  unsubscribe: 'registry_unsubscribeProviders',
  notification: 'registry_providerChange',
  onData: (change) => {
    addFeed(change);
    scheduleRefresh();
  },
  onError: (e) => {
    // Ended by the node (too far behind) or refused: the client subscribes again; re-read
    // what the missed notifications would have changed.
    addFeedNote(e.rpcMessage || e.message);
    scheduleRefresh();
  },
});

function report(e) {
  if (e instanceof Disconnected) return; // the banner says it
  console.error(e);
}

function setLive(s) {
  const live = $('live-state');
  live.dataset.state = s;
  live.textContent = s;
}

// ---- Providers ------------------------------------------------------------------------

const form = $('filters');

/** The filters as a registry_providers query, or null (and a message) if one is invalid. */
function readQuery() {
  const f = new FormData(form);
  const query = { activeOnly: !f.get('inactive'), order: f.get('order') || 'stake', offset: state.offset, limit: state.limit };
  const problems = [];
  for (const key of ['service', 'hosting']) {
    const v = f.get(key);
    if (v) query[key] = v;
  }
  const country = String(f.get('country') ?? '').trim().toUpperCase();
  if (country.length === 1 && /^[A-Z]$/.test(country)) return null; // still being typed
  if (country) {
    if (/^[A-Z]{2}$/.test(country)) query.country = country;
    else problems.push('Country: a two-letter ISO 3166-1 code, e.g. DE');
  }
  for (const [key, label] of [['maxPricePerGib', 'Max price / GiB'], ['maxPricePerHour', 'Max price / hour'], ['minStake', 'Min stake']]) {
    const amount = parseAmount(String(f.get(key) ?? ''));
    form.elements[key].setAttribute('aria-invalid', String(amount === null));
    if (amount === null) problems.push(`${label}: an amount in LAT, e.g. 0.5`);
    else if (amount !== '') query[key] = amount;
  }
  form.elements.country.setAttribute('aria-invalid', String(problems.some((p) => p.startsWith('Country'))));
  showError($('filter-error'), problems.join('; '));
  return problems.length ? null : query;
}

function showError(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

async function refreshProviders() {
  const query = readQuery();
  if (!query) return;
  const seq = ++state.providersSeq;
  const table = $('providers');
  table.dataset.state = 'loading';
  let page;
  try {
    page = await rpc.call('registry_providers', [query]);
  } catch (e) {
    if (seq !== state.providersSeq) return;
    table.dataset.state = 'error';
    if (e instanceof RpcError) showError($('filter-error'), e.rpcMessage);
    else report(e);
    return;
  }
  if (seq !== state.providersSeq) return; // a newer query is on its way
  if (page.total > 0 && query.offset >= page.total) {
    // The page emptied (providers left): show the last one that has rows.
    state.offset = Math.floor((page.total - 1) / state.limit) * state.limit;
    return refreshProviders();
  }
  state.query = query;
  renderProviders(page, query);
  updateMap();
}

function renderProviders(page, query) {
  const table = $('providers');
  $('provider-total').textContent = String(page.total);
  $('provider-noun').textContent = page.total === 1 ? 'provider' : 'providers';
  table.dataset.country = query.country ?? '';
  table.dataset.state = 'ready';
  const rows = page.providers.map(providerRow);
  if (!rows.length) {
    rows.push(el('tr', { class: 'empty' }, el('td', { colspan: 11 }, 'No provider matches these filters.')));
  }
  table.tBodies[0].replaceChildren(...rows);
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.providers.length;
  $('page-info').textContent = `${first}–${last} of ${page.total}`;
  $('page-prev').disabled = page.offset === 0;
  $('page-next').disabled = last >= page.total;
  $('providers-at').textContent = page.at ? `at block ${formatBlock(page.at.number)} (${page.at.source})` : '';
  document.body.dataset.loaded = 'true';
}

const SERVICES = { vpn: 'VPN', cdn: 'CDN', both: 'VPN + CDN' };
const HOSTING = { datacenter: 'data centre', residential: 'residential' };

// A service offered without an endpoint of its own form (a URL for the dCDN, host:port for
// the dVPN) is unlisted: the provider reveals an endpoint, sealed, to each paying client.
function unlistedServices(services, endpoints) {
  const offers = { vpn: services === 'vpn' || services === 'both', cdn: services === 'cdn' || services === 'both' };
  const cdnListed = endpoints.some((e) => e.includes('://'));
  const vpnListed = endpoints.some((e) => !e.includes('://'));
  const unlisted = [];
  if (offers.vpn && !vpnListed) unlisted.push('VPN');
  if (offers.cdn && !cdnListed) unlisted.push('CDN');
  return unlisted;
}

function endpointsCell(services, endpoints) {
  const unlisted = unlistedServices(services, endpoints);
  const note = unlisted.length
    ? el('span', { class: 'badge unlisted', title: 'endpoint revealed only to paying clients, sealed to their session key' },
      `unlisted${endpoints.length ? ` (${unlisted.join(', ')})` : ''}`)
    : null;
  return el('td', { class: 'endpoints', title: endpoints.join('\n') },
    endpoints[0] ?? (note ? '' : '—'), endpoints.length > 1 ? el('span', { class: 'sub' }, ` +${endpoints.length - 1}`) : null,
    endpoints.length && note ? ' ' : null, note);
}

function providerRow(p) {
  const amount = (v, extra) => el('td', { class: 'num', title: exactAmount(v) }, formatAmount(v), extra);
  const unbonding = p.unbonding && p.unbonding !== '0'
    ? el('div', { class: 'sub', title: exactAmount(p.unbonding) }, `+ ${formatAmount(p.unbonding)} unbonding`)
    : null;
  let status = 'active';
  let statusTitle = 'registered, with at least the minimum stake';
  if (p.status === 'deregistered') {
    status = 'deregistered';
    statusTitle = 'deregistered: its stake is unbonding';
  } else if (!p.active) {
    status = 'inactive';
    statusTitle = 'registered, but its stake is below the minimum';
  }
  const endpoints = Array.isArray(p.endpoints) ? p.endpoints : [];
  return el(
    'tr',
    { 'data-account': p.account, 'data-country': p.country },
    el('td', {}, el('button', {
      type: 'button', class: 'link mono', title: `${p.account}\n(show its sessions)`,
      onclick: () => showSessionsOf(p.account),
    }, shortAccount(p.account))),
    el('td', {}, SERVICES[p.services] ?? String(p.services)),
    el('td', { class: 'country', title: state.names.get(p.country) ?? '' },
      el('span', { class: 'code' }, p.country),
      ' ',
      state.names.get(p.country) ?? '',
      p.region ? el('div', { class: 'sub' }, p.region) : null),
    el('td', {}, HOSTING[p.hosting] ?? String(p.hosting)),
    amount(p.stake, unbonding),
    amount(p.prices?.perGib),
    amount(p.prices?.perHour),
    el('td', {}, el('span', { class: `badge ${status}`, title: statusTitle }, status)),
    el('td', { class: 'num' }, formatBlock(p.registeredAt)),
    endpointsCell(p.services, endpoints),
    el('td', { class: 'mono', title: 'ML-DSA-65 key its agent proves in handshakes (1952 bytes)' }, shortKey(p.serviceKey)),
  );
}

let inputTimer = null;
form.addEventListener('input', (ev) => {
  const debounce = ev.target instanceof HTMLInputElement && ev.target.type !== 'checkbox';
  clearTimeout(inputTimer);
  const go = () => {
    state.offset = 0;
    refreshProviders();
    if (ev.target.name === 'inactive') updateMap();
  };
  if (debounce) inputTimer = setTimeout(go, INPUT_DEBOUNCE_MS);
  else go();
});
form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  clearTimeout(inputTimer);
  state.offset = 0;
  refreshProviders();
});
form.addEventListener('reset', () => {
  // After the browser has reset the fields.
  setTimeout(() => {
    state.offset = 0;
    refreshProviders();
  });
});
$('page-prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - state.limit);
  refreshProviders();
});
$('page-next').addEventListener('click', () => {
  state.offset += state.limit;
  refreshProviders();
});
$('page-size').addEventListener('change', (ev) => {
  state.limit = Number(ev.target.value);
  state.offset = 0;
  refreshProviders();
});

/** The country filter, from the map or the stats; choosing the current one clears it. */
function selectCountry(code) {
  const input = form.elements.country;
  input.value = input.value.trim().toUpperCase() === code ? '' : code;
  clearTimeout(inputTimer);
  state.offset = 0;
  refreshProviders();
  $('providers-title').scrollIntoView?.({ behavior: 'smooth', block: 'start' });
}

// ---- Stats and map ----------------------------------------------------------------------

async function refreshStats() {
  const seq = ++state.statsSeq;
  let stats;
  try {
    stats = await rpc.call('registry_stats');
  } catch (e) {
    report(e);
    return;
  }
  if (seq !== state.statsSeq) return;
  state.stats = stats;
  renderStats(stats);
  updateMap();
}

function renderStats(s) {
  const pair = (c) => `${c?.active ?? 0} active / ${c?.registered ?? 0} registered`;
  const rows = [
    ['Providers', pair(s.providers)],
    ['VPN', pair(s.vpn)],
    ['CDN', pair(s.cdn)],
    ['Total stake', formatAmount(s.totalStake), exactAmount(s.totalStake)],
    ['Unbonding', formatAmount(s.totalUnbonding), exactAmount(s.totalUnbonding)],
    ['Minimum stake', formatAmount(s.minStake), exactAmount(s.minStake)],
  ];
  $('stats').replaceChildren(
    ...rows.map(([k, v, title]) => el('div', { 'data-stat': k }, el('dt', {}, k), el('dd', { title }, v))),
  );
  const countries = [...(s.countries ?? [])].sort((a, b) => b.active - a.active || b.registered - a.registered || a.country.localeCompare(b.country));
  $('country-stats').tBodies[0].replaceChildren(
    ...countries.map((c) =>
      el('tr', { 'data-country': c.country },
        el('td', {}, el('button', { type: 'button', class: 'link', title: 'filter by this country', onclick: () => selectCountry(c.country) },
          el('span', { class: 'code' }, c.country), ' ', state.names.get(c.country) ?? '')),
        el('td', { class: 'num' }, c.active),
        el('td', { class: 'num' }, c.registered))),
  );
  $('stats-at').textContent = s.at ? `at block ${formatBlock(s.at.number)} (${s.at.source})` : '';
}

/** Counts per country as the list counts them: active only unless inactive are included. */
function countryCounts() {
  const inactive = form.elements.inactive.checked;
  return new Map((state.stats?.countries ?? []).map((c) => [c.country, inactive ? c.registered : c.active]));
}

function updateMap() {
  if (!state.map || !state.stats) return;
  const counts = countryCounts();
  const selected = state.query?.country ?? '';
  state.map.update(counts, selected);
  const off = [...counts].filter(([code, n]) => n > 0 && !state.map.has(code));
  $('off-map').textContent = off.length
    ? `Too small for this map: ${off.map(([code, n]) => `${code} ${n}`).join(', ')}`
    : '';
}

async function loadMap() {
  const get = async (path) => {
    const res = await fetch(path);
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  };
  try {
    const [topology, codes, names] = await Promise.all([
      get('vendor/countries-110m.json'),
      get('vendor/iso-codes.json'),
      get('vendor/iso-names-en.json'),
    ]);
    for (const [code, name] of Object.entries(names.countries ?? {})) {
      state.names.set(code, Array.isArray(name) ? name[0] : name);
    }
    $('country-codes').replaceChildren(
      ...[...state.names].sort((a, b) => a[0].localeCompare(b[0])).map(([code, name]) => el('option', { value: code }, name)),
    );
    state.map = new WorldMap($('map'), {
      topology,
      codes,
      names: Object.fromEntries(state.names),
      onSelect: selectCountry,
    });
    $('legend').replaceChildren(
      el('li', { class: 'muted' }, 'providers:'),
      ...LEGEND.map(({ label, colour }) => {
        const swatch = el('span', { class: 'swatch' });
        swatch.style.background = colour; // CSSOM, allowed by the page's CSP
        return el('li', {}, swatch, label);
      }),
    );
    // Names arrived: the rows and stats drawn before can say them.
    if (state.stats) renderStats(state.stats);
    updateMap();
  } catch (e) {
    console.error(e);
    $('map').replaceChildren(el('p', { class: 'error' }, `The map could not be drawn: ${e.message}`));
  }
}

// ---- Live feed ------------------------------------------------------------------------

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    refreshProviders();
    refreshStats();
  }, REFRESH_DEBOUNCE_MS);
}

function addFeed(change) {
  const feed = $('live-feed');
  feed.querySelector('li.muted')?.remove();
  const p = change.provider;
  const details = p ? [p.country, SERVICES[p.services] ?? p.services, p.status === 'deregistered' ? 'deregistered' : null].filter(Boolean) : [];
  const li = el('li', { 'data-change': change.change, 'data-account': change.account },
    el('span', { class: 'block' }, formatBlock(change.number)), ' ',
    el('span', { class: `badge ${change.change}` }, change.change), ' ',
    el('button', { type: 'button', class: 'link mono', title: change.account, onclick: () => showSessionsOf(change.account) },
      shortAccount(change.account)),
    details.length ? ` · ${details.join(' · ')}` : '');
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

function addFeedNote(text) {
  const feed = $('live-feed');
  feed.prepend(el('li', { class: 'note' }, text));
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

// ---- Sessions ---------------------------------------------------------------------------

// [heading, numeric (right-aligned)]
const SESSION_COLUMNS = [
  ['Session', true], ['Counterpart', false], ['Service', false], ['Deposit', true], ['Settled', true],
  ['Remaining', true], ['Status', false], ['Opened', true], ['Expires', true], ['Settle until', true],
];

function sessionRow(s, counterpart) {
  const amount = (v) => el('td', { class: 'num', title: exactAmount(v) }, formatAmount(v));
  const who = s[counterpart];
  return el('tr', { 'data-session': s.sessionId },
    el('td', { class: 'num mono' }, s.sessionId),
    el('td', {}, el('button', { type: 'button', class: 'link mono', title: `${who}\n(show its sessions)`, onclick: () => showSessionsOf(who) }, shortAccount(who))),
    el('td', {}, SERVICES[s.service] ?? String(s.service)),
    amount(s.deposit),
    amount(s.settled),
    amount(s.remaining),
    el('td', {}, el('span', { class: `badge ${s.status}` }, s.status)),
    el('td', { class: 'num' }, formatBlock(s.openedAt)),
    el('td', { class: 'num' }, formatBlock(s.expiresAt)),
    el('td', { class: 'num' }, formatBlock(s.settleUntil)));
}

function renderSessions(table, sessions, counterpart, countNode) {
  if (!table.tHead.rows.length) {
    table.tHead.append(el('tr', {}, ...SESSION_COLUMNS.map(([c, num]) => el('th', { class: num ? 'num' : undefined }, c))));
  }
  const rows = sessions.map((s) => sessionRow(s, counterpart));
  if (!rows.length) rows.push(el('tr', { class: 'empty' }, el('td', { colspan: SESSION_COLUMNS.length }, 'None.')));
  table.tBodies[0].replaceChildren(...rows);
  countNode.textContent = `(${sessions.length})`;
}

function showSessionsOf(account) {
  $('account-input').value = account;
  loadSessions(account);
  $('sessions-title').scrollIntoView?.({ behavior: 'smooth', block: 'start' });
}

$('account-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const account = $('account-input').value.trim();
  if (!account) {
    showError($('account-error'), 'An SS58 address (or 0x + 64 hex digits).');
    return;
  }
  loadSessions(account);
});

/** Shows an account's sessions: as client (all) and as provider (the first page). */
async function loadSessions(account) {
  const seq = ++state.sessionsSeq;
  showError($('account-error'), '');
  try {
    const [asClient, asProvider] = await Promise.all([
      rpc.call('escrow_clientSessions', [account]),
      rpc.call('escrow_providerSessions', [account, { limit: SESSIONS_PAGE }]),
    ]);
    if (seq !== state.sessionsSeq) return;
    state.account = account;
    state.providerSessions = asProvider;
    state.providerSessionsMore = asProvider.length === SESSIONS_PAGE;
    renderAllSessions(asClient);
  } catch (e) {
    if (seq !== state.sessionsSeq) return;
    showError($('account-error'), e instanceof RpcError ? e.rpcMessage : e.message);
    if (!(e instanceof Disconnected)) {
      state.account = '';
      $('sessions').hidden = true;
    }
  }
}

function renderAllSessions(asClient) {
  $('sessions').hidden = false;
  $('sessions').dataset.account = state.account;
  renderSessions($('client-sessions'), asClient, 'provider', $('client-count'));
  renderSessions($('provider-sessions'), state.providerSessions, 'client', $('provider-count'));
  $('provider-more').hidden = !state.providerSessionsMore;
}

$('provider-more').addEventListener('click', async () => {
  const last = state.providerSessions.at(-1);
  if (!last) return;
  const account = state.account;
  try {
    const page = await rpc.call('escrow_providerSessions', [account, { after: last.sessionId, limit: SESSIONS_PAGE }]);
    if (account !== state.account) return;
    state.providerSessions = state.providerSessions.concat(page);
    state.providerSessionsMore = page.length === SESSIONS_PAGE;
    renderSessions($('provider-sessions'), state.providerSessions, 'client', $('provider-count'));
    $('provider-more').hidden = !state.providerSessionsMore;
  } catch (e) {
    showError($('account-error'), e instanceof RpcError ? e.rpcMessage : e.message);
  }
});

/** Re-reads the shown account's sessions (each new block), as many as are shown. */
async function refreshSessions() {
  if (!state.account || state.sessionsBusy) return;
  state.sessionsBusy = true;
  const account = state.account;
  const seq = state.sessionsSeq;
  try {
    const shown = Math.min(100, Math.max(SESSIONS_PAGE, state.providerSessions.length));
    const [asClient, asProvider] = await Promise.all([
      rpc.call('escrow_clientSessions', [account]),
      rpc.call('escrow_providerSessions', [account, { limit: shown }]),
    ]);
    if (seq !== state.sessionsSeq || account !== state.account) return;
    state.providerSessions = asProvider;
    state.providerSessionsMore = asProvider.length === shown;
    renderAllSessions(asClient);
  } catch (e) {
    report(e);
  } finally {
    state.sessionsBusy = false;
  }
}

// ---- Start ------------------------------------------------------------------------------

function refreshAll() {
  refreshProviders();
  refreshStats();
  if (state.account) refreshSessions();
}

loadMap();
if (!/^wss?:\/\//i.test(url)) {
  $('connection').dataset.state = 'closed';
  $('connection').textContent = 'no node';
  $('banner').hidden = false;
  $('banner-text').textContent = `?rpc= must be a ws:// or wss:// URL, not ${url}`;
  $('retry').hidden = true;
} else {
  rpc.start();
}
