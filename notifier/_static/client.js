// src/inbox.ts
var NotifierError = class extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status;
    this.detail = detail;
    this.name = "NotifierError";
  }
};
var Inbox = class {
  constructor(base, tokens) {
    this.base = base;
    this.tokens = tokens;
  }
  /** A page of notifications: newest first, or ascending with `after`. */
  async list(options = {}) {
    const query = new URLSearchParams();
    if (options.after !== void 0) query.set("after", String(options.after));
    if (options.before !== void 0) query.set("before", String(options.before));
    if (options.limit !== void 0) query.set("limit", String(options.limit));
    if (options.unread) query.set("unread", "true");
    if (options.archived !== void 0) query.set("archived", String(options.archived));
    const text = query.toString();
    const suffix = text ? `?${text}` : "";
    const body = await this.request(
      "GET",
      `v1/me/notifications${suffix}`
    );
    return body.notifications;
  }
  async unreadCount() {
    return (await this.request("GET", "v1/me/notifications/unread-count")).unread;
  }
  /** Mark read by ids; resolves to how many went from unread to read. */
  async markRead(ids) {
    return (await this.request("POST", "v1/me/notifications/read", { ids })).updated;
  }
  async markReadUpTo(seq) {
    const body = { up_to_seq: seq };
    return (await this.request("POST", "v1/me/notifications/read", body)).updated;
  }
  /** Archive (v1.1; a server without it answers 404, thrown as a NotifierError). */
  async archive(ids) {
    const body = { ids };
    return (await this.request("POST", "v1/me/notifications/archive", body)).archived;
  }
  /** The newest seq of the user (0 with none), archived ones included. */
  async head() {
    const [newest] = await this.list({ limit: 1, archived: "any" });
    return newest?.seq ?? 0;
  }
  async request(method, path, body) {
    let token = await this.tokens.current();
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(new URL(path, this.base).toString(), {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...body === void 0 ? {} : { "Content-Type": "application/json" }
        },
        body: body === void 0 ? void 0 : JSON.stringify(body),
        cache: "no-store"
      });
      if (response.status === 401 && attempt === 0) {
        token = await this.tokens.fresh();
        continue;
      }
      const text = await response.text();
      let parsed = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = text;
      }
      if (!response.ok) {
        const detail = parsed?.detail ?? parsed;
        throw new NotifierError(response.status, detail);
      }
      return parsed;
    }
  }
};

// src/tabs.ts
function lockManager() {
  const nav = globalThis.navigator;
  return nav?.locks && typeof nav.locks.request === "function" ? nav.locks : null;
}
function elect(name, storage, channel, onLead, onLose) {
  const locks = lockManager();
  return locks ? lockElection(locks, name, onLead) : leaseElection(name, storage, channel, onLead, onLose);
}
function lockElection(locks, name, onLead) {
  const abort = new AbortController();
  let done = null;
  let released = false;
  locks.request(name, { signal: abort.signal }, () => {
    if (released) return Promise.resolve();
    onLead();
    return new Promise((resolve) => {
      done = resolve;
    });
  }).catch(() => void 0);
  return {
    release() {
      released = true;
      abort.abort();
      done?.();
    }
  };
}
var LEASE_MS = 3e3;
var TICK_MS = 1e3;
function leaseElection(name, storage, channel, onLead, onLose) {
  const key = `${name}:lease`;
  const me = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let leading = false;
  let released = false;
  const read = () => {
    try {
      const value = JSON.parse(storage.getItem(key) ?? "null");
      return typeof value === "object" && value !== null ? value : null;
    } catch {
      return null;
    }
  };
  const write = () => storage.setItem(key, JSON.stringify({ id: me, until: Date.now() + LEASE_MS }));
  const tick = () => {
    if (released) return;
    const lease = read();
    if (leading) {
      if (lease && lease.id !== me && lease.until > Date.now()) {
        leading = false;
        onLose();
        return;
      }
      write();
      return;
    }
    if (lease && lease.id !== me && lease.until > Date.now()) return;
    write();
    setTimeout(() => {
      if (released || leading) return;
      if (read()?.id === me) {
        leading = true;
        onLead();
      }
    }, 50 + Math.random() * 50);
  };
  const timer = setInterval(tick, TICK_MS);
  const onMessage = (event) => {
    if (event.data?.t === "resign") setTimeout(tick, Math.random() * 30);
  };
  channel?.addEventListener("message", onMessage);
  tick();
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(timer);
    channel?.removeEventListener("message", onMessage);
    if (leading && read()?.id === me) {
      storage.removeItem(key);
      channel?.postMessage({ t: "resign" });
    }
    leading = false;
  };
  globalThis.addEventListener?.("pagehide", release);
  return { release };
}

