// The explorer page (explorer/) in a real browser against a running node: Debian's headless
// Chromium driven by puppeteer-core. Checks, reading the node's JSON-RPC itself for the
// expected answers:
//   a. the page's provider total and rows are registry_providers({})'s, the map is drawn and
//      shaded;
//   b. typing a country (DE) into the country filter narrows the list to that country's
//      providers, and clearing it brings them all back;
//   c. a provider registered now (signed here with @polkadot/api) appears, and the total goes
//      up by one, without a reload; a session opened now is shown among an account's sessions;
//   d. a full-page screenshot is kept.
// Prints progress lines; exits 0 when everything holds, 1 with the reason otherwise. Run by
// tests/tests/explorer.rs, which starts the node and explorer/serve.mjs.
//
// usage: node explorer-check.mjs <page url incl. ?rpc=…> <ws rpc url> <screenshot path>
// Environment: CHROMIUM (default /usr/bin/chromium).
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import puppeteer from 'puppeteer-core';
import { ApiPromise, WsProvider } from '@polkadot/api';
import { Keyring } from '@polkadot/keyring';
import { cryptoWaitReady, mnemonicGenerate } from '@polkadot/util-crypto';

const [pageUrl, rpcUrl, screenshotArg] = process.argv.slice(2);
if (!pageUrl || !rpcUrl || !screenshotArg) {
  console.error('usage: node explorer-check.mjs <page url incl. ?rpc=…> <ws rpc url> <screenshot path>');
  process.exit(2);
}
const screenshot = resolve(screenshotArg);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const UNIT = 10n ** 12n;
const PAGE_TIMEOUT_MS = 30_000;
const LIVE_TIMEOUT_MS = 60_000;
const OVERALL_TIMEOUT_MS = 240_000;

