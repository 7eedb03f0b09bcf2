// The explorer's static server: Node's built-in modules only, nothing to build.
//
// usage: node explorer/serve.mjs [--port 8080] [--host 127.0.0.1]
//
// Serves the page's own files (a fixed list) and, under /vendor/, only the few files the page
// loads from explorer/node_modules (installed by scripts/setup.sh from package-lock.json).
// Anything else is a 404: no directory listing, no path is ever joined from the request.
// Prints one line, `explorer: http://HOST:PORT/`, once listening (with --port 0, the port the
// system chose); SIGTERM or SIGINT closes it.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const MODULES = join(HERE, 'node_modules');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
};

// URL path -> file. The only files this server ever reads.
const FILES = new Map([
  ['/', join(HERE, 'index.html')],
  ['/index.html', join(HERE, 'index.html')],
  ['/style.css', join(HERE, 'style.css')],
  ['/explorer.js', join(HERE, 'explorer.js')],
  ['/rpc.js', join(HERE, 'rpc.js')],
  ['/format.js', join(HERE, 'format.js')],
  ['/map.js', join(HERE, 'map.js')],
  // world-atlas 2.0.2: country outlines, TopoJSON, ids are ISO 3166-1 numeric codes.
  ['/vendor/countries-110m.json', join(MODULES, 'world-atlas', 'countries-110m.json')],
  // topojson-client 3.1.0: its browser (UMD) build; defines `topojson` on the global object.
  ['/vendor/topojson-client.min.js', join(MODULES, 'topojson-client', 'dist', 'topojson-client.min.js')],
  // i18n-iso-countries 7.14.0: [alpha-2, alpha-3, numeric, ISO 3166-2] for every country,
  // and the English names.
  ['/vendor/iso-codes.json', join(MODULES, 'i18n-iso-countries', 'codes.json')],
  ['/vendor/iso-names-en.json', join(MODULES, 'i18n-iso-countries', 'langs', 'en.json')],
]);

function parseArgs(argv) {
  const opts = { port: 8080, host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    if (flag === '--port') {
      const v = value();
      opts.port = Number(v);
      if (!/^\d+$/.test(v) || opts.port > 65535) usage(`--port: not a port number: ${v}`);
    } else if (flag === '--host') {
      opts.host = value();
    } else if (flag === '--help' || flag === '-h') {
      usage();
    } else {
      usage(`unknown argument: ${arg}`);
    }
  }
  return opts;
}

function usage(error) {
  const text = 'usage: node explorer/serve.mjs [--port 8080] [--host 127.0.0.1]';
  if (error) {
    console.error(`explorer: ${error}\n${text}`);
    process.exit(2);
  }
  console.log(text);
  process.exit(0);
}

function send(res, status, type, body, head) {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    // The page talks to any node the user names (?rpc=ws://…), and to nothing else.
    'Content-Security-Policy':
      "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'",
  });
  res.end(head ? undefined : body);
}

async function handle(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  let path;
  try {
    path = new URL(req.url, 'http://localhost').pathname;
  } catch {
    return send(res, 400, 'text/plain; charset=utf-8', 'bad request\n');
  }
  const file = FILES.get(path);
  if (!file) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
  let body;
  try {
    body = await readFile(file);
  } catch (e) {
    const missing = e.code === 'ENOENT';
    if (missing && file.startsWith(MODULES)) {
      console.error(`explorer: ${file} is missing: run scripts/setup.sh (npm ci in explorer/)`);
    }
    return send(res, missing ? 404 : 500, 'text/plain; charset=utf-8', missing ? 'not found\n' : 'error\n');
  }
  const ext = file.slice(file.lastIndexOf('.'));
  send(res, 200, TYPES[ext] ?? 'application/octet-stream', body, req.method === 'HEAD');
}

const opts = parseArgs(process.argv.slice(2));
const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    console.error(`explorer: ${req.url}: ${e.stack || e}`);
    if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'error\n');
    else res.destroy();
  });
});
server.on('error', (e) => {
  console.error(`explorer: cannot listen on ${opts.host}:${opts.port}: ${e.message}`);
  process.exit(1);
});
server.listen(opts.port, opts.host, () => {
  const { port } = server.address();
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  console.log(`explorer: http://${host}:${port}/`);
});

function stop() {
  server.close(() => process.exit(0));
  // Keep-alive connections would hold close() open: end them.
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