// src/sse.ts
var EventStreamParser = class {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = [];
    this.id = null;
  }
  /** The events completed by this chunk, in order. */
  feed(chunk) {
    this.buffer += chunk;
    const events = [];
    for (; ; ) {
      const match = /\r\n|\n|\r/.exec(this.buffer);
      if (!match || match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }
  line(line) {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n"), id: this.id };
      this.event = "";
      this.data = [];
      this.id = null;
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return null;
  }
};

// src/transport.ts
var SSE_MISSING = 4404;
var FORBIDDEN = 4003;
function openWebSocket(base, token, after, on) {
  const url = new URL("v1/ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("access_token", token);
  url.searchParams.set("after", String(after));
  let opened = false;
  let closed = false;
  const finish = (code, reason) => {
    if (closed) return;
    closed = true;
    on.close(code, reason, opened);
  };
  let socket;
  try {
    socket = new WebSocket(url.toString());
  } catch (error) {
    queueMicrotask(() => finish(1006, String(error)));
    return { kind: "websocket", send: () => false, close: () => finish(1e3, "closed") };
  }
  socket.onopen = () => {
    opened = true;
    on.open();
  };
  socket.onmessage = (message) => {
    if (closed || typeof message.data !== "string") return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (typeof frame === "object" && frame !== null && typeof frame.type === "string") {
      on.frame(frame);
    }
  };
  socket.onclose = (event) => finish(event.code, event.reason);
  socket.onerror = () => {
    if (!opened) finish(1006, "could not connect");
  };
  return {
    kind: "websocket",
    send(frame) {
      if (closed || socket.readyState !== 1) return false;
      socket.send(JSON.stringify(frame));
      return true;
    },
    close() {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1e3);
      } catch {
      }
      finish(1e3, "closed by the client");
    }
  };
}
var STATUS_CODES = {
  400: 4400,
  401: 4401,
  403: FORBIDDEN,
  404: SSE_MISSING,
  429: 4429
};
function openEventStream(base, token, after, on) {
  const url = new URL("v1/sse", base);
  url.searchParams.set("after", String(after));
  const abort = new AbortController();
  let opened = false;
  let closed = false;
  const finish = (code, reason) => {
    if (closed) return;
    closed = true;
    abort.abort();
    on.close(code, reason, opened);
  };
  const run = async () => {
    const response = await fetch(url.toString(), {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal
    });
    if (response.status !== 200 || !response.body) {
      finish(STATUS_CODES[response.status] ?? 1006, `HTTP ${response.status}`);
      return;
    }
    opened = true;
    on.open();
    const parser = new EventStreamParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (; ; ) {
      const { done, value } = await reader.read();
      if (done || closed) break;
      for (const event of parser.feed(value)) {
        let body;
        try {
          body = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (typeof body !== "object" || body === null) continue;
        if (event.event === "notification") {
          on.frame({ type: "notification", notification: body });
        } else if (event.event === "close") {
          const close = body;
          finish(typeof close.code === "number" ? close.code : 1006, String(close.detail ?? ""));
          return;
        } else {
          on.frame({ ...body, type: event.event });
        }
        if (closed) return;
      }
    }
    finish(1006, "stream ended");
  };
  run().catch((error) => finish(1006, String(error)));
  return {
    kind: "sse",
    send: () => false,
    close: () => finish(1e3, "closed by the client")
  };
}

// src/unread.ts
var UnreadCounter = class {
  constructor(capacity = 1e3) {
    this.capacity = capacity;
    this.older = 0;
    /** Every notification counted in `older` has a seq at or below this. */
    this.base = 0;
    this.seen = /* @__PURE__ */ new Map();
    this.ids = /* @__PURE__ */ new Map();
    this.known = false;
  }
  /** Null until the server's count has been set once. */
  get value() {
    if (!this.known) return null;
    let count = this.older;
    for (const item of this.seen.values()) if (item.unread) count += 1;
    return count;
  }
  /**
   * Start over from the server's word: `unread` are its newest unread notifications
   * (newest first), `older` how many more unread ones there are below them. Read state
   * may have changed while this client was not connected, so nothing local is kept.
   */
  seed(unread, older) {
    this.seen.clear();
    this.ids.clear();
    this.older = 0;
    this.base = 0;
    for (const n of [...unread].reverse()) this.notification(n);
    const lowest = unread.length ? unread[unread.length - 1].seq : 1;
    if (older > 0) {
      this.older += older;
      this.base = Math.max(this.base, lowest - 1);
    }
    this.known = true;
  }
  notification(n) {
    if (this.seen.has(n.seq)) return;
    this.seen.set(n.seq, { id: n.id, unread: n.read_at == null && n.archived_at == null });
    this.ids.set(n.id, n.seq);
    while (this.seen.size > this.capacity) {
      const [seq, oldest] = this.seen.entries().next().value;
      this.seen.delete(seq);
      this.ids.delete(oldest.id);
      if (oldest.unread) this.older += 1;
      this.base = Math.max(this.base, seq);
    }
  }
  /** Apply a `read` frame; true when the count can no longer be known locally. */
  read(event) {
    if ("up_to_seq" in event) {
      for (const [seq, item] of this.seen) if (seq <= event.up_to_seq) item.unread = false;
      if (event.up_to_seq >= this.base) {
        this.older = 0;
        return false;
      }
      return this.older > 0;
    }
    for (const id of event.ids) {
      const seq = this.ids.get(id);
      const item = seq === void 0 ? void 0 : this.seen.get(seq);
      if (item) item.unread = false;
      else this.older = Math.max(0, this.older - 1);
    }
    return false;
  }
  /** Apply an `archived` frame; true when the count can no longer be known locally. */
  archived(ids) {
    let unknown = false;
    for (const id of ids) {
      const seq = this.ids.get(id);
      const item = seq === void 0 ? void 0 : this.seen.get(seq);
      if (item) item.unread = false;
      else unknown = true;
    }
    return unknown && this.older > 0;
  }
};

// src/util.ts
function backoff(attempt, base, cap, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
function claims(token) {
  const part = token.split(".")[1];
  if (!part) return {};
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - base64.length % 4) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const body = JSON.parse(new TextDecoder().decode(bytes));
    return typeof body === "object" && body !== null ? body : {};
  } catch {
    return {};
  }
}
function renewalDelay(token, nowMs) {
  const { exp, iat } = claims(token);
  if (typeof exp !== "number") return null;
  const life = typeof iat === "number" ? exp - iat : exp - nowMs / 1e3;
  const margin = Math.min(60, Math.max(2, life / 5));
  return Math.max(0, (exp - margin) * 1e3 - nowMs);
}
var MemoryStorage = class {
  constructor() {
    this.items = /* @__PURE__ */ new Map();
  }
  getItem(key) {
    return this.items.get(key) ?? null;
  }
  setItem(key, value) {
    this.items.set(key, value);
  }
  removeItem(key) {
    this.items.delete(key);
  }
};
function defaultStorage() {
  try {
    const storage = globalThis.localStorage;
    if (storage) {
      const probe = "notifier:probe";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    }
  } catch {
  }
  return new MemoryStorage();
}
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  on(name, listener) {
    let set = this.listeners.get(name);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(name, set);
    }
    set.add(listener);
    return () => this.off(name, listener);
  }
  off(name, listener) {
    this.listeners.get(name)?.delete(listener);
  }
  emit(name, value) {
    for (const listener of [...this.listeners.get(name) ?? []]) {
      try {
        listener(value);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
};

// src/client.ts
var CLOSE_UNAUTHORIZED = 4401;
var CLOSE_REVOKED = 4403;
var CLOSE_BAD_REQUEST = 4400;
var CONNECT_TIMEOUT_MS = 1e4;
var UNREAD_PAGE = 500;
var NotifierClient = class extends Emitter {
  constructor(options) {
    super();
    this.counter = new UnreadCounter();
    this.token = "";
    this.key = "";
    this.position = 0;
    this.currentState = "connecting";
    this.unreadCount = null;
    this.closed = false;
    this.revoked = false;
    this.channel = null;
    this.election = null;
    this.leading = false;
    this.transport = null;
    this.attempts = 0;
    this.retryTimer = null;
    this.renewTimer = null;
    this.headChecked = false;
    this.freshTokenTried = false;
    this.sseMissing = false;
    this.followerQueue = Promise.resolve();
    /** While the count is being fetched: frames' effects, to apply again on top of it. */
    this.counting = null;
    this.countAgain = false;
    this.tokenAt = 0;
    this.onOnline = () => {
      if (this.retryTimer && this.leading && !this.closed) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.attempts = 0;
        void this.connect();
      }
    };
    this.options = options;
    this.base = new URL(options.url).toString().replace(/\/?$/, "/");
    this.storage = options.storage ?? defaultStorage();
    this.useSse = options.transport === "sse";
    const tokens = {
      current: () => this.currentToken(),
      fresh: () => this.freshToken()
    };
    this.inbox = new Inbox(this.base, tokens);
    this.ready = this.start().catch((error) => {
      this.setState("unauthorized");
      throw error;
    });
    this.ready.catch(() => void 0);
  }
  /** The connection's state, the same in every tab. */
  get state() {
    return this.currentState;
  }
  /** The live unread count; null until known. */
  get unread() {
    return this.unreadCount;
  }
  /** The highest seq this tab delivered as a `notification` event (0 before any). */
  get lastSeq() {
    return this.position;
  }
  /** Whether this tab holds the connection (the others follow it). */
  get isLeader() {
    return this.leading;
  }
  /** Resolves once the token is known and this tab has joined its browser's tabs. */
  whenReady() {
    return this.ready;
  }
  // The inbox, over HTTP. Read and archive changes come back on the stream as frames
  // (to every tab and device), which is what moves the unread count.
  list(options = {}) {
    return this.ready.then(() => this.inbox.list(options));
  }
  unreadCountFromServer() {
    return this.ready.then(() => this.inbox.unreadCount());
  }
  markRead(ids) {
    return this.ready.then(() => this.inbox.markRead(ids));
  }
  markReadUpTo(seq) {
    return this.ready.then(() => this.inbox.markReadUpTo(seq));
  }
  /** Mark read everything up to the newest notification (as the server knows it). */
  async markAllRead() {
    await this.ready;
    const upTo = Math.max(this.position, await this.inbox.head());
    return upTo > 0 ? this.inbox.markReadUpTo(upTo) : 0;
  }
  archive(ids) {
    return this.ready.then(() => this.inbox.archive(ids));
  }
  /** Close the connection (a follower takes over if this tab led) and stop. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.leading = false;
    this.clearTimers();
    this.transport?.close();
    this.transport = null;
    this.election?.release();
    this.channel?.close();
    this.channel = null;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.setState("closed");
  }
  // Start-up and tabs
  async start() {
    this.token = this.options.token ?? await this.callback();
    const sub = claims(this.token).sub ?? "";
    this.key = `notifier:${this.base}:${sub}`;
    this.position = this.stored();
    if (this.closed) return;
    const share = this.options.shareTabs !== false && typeof BroadcastChannel === "function";
    if (!share) {
      this.lead();
      return;
    }
    this.channel = new BroadcastChannel(this.key);
    this.channel.onmessage = (event) => this.onTabMessage(event.data);
    this.post({ t: "hello" });
    this.election = elect(
      this.key,
      this.storage,
      this.channel,
      () => this.lead(),
      () => this.follow()
    );
  }
  lead() {
    if (this.closed || this.leading) return;
    this.leading = true;
    globalThis.addEventListener?.("online", this.onOnline);
    if (this.revoked) return;
    this.headChecked = false;
    this.attempts = 0;
    void this.connect();
  }
  follow() {
    this.leading = false;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.clearTimers();
    this.transport?.close();
    this.transport = null;
  }
  post(message) {
    try {
      this.channel?.postMessage(message);
    } catch {
    }
  }
  onTabMessage(message) {
    if (this.closed) return;
    if (message.t === "hello") {
      if (this.leading) this.post({ t: "state", state: this.currentState, unread: this.unreadCount });
      return;
    }
    if (this.leading) return;
    switch (message.t) {
      case "state":
        if (message.state === "revoked") this.revoked = true;
        this.setUnread(message.unread);
        this.setState(message.state);
        break;
      case "notification":
        this.followerQueue = this.followerQueue.then(() => this.followNotification(message.notification)).catch(() => void 0);
        break;
      case "read":
        this.emit("read", message.read);
        break;
      case "archived":
        this.emit("archived", message.archived);
        break;
      case "gap":
        this.emit("gap", message.gap);
        break;
    }
  }
  /** A follower's delivery: a gap in seqs (a message lost at a hand-over) is read over
   * HTTP first, so this tab, too, delivers every seq once and in order. */
  async followNotification(n) {
    if (n.seq <= this.position) return;
    try {
      while (n.seq > this.position + 1) {
        const page = await this.inbox.list({
          after: this.position,
          limit: Math.min(500, n.seq - this.position - 1),
          archived: "any"
        });
        const missing = page.filter((item) => item.seq < n.seq && item.seq > this.position);
        for (const item of missing) this.deliver(item);
        if (missing.length === 0) break;
      }
    } finally {
      this.deliver(n);
    }
  }
  deliver(n) {
    if (n.seq <= this.position) return false;
    this.position = n.seq;
    this.emit("notification", n);
    return true;
  }
  // The leader's connection
  async connect() {
    this.retryTimer = null;
    if (!this.leading || this.closed || this.revoked) return;
    this.setState(this.currentState === "unauthorized" ? "unauthorized" : "connecting");
    try {
      if (!this.headChecked) await this.checkPosition();
      const token = await this.currentToken();
      if (!this.leading || this.closed) return;
      this.open(token);
    } catch (error) {
      if (error instanceof NotifierError && error.status === 401) {
        if (this.options.getToken) this.token = "";
        this.setState("unauthorized");
      } else if (this.currentState !== "unauthorized") {
        this.setState("offline");
      }
      this.retryLater();
    }
  }
  /** On leading: a stored position beyond the server's newest seq (a database that was
   * reset) would skip notifications until seqs grow past it; with none stored, start at
   * the newest (history is the inbox's, not the stream's). */
  async checkPosition() {
    const head = await this.inbox.head();
    this.headChecked = true;
    if (this.position === 0 || this.position > head) {
      const beyond = this.position > head;
      this.position = head;
      this.storage.setItem(`${this.key}:seq`, String(head));
      if (beyond) await this.gap("reset");
    }
  }
  open(token) {
    const kind = this.useSse && !this.sseMissing ? "sse" : "websocket";
    let live = false;
    const transport = (kind === "sse" ? openEventStream : openWebSocket)(
      this.base,
      token,
      this.position,
      {
        open: () => clearTimeout(timer),
        frame: (frame) => {
          if (this.transport !== transport) return;
          if (frame.type === "replayed") live = true;
          this.onFrame(frame);
        },
        close: (code) => {
          clearTimeout(timer);
          if (this.transport !== transport) return;
          this.transport = null;
          this.onClose(code, kind, live);
        }
      }
    );
    this.transport = transport;
    const timer = setTimeout(() => {
      if (this.transport !== transport) return;
      this.transport = null;
      transport.close();
      this.onClose(1006, kind, false);
    }, CONNECT_TIMEOUT_MS);
  }
  onFrame(frame) {
    switch (frame.type) {
      case "notification": {
        const n = frame.notification;
        if (n.seq <= this.position) return;
        this.position = n.seq;
        this.persist();
        this.counter.notification(n);
        this.counting?.push(() => this.counter.notification(n));
        this.post({ t: "notification", notification: n });
        this.emit("notification", n);
        this.setUnread(this.counter.value);
        break;
      }
      case "replayed":
        this.attempts = 0;
        this.freshTokenTried = false;
        this.setState("live");
        this.scheduleRenewal();
        void this.refreshCount();
        if (frame.complete === false) void this.gap("retention");
        break;
      case "read": {
        const read = typeof frame.up_to_seq === "number" ? { up_to_seq: frame.up_to_seq } : { ids: Array.isArray(frame.ids) ? frame.ids : [] };
        const unknown = this.counter.read(read);
        this.counting?.push(() => this.counter.read(read));
        this.post({ t: "read", read });
        this.emit("read", read);
        if (unknown) void this.refreshCount();
        else this.setUnread(this.counter.value);
        break;
      }
      case "archived": {
        const archived = { ids: Array.isArray(frame.ids) ? frame.ids : [] };
        const unknown = this.counter.archived(archived.ids);
        this.counting?.push(() => this.counter.archived(archived.ids));
        this.post({ t: "archived", archived });
        this.emit("archived", archived);
        if (unknown) void this.refreshCount();
        else this.setUnread(this.counter.value);
        break;
      }
      default:
        break;
    }
  }
  onClose(code, kind, wasLive) {
    this.clearRenewal();
    if (this.closed || !this.leading) return;
    if (code === CLOSE_REVOKED) {
      this.revoked = true;
      this.setState("revoked");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      if (!this.freshTokenTried && this.options.getToken) {
        this.freshTokenTried = true;
        this.token = "";
        void this.connect();
      } else {
        this.setState("unauthorized");
        if (this.options.getToken) {
          this.token = "";
          this.retryLater();
        }
      }
      return;
    }
    if (code === CLOSE_BAD_REQUEST) {
      this.headChecked = false;
      this.position = 0;
      void this.gap("reset");
    } else if (code === SSE_MISSING) {
      this.sseMissing = true;
      this.useSse = false;
    } else if (kind === "websocket" && !wasLive && this.options.transport !== "websocket" && !this.sseMissing && !this.useSse) {
      this.useSse = true;
      this.setState("connecting");
      void this.connect();
      return;
    } else if (kind === "sse" && !wasLive && this.options.transport !== "sse") {
      this.useSse = false;
    }
    this.setState("offline");
    this.retryLater();
  }
  retryLater() {
    if (this.closed || this.revoked || !this.leading) return;
    const min = this.options.minReconnectDelay ?? 500;
    const max = this.options.maxReconnectDelay ?? 3e4;
    const delay = backoff(this.attempts++, min, max);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }
  // Tokens
  async callback() {
    if (!this.options.getToken) throw new Error("no token and no getToken callback");
    const token = await this.options.getToken();
    if (typeof token !== "string" || !token) throw new Error("getToken gave no token");
    this.tokenAt = Date.now();
    return token;
  }
  async currentToken() {
    const { exp } = claims(this.token);
    const expiring = typeof exp === "number" && exp * 1e3 - Date.now() < 1e3;
    if (!this.token || expiring && this.options.getToken) this.token = await this.callback();
    return this.token;
  }
  /** After a 401: the callback once, unless the token came from it a moment ago (then a
   * second call would not do better, and the caller backs off instead). */
  async freshToken() {
    if (this.options.getToken && Date.now() - this.tokenAt > 1e3) {
      this.token = await this.callback();
    }
    return this.token;
  }
  /** Before `exp`: a fresh token, sent on the WebSocket as an `auth` frame (the socket
   * lives on); SSE cannot send, so its stream is reopened from the same position. */
  scheduleRenewal() {
    this.clearRenewal();
    if (!this.options.getToken) return;
    const delay = renewalDelay(this.token, Date.now());
    if (delay === null) return;
    this.renewTimer = setTimeout(() => void this.renew(), delay);
  }
  async renew() {
    this.renewTimer = null;
    const transport = this.transport;
    if (!transport || this.closed) return;
    let token;
    try {
      token = await this.callback();
    } catch {
      this.renewTimer = setTimeout(() => void this.renew(), 2e3);
      return;
    }
    if (this.transport !== transport) return;
    this.token = token;
    if (transport.send({ type: "auth", access_token: token })) {
      this.scheduleRenewal();
      return;
    }
    this.transport = null;
    transport.close();
    this.open(token);
  }
  // Unread count and gaps
  /**
   * The server's unread notifications (their seqs, so that a frame racing the request
   * counts once), with the count below the page when there are more. Frames that
   * arrive meanwhile are applied again on top, which is exact: each one's effect is
   * idempotent on a known notification.
   */
  async refreshCount() {
    if (this.counting) {
      this.countAgain = true;
      return;
    }
    const pending = [];
    this.counting = pending;
    try {
      const unread = await this.inbox.list({ unread: true, limit: UNREAD_PAGE });
      const older = unread.length < UNREAD_PAGE ? 0 : Math.max(0, await this.inbox.unreadCount() - UNREAD_PAGE);
      this.counter.seed(unread, older);
      for (const apply of pending) apply();
      this.setUnread(this.counter.value);
    } catch {
    } finally {
      this.counting = null;
    }
    if (this.countAgain) {
      this.countAgain = false;
      await this.refreshCount();
    }
  }
  async gap(reason) {
    let notifications = [];
    try {
      notifications = await this.inbox.list({ limit: this.options.pageSize ?? 50 });
    } catch {
    }
    const gap = { reason, notifications };
    this.post({ t: "gap", gap });
    this.emit("gap", gap);
  }
  // Local state
  stored() {
    const raw = this.storage.getItem(`${this.key}:seq`);
    const value = raw === null ? 0 : Number(raw);
    return Number.isSafeInteger(value) && value >= 0 ? value : 0;
  }
  /** Only ever forward: a tab that resumes from behind must not make a reload replay
   * what other tabs already showed. */
  persist() {
    if (this.position > this.stored()) {
      this.storage.setItem(`${this.key}:seq`, String(this.position));
    }
  }
  setState(state) {
    if (this.closed && state !== "closed") return;
    if (state === this.currentState) return;
    this.currentState = state;
    if (this.leading) this.post({ t: "state", state, unread: this.unreadCount });
    this.emit("state", state);
  }
  setUnread(value) {
    if (value === null || value === this.unreadCount) return;
    this.unreadCount = value;
    if (this.leading) this.post({ t: "state", state: this.currentState, unread: value });
    this.emit("unread", value);
  }
  clearRenewal() {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = null;
  }
  clearTimers() {
    this.clearRenewal();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
};
export {
  EventStreamParser,
  NotifierClient,
  NotifierError,
  UnreadCounter,
  backoff,
  claims,
  renewalDelay
};