const started = Date.now();
const step = (msg) => console.log(`[explorer-check +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

class CheckFailed extends Error {}
function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`${what}: nothing after ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** What the page shows, for failure messages. */
async function snapshot(page) {
  return page.evaluate(() => ({
    connection: document.getElementById('connection')?.textContent,
    total: document.getElementById('provider-total')?.textContent,
    tableCountry: document.getElementById('providers')?.dataset.country,
    tableState: document.getElementById('providers')?.dataset.state,
    rows: [...document.querySelectorAll('#providers tbody tr[data-account]')].map((r) => `${r.dataset.account} ${r.dataset.country}`),
    filterError: document.getElementById('filter-error')?.textContent,
    accountError: document.getElementById('account-error')?.textContent,
    banner: document.getElementById('banner')?.hidden ? '' : document.getElementById('banner-text')?.textContent,
  }));
}

/** Waits until `fn(...args)` is truthy in the page; on timeout fails saying `what` and what the page shows. */
async function waitInPage(page, what, timeout, fn, ...args) {
  try {
    await page.waitForFunction(fn, { timeout, polling: 200 }, ...args);
  } catch (e) {
    if (e?.name !== 'TimeoutError') throw e;
    throw new CheckFailed(`${what}: not after ${timeout / 1000} s; the page shows ${JSON.stringify(await snapshot(page), null, 1)}`);
  }
}

const totalIs = (expected, country) => {
  const table = document.getElementById('providers');
  return document.getElementById('provider-total')?.textContent === expected
    && table?.dataset.state === 'ready'
    && table?.dataset.country === country;
};

const rowsOf = (page) => page.$$eval('#providers tbody tr[data-account]', (rows) =>
  rows.map((r) => ({ account: r.dataset.account, country: r.dataset.country, countryCell: r.cells[2]?.textContent.trim() })));

/** Signs and submits `tx`, resolves with its events once in a block; rejects on any failure. */
function submit(api, tx, signer, what) {
  return withTimeout(new Promise((resolvePromise, reject) => {
    tx.signAndSend(signer, ({ status, events, dispatchError }) => {
      if (dispatchError) {
        let reason = dispatchError.toString();
        if (dispatchError.isModule) {
          const meta = api.registry.findMetaError(dispatchError.asModule);
          reason = `${meta.section}.${meta.name}`;
        }
        reject(new CheckFailed(`${what} failed: ${reason}`));
      } else if (status.isInBlock) {
        resolvePromise({ block: status.asInBlock.toHex(), events });
      } else if (status.isInvalid || status.isDropped || status.isUsurped) {
        reject(new CheckFailed(`${what}: ${status.type}`));
      }
    }).catch(reject);
  }), 90_000, what);
}

async function main() {
  await cryptoWaitReady();
  const provider = new WsProvider(rpcUrl);
  const warn = console.warn;
  console.warn = () => {}; // polkadot.js warns about our custom RPC methods and types
  const api = await withTimeout(ApiPromise.create({ provider, throwOnConnect: true }), 60_000, 'connecting @polkadot/api');
  console.warn = warn;
  const rpc = (method, params = []) => provider.send(method, params);
  step(`node ${rpcUrl}: ${(await api.rpc.system.chain()).toString()}, ss58 prefix ${api.registry.chainSS58}`);

  const all = await rpc('registry_providers', [{}]);
  const de = await rpc('registry_providers', [{ country: 'DE' }]);
  step(`RPC: ${all.total} providers (${all.providers.map((p) => p.country).join(', ')}); ${de.total} in DE`);
  check(all.total > 0, 'the chain has no provider: run against a dev chain (Charlie in DE, Dave in NL)');
  check(de.total > 0 && de.total < all.total, `registry_providers: DE has ${de.total} of ${all.total}: a DE filter would not narrow the list`);

  step(`launching ${CHROMIUM}`);
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Tests run as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    defaultViewport: { width: 1440, height: 1000 },
  });
  try {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => {
      pageErrors.push(String(e?.message ?? e));
      step(`page error: ${e?.message ?? e}`);
    });
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') step(`page console ${m.type()}: ${m.text()}`);
    });
    page.on('requestfailed', (r) => step(`page request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));

    step(`opening ${pageUrl}`);
    const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: PAGE_TIMEOUT_MS });
    check(response?.ok(), `${pageUrl}: HTTP ${response?.status()}`);
    await waitInPage(page, 'the page connected and listed providers', PAGE_TIMEOUT_MS,
      () => document.body.dataset.loaded === 'true' && document.getElementById('connection')?.dataset.state === 'open');
    const loadId = await page.evaluate(() => window.__explorerLoadId);
    check(typeof loadId === 'string' && loadId, 'window.__explorerLoadId is not set');

    // a. The total and the rows are the RPC's.
    await waitInPage(page, `the total shows ${all.total}`, PAGE_TIMEOUT_MS, totalIs, String(all.total), '');
    const rows = await rowsOf(page);
    const expected = all.providers.map((p) => p.account);
    check(JSON.stringify(rows.map((r) => r.account)) === JSON.stringify(expected),
      `rows ${JSON.stringify(rows.map((r) => r.account))} are not registry_providers' ${JSON.stringify(expected)}`);
    const header = await page.evaluate(() => ({
      chain: document.getElementById('chain-name').textContent,
      best: document.getElementById('best-block').textContent,
    }));
    check(header.chain && header.chain !== '—', `the header names no chain: ${JSON.stringify(header)}`);
    step(`a. total ${all.total} and ${rows.length} rows as the RPC answers (chain "${header.chain}", best ${header.best})`);
    await waitInPage(page, 'the map is drawn, DE shaded and marked', PAGE_TIMEOUT_MS, () =>
      document.querySelectorAll('svg.world path.country').length > 100
      && document.querySelector('svg.world path.country[data-country="DE"].has-providers')
      && document.querySelector('svg.world .marker[data-country="DE"]'));
    const map = await page.evaluate(() => ({
      countries: document.querySelectorAll('svg.world path.country').length,
      shaded: [...document.querySelectorAll('svg.world path.country.has-providers')].map((p) => p.dataset.country),
    }));
    step(`   map: ${map.countries} countries drawn, shaded: ${map.shaded.join(', ')}`);
    const longHex = await page.evaluate(() => /0x[0-9a-f]{100,}/i.test(document.body.innerText));
    check(!longHex, 'the page shows a whole service key (a hex string of 100+ digits)');

    // b. A country filter narrows the list.
    await page.click('#filter-country', { clickCount: 3 });
    await page.type('#filter-country', 'DE', { delay: 50 });
    await waitInPage(page, `with country DE the total shows ${de.total}`, PAGE_TIMEOUT_MS, totalIs, String(de.total), 'DE');
    const deRows = await rowsOf(page);
    check(deRows.length === Math.min(de.total, 20), `with country DE: ${deRows.length} rows for a total of ${de.total}`);
    const foreign = deRows.filter((r) => r.country !== 'DE' || !r.countryCell.startsWith('DE'));
    check(foreign.length === 0, `with country DE, rows of other countries: ${JSON.stringify(foreign)}`);
    check(JSON.stringify(deRows.map((r) => r.account)) === JSON.stringify(de.providers.map((p) => p.account)),
      `with country DE, rows ${JSON.stringify(deRows)} are not registry_providers({country: "DE"})'s`);
    step(`b. country DE: total ${de.total} (of ${all.total}), every row in DE`);
    await page.click('#filter-country', { clickCount: 3 });
    await page.keyboard.press('Backspace');
    await waitInPage(page, `with the filter cleared the total shows ${all.total}`, PAGE_TIMEOUT_MS, totalIs, String(all.total), '');
    step(`   filter cleared: total ${all.total} again`);

    // c. A registration and a session, made now, appear without a reload.
    const keyring = new Keyring({ type: 'sr25519', ss58Format: api.registry.chainSS58 });
    const newcomer = await unregisteredAccount(api, keyring, rpc);
    const charlie = de.providers[0];
    const bob = keyring.addFromUri('//Bob');
    // A hostile provider: markup in its region (what it registers is shown to every visitor).
    // The page must show it as text and run nothing.
    const HOSTILE_REGION = '<img src=x onerror="window.__pwned=1">Tokyo';
    // It registers unlisted (no endpoint): the page says so instead of an address.
    const register = api.tx.providerRegistry.registerProvider(
      'Vpn',
      [],
      { country: new Uint8Array([0x4a, 0x50]) /* JP */, region: HOSTILE_REGION, hosting: 'Datacenter' },
      { perGib: 300n * (UNIT / 1000n), perHour: 40n * (UNIT / 1000n) },
      randomBytes(1952),
      // The largest stake on a dev chain: first in the page's default order (stake).
      100_000n * UNIT,
    );
    const open = api.tx.sessionEscrow.openSession(
      charlie.account,
      'Vpn',
      randomBytes(1952),
      { perGib: BigInt(charlie.prices.perGib), perHour: BigInt(charlie.prices.perHour) },
      5n * UNIT,
      1_000,
    );
    step(`registering ${newcomer.address} (JP) and opening a session Bob -> ${charlie.account} (DE)`);
    const [registered, opened] = await Promise.all([
      submit(api, register, newcomer, 'providerRegistry.registerProvider'),
      submit(api, open, bob, 'sessionEscrow.openSession'),
    ]);
    const sessionId = opened.events
      .map(({ event }) => event)
      .find((e) => e.section === 'sessionEscrow' && e.method === 'SessionOpened')?.data[0]?.toString();
    check(sessionId !== undefined, 'no SessionOpened event');
    step(`   registered in block ${registered.block}; session ${sessionId} opened in block ${opened.block}`);
    const after = await rpc('registry_providers', [{}]);
    check(after.total === all.total + 1, `registry_providers: total ${after.total} after the registration, not ${all.total + 1}`);

    await waitInPage(page, `the new provider ${newcomer.address} is listed and the total shows ${all.total + 1}`, LIVE_TIMEOUT_MS,
      (account, total) => document.querySelector(`#providers tbody tr[data-account="${account}"]`)
        && document.getElementById('provider-total').textContent === total,
      newcomer.address, String(all.total + 1));
    const sameLoad = await page.evaluate(() => window.__explorerLoadId);
    check(sameLoad === loadId, `the page was reloaded (load id ${loadId} -> ${sameLoad})`);
    const newRow = await page.$eval(`#providers tbody tr[data-account="${newcomer.address}"]`, (r) => ({
      country: r.dataset.country,
      cells: [...r.cells].map((c) => c.textContent.trim()),
    }));
    check(newRow.country === 'JP', `the new provider's row says country ${newRow.country}`);
    check(newRow.cells.includes('unlisted'), `the unlisted provider's row does not say "unlisted": ${JSON.stringify(newRow.cells)}`);
    const hostile = await page.evaluate((account) => ({
      pwned: window.__pwned,
      images: document.querySelectorAll(`#providers tr[data-account="${account}"] img`).length,
      text: document.querySelector(`#providers tr[data-account="${account}"]`).textContent,
    }), newcomer.address);
    check(hostile.pwned === undefined && hostile.images === 0 && hostile.text.includes(HOSTILE_REGION),
      `the markup in the new provider's region was not shown as text: ${JSON.stringify(hostile)}`);
    await waitInPage(page, 'the live feed lists the registration', PAGE_TIMEOUT_MS,
      (account) => document.querySelector(`#live-feed li[data-change="added"][data-account="${account}"]`), newcomer.address);
    step(`c. new provider listed without a reload (total ${all.total + 1}): ${newRow.cells.slice(0, 9).join(' | ')}`);

    await page.click('#account-input', { clickCount: 3 });
    await page.type('#account-input', bob.address);
    await page.keyboard.press('Enter');
    await waitInPage(page, `session ${sessionId} among Bob's sessions`, PAGE_TIMEOUT_MS,
      (id) => document.querySelector(`#client-sessions tbody tr[data-session="${id}"]`), sessionId);
    const session = await page.$eval(`#client-sessions tbody tr[data-session="${sessionId}"]`, (r) => [...r.cells].map((c) => c.textContent.trim()));
    // Session, counterpart, service, deposit, settled, remaining, status, …
    check(session[3] === '5 LAT' && session[4] === '0 LAT' && session[5] === '5 LAT' && session[6] === 'open',
      `session ${sessionId} shows ${JSON.stringify(session)}, not deposit 5 LAT, settled 0 LAT, remaining 5 LAT, open`);
    step(`   Bob's sessions: ${session.join(' | ')}`);
    check(pageErrors.length === 0, `the page threw: ${pageErrors.join('; ')}`);

    // d. The screenshot.
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    step(`d. screenshot: ${statSync(screenshot).size} bytes`);
    console.log(`screenshot: ${screenshot}`);
  } finally {
    await browser.close();
    await api.disconnect();
  }
}

/** //Eve or //Ferdie (endowed in dev) if not yet a provider, else a new account Alice funds. */
async function unregisteredAccount(api, keyring, rpc) {
  for (const uri of ['//Eve', '//Ferdie']) {
    const pair = keyring.addFromUri(uri);
    if ((await rpc('registry_provider', [pair.address])) === null) return pair;
  }
  const pair = keyring.addFromMnemonic(mnemonicGenerate());
  step(`//Eve and //Ferdie are providers already: funding a new account ${pair.address} from //Alice`);
  await submit(api, api.tx.balances.transferKeepAlive(pair.address, 110_000n * UNIT), keyring.addFromUri('//Alice'), 'balances.transferKeepAlive');
  return pair;
}

withTimeout(main(), OVERALL_TIMEOUT_MS, 'the explorer check').then(() => process.exit(0), (e) => {
  console.error(`explorer check failed: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
  process.exit(1);
});
