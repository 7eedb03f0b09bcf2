// Unmodified @polkadot/api against a running Interlattice node, as a wallet or dApp uses it:
// initialise from the chain's metadata, read storage and constants, decode a block that holds
// a settlement call, and sign and submit a transfer. Prints one JSON object on stdout; the
// Rust test tests/tests/polkadot_js.rs starts the node and checks every field.
//
// usage: node check.mjs <ws-url> <hash of a block holding a settlement call>
//                       [<hash of a block holding ML-DSA-signed transactions>]
import { ApiPromise, WsProvider } from '@polkadot/api';
import { Keyring } from '@polkadot/keyring';
import { cryptoWaitReady, mnemonicGenerate } from '@polkadot/util-crypto';

const [url, settlementBlock, mlDsaBlock] = process.argv.slice(2);
if (!url || !settlementBlock) {
  console.error('usage: node check.mjs <ws-url> <block-hash>');
  process.exit(2);
}

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)),
  ]);
}

async function main() {
  await cryptoWaitReady();
  const warnings = [];
  const warn = console.warn;
  console.warn = (...args) => { warnings.push(args.join(' ')); };
  // throwOnConnect: a failed connection is an error, not an endless retry.
  const api = await withTimeout(
    ApiPromise.create({ provider: new WsProvider(url), throwOnConnect: true }),
    60_000,
    'initialisation',
  );
  console.warn = warn;
  const out = { warnings };
  await api.isReadyOrError;
  out.chain = (await api.rpc.system.chain()).toString();
  out.ss58Prefix = api.registry.chainSS58;
  out.tokenSymbol = api.registry.chainTokens[0];
  out.tokenDecimals = api.registry.chainDecimals[0];
  out.specName = api.runtimeVersion.specName.toString();

  // Constants, as apps' "Developer > Chain state > Constants" reads them.
  out.constants = {
    minDeposit: api.consts.sessionEscrow.minDeposit.toString(),
    maxSessionsPerClient: api.consts.sessionEscrow.maxSessionsPerClient.toNumber(),
    maxReceiptsPerBatch: api.consts.sessionEscrow.maxReceiptsPerBatch.toNumber(),
    minStake: api.consts.providerRegistry.minStake.toString(),
  };

  // Storage: every provider and every session, decoded with the metadata's types.
  const providers = await api.query.providerRegistry.providers.entries();
  out.providers = providers.map(([key, value]) => {
    const p = value.unwrap();
    return {
      account: key.args[0].toString(),
      country: new TextDecoder().decode(p.location.country.toU8a(true)),
      services: p.services.toJSON(),
      serviceKeyBytes: p.serviceKey.toU8a(true).length,
    };
  });
  const sessions = await api.query.sessionEscrow.sessions.entries();
  out.sessions = sessions.map(([key, value]) => {
    const s = value.unwrap();
    return {
      id: key.args[0].toNumber(),
      client: s.client.toString(),
      provider: s.provider.toString(),
      deposit: s.deposit.toString(),
      settled: s.settled.toString(),
      clientKeyBytes: s.clientKey.toU8a(true).length,
    };
  });
  out.nextSessionId = (await api.query.sessionEscrow.nextSessionId()).toNumber();

  // A block with a settlement call: every extrinsic decoded, the receipts' fields read.
  const block = await api.rpc.chain.getBlock(settlementBlock);
  out.settlementBlock = { extrinsics: [] };
  for (const xt of block.block.extrinsics) {
    const { section, method } = xt.method;
    const entry = { call: `${section}.${method}`, signer: xt.isSigned ? xt.signer.toString() : null };
    if (section === 'sessionEscrow' && (method === 'settleReceipts' || method === 'settleReceipt')) {
      const receipts = method === 'settleReceipts' ? xt.method.args[0] : [xt.method.args[0]];
      entry.receipts = receipts.map((r) => ({
        sessionId: r.receipt.sessionId.toNumber(),
        sequence: r.receipt.sequence.toNumber(),
        amount: r.receipt.amount.toString(),
        signatureBytes: r.signature.toU8a(true).length,
      }));
    }
    // Re-encoding what was decoded gives the same bytes: the metadata describes the wire format.
    entry.roundTrip = xt.toHex() === api.createType('Extrinsic', xt.toHex()).toHex();
    out.settlementBlock.extrinsics.push(entry);
  }

  // A block with ML-DSA-65-signed transactions: decoded by the signature type the metadata
  // declares (variants 3 and 4 of the chain's own signature enum), and re-encoded unchanged.
  if (mlDsaBlock) {
    const pqBlock = await api.rpc.chain.getBlock(mlDsaBlock);
    out.mlDsaBlock = { extrinsics: [] };
    for (const xt of pqBlock.block.extrinsics) {
      const { section, method } = xt.method;
      const entry = { call: `${section}.${method}`, signer: xt.isSigned ? xt.signer.toString() : null };
      if (xt.isSigned) {
        // The signature enum itself (`xt.signature` is the variant's value).
        const multi = xt.inner.signature.multiSignature;
        entry.signatureType = multi.type;
        entry.signatureBytes = multi.toU8a().length;
      }
      entry.roundTrip = xt.toHex() === api.createType('Extrinsic', xt.toHex()).toHex();
      out.mlDsaBlock.extrinsics.push(entry);
    }
  }

  // A signed transfer from Alice to a fresh account, with every transaction extension the
  // chain declares (our CheckReceipts among them), watched until it is in a block.
  const keyring = new Keyring({ type: 'sr25519', ss58Format: api.registry.chainSS58 });
  const alice = keyring.addFromUri('//Alice');
  const dest = keyring.addFromMnemonic(mnemonicGenerate()).address;
  const amount = 1_234_567_890_000n;
  out.transfer = await withTimeout(new Promise((resolve, reject) => {
    api.tx.balances.transferKeepAlive(dest, amount).signAndSend(alice, ({ status, events, dispatchError }) => {
      if (dispatchError) {
        reject(new Error(`transfer failed: ${dispatchError.toString()}`));
      } else if (status.isInBlock) {
        resolve({
          block: status.asInBlock.toHex(),
          events: events.map(({ event }) => `${event.section}.${event.method}`),
        });
      } else if (status.isInvalid || status.isDropped || status.isUsurped) {
        reject(new Error(`transfer ${status.type}`));
      }
    }).catch(reject);
  }), 90_000, 'transfer');
  const account = await api.query.system.account.at(out.transfer.block, dest);
  out.transfer.destFree = account.data.free.toString();
  out.transfer.amount = amount.toString();
  out.signedExtensions = api.registry.signedExtensions;
  await api.disconnect();
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => {
  console.error(`polkadot.js check failed: ${e.stack || e}`);
  process.exit(1);
});
