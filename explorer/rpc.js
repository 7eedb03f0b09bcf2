// A WebSocket JSON-RPC 2.0 client for the node: request ids and a map of pending calls,
// subscriptions that survive reconnects, and reconnection with exponential backoff.
//
// Events (addEventListener): `state` (detail: {state: "connecting" | "open" | "closed",
// retryIn?: ms, error?: string}) and `open` (each time a connection is established, after
// the subscriptions are re-sent: the moment to re-read whatever may have changed).

const CALL_TIMEOUT_MS = 30_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 15_000;

/** An error answer from the node: `code` and `message` as the node sent them. */
export class RpcError extends Error {
  constructor(method, error) {
    super(`${method}: ${error?.message ?? 'error'}`);
    this.code = error?.code;
    this.data = error?.data;
    this.rpcMessage = error?.message ?? '';
  }
}

/** The connection is gone; calls in flight fail with this. */
export class Disconnected extends Error {}

export class RpcClient extends EventTarget {
  /** @param {string} url ws:// or wss:// */
  constructor(url) {
    super();
    this.url = url;
    this.state = 'closed';
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer, method}
    this.subscriptions = new Set(); // specs, kept across reconnects
    this.byId = new Map(); // this connection's subscription id -> spec
    this.ws = null;
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.ws?.close();
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...extra } }));
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      // A malformed URL: retrying will not help, but the state says why.
      this.setState('closed', { error: String(e.message ?? e) });
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => this.opened(ws));
    ws.addEventListener('message', (ev) => this.received(ev.data));
    ws.addEventListener('close', () => this.closed(ws));
    // An `error` is always followed by `close`, which does the work.
  }

  async opened(ws) {
    if (ws !== this.ws) return;
    this.backoff = BACKOFF_MIN_MS;
    this.setState('open');
    // Subscriptions first, then `open`: a reader re-reading on `open` misses nothing that
    // changes after its read.
    await Promise.all([...this.subscriptions].map((spec) => this.sendSubscribe(spec)));
    if (ws === this.ws) this.dispatchEvent(new Event('open'));
  }

  closed(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.byId.clear();
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(new Disconnected(`${call.method}: disconnected`));
      this.pending.delete(id);
    }
    if (this.stopped) {
      this.setState('closed');
      return;
    }
    const delay = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.setState('closed', { retryIn: delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Connect now instead of waiting for the backoff. */
  retryNow() {
    if (this.state === 'closed' && !this.stopped) this.connect();
  }

  received(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('rpc: a message that is not JSON', data);
      return;
    }
    if (msg.id !== undefined && msg.id !== null) {
      const call = this.pending.get(msg.id);
      if (!call) return;
      this.pending.delete(msg.id);
      clearTimeout(call.timer);
      if (msg.error) call.reject(new RpcError(call.method, msg.error));
      else call.resolve(msg.result);
      return;
    }
    const sub = msg.params?.subscription;
    const spec = sub !== undefined ? this.byId.get(sub) : undefined;
    if (!spec) return;
    if (msg.params.error !== undefined) {
      // The node ended the subscription (e.g. the subscriber fell too far behind): subscribe
      // again; `onError` re-reads what the missed notifications would have told.
      this.byId.delete(sub);
      spec.onError?.(new RpcError(spec.subscribe, msg.params.error));
      if (this.subscriptions.has(spec) && this.state === 'open') this.sendSubscribe(spec);
      return;
    }
    try {
      spec.onData(msg.params.result);
    } catch (e) {
      console.error(`rpc: ${spec.notification} handler`, e);
    }
  }

  /** One call; resolves with `result`, rejects with RpcError, Disconnected or a timeout. */
  call(method, params = []) {
    const ws = this.ws;
    if (!ws || this.state !== 'open') return Promise.reject(new Disconnected(`${method}: not connected`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer in ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, method });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /**
   * A subscription kept across reconnects.
   * @param {{subscribe: string, unsubscribe: string, notification: string, params?: any[],
   *          onData: (result: any) => void, onError?: (e: Error) => void}} spec
   * @returns {() => void} ends it
   */
  subscribe(spec) {
    const s = { params: [], ...spec, id: null };
    this.subscriptions.add(s);
    if (this.state === 'open') this.sendSubscribe(s);
    return () => {
      this.subscriptions.delete(s);
      if (s.id !== null && this.byId.get(s.id) === s) {
        this.byId.delete(s.id);
        this.call(s.unsubscribe, [s.id]).catch(() => {});
      }
    };
  }

  async sendSubscribe(spec) {
    try {
      const id = await this.call(spec.subscribe, spec.params);
      if (!this.subscriptions.has(spec)) {
        // Ended while the answer was on its way.
        this.call(spec.unsubscribe, [id]).catch(() => {});
        return;
      }
      spec.id = id;
      this.byId.set(id, spec);
    } catch (e) {
      if (!(e instanceof Disconnected)) spec.onError?.(e);
    }
  }
}
