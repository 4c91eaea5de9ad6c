/**
 * The browser client: one connection per browser, shared by its tabs, that never loses
 * or repeats a notification.
 *
 * Every tab keeps its own `position`, the highest seq it delivered to the application,
 * and delivers a notification only when its seq is above it: that alone makes replays,
 * overlaps and tab hand-overs harmless. The leading tab holds the connection, resumes
 * it from its position (persisted per server and user, so a reload resumes too), and
 * passes every frame to the other tabs. Seqs have no gaps, so a follower that sees one
 * (it missed a message while the leader went away) reads the missing ones over HTTP.
 */
import { Inbox, NotifierError, type Tokens } from "./inbox.js";
import { type Election, elect } from "./tabs.js";
import {
  type Frame,
  SSE_MISSING,
  type Transport,
  openEventStream,
  openWebSocket,
} from "./transport.js";
import type {
  ArchivedEvent,
  ClientOptions,
  Events,
  GapEvent,
  ListOptions,
  Notification,
  ReadEvent,
  State,
  StorageLike,
} from "./types.js";
import { UnreadCounter } from "./unread.js";
import { Emitter, backoff, claims, defaultStorage, renewalDelay } from "./util.js";

/** Messages between tabs. */
type TabMessage =
  | { t: "hello" }
  | { t: "state"; state: State; unread: number | null }
  | { t: "notification"; notification: Notification }
  | { t: "read"; read: ReadEvent }
  | { t: "archived"; archived: ArchivedEvent }
  | { t: "gap"; gap: GapEvent }
  | { t: "resign" };

const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_REVOKED = 4403;
const CLOSE_BAD_REQUEST = 4400;
/** How long a WebSocket handshake or SSE request may take before it counts as failed. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Unread notifications read one by one to seed the count (the most a page holds). */
const UNREAD_PAGE = 500;

export class NotifierClient extends Emitter<Events> {
  private readonly base: string;
  private readonly options: ClientOptions;
  private readonly storage: StorageLike;
  private readonly inbox: Inbox;
  private readonly counter = new UnreadCounter();
  private readonly ready: Promise<void>;

  private token = "";
  private key = "";
  private position = 0;
  private currentState: State = "connecting";
  private unreadCount: number | null = null;
  private closed = false;
  private revoked = false;

  private channel: BroadcastChannel | null = null;
  private election: Election | null = null;
  private leading = false;

  private transport: Transport | null = null;
  private attempts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private renewTimer: ReturnType<typeof setTimeout> | null = null;
  private headChecked = false;
  private freshTokenTried = false;
  private useSse: boolean;
  private sseMissing = false;
  private followerQueue: Promise<void> = Promise.resolve();
  /** While the count is being fetched: frames' effects, to apply again on top of it. */
  private counting: Array<() => void> | null = null;
  private countAgain = false;
  private tokenAt = 0;

  constructor(options: ClientOptions) {
    super();
    this.options = options;
    // A trailing slash, so that a base with a path (`https://x.example/notifier`) keeps it.
    this.base = new URL(options.url).toString().replace(/\/?$/, "/");
    this.storage = options.storage ?? defaultStorage();
    this.useSse = options.transport === "sse";
    const tokens: Tokens = {
      current: () => this.currentToken(),
      fresh: () => this.freshToken(),
    };
    this.inbox = new Inbox(this.base, tokens);
    this.ready = this.start().catch((error: unknown) => {
      this.setState("unauthorized");
      throw error;
    });
    this.ready.catch(() => undefined);
  }

  /** The connection's state, the same in every tab. */
  get state(): State {
    return this.currentState;
  }

  /** The live unread count; null until known. */
  get unread(): number | null {
    return this.unreadCount;
  }

  /** The highest seq this tab delivered as a `notification` event (0 before any). */
  get lastSeq(): number {
    return this.position;
  }

  /** Whether this tab holds the connection (the others follow it). */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Resolves once the token is known and this tab has joined its browser's tabs. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  // The inbox, over HTTP. Read and archive changes come back on the stream as frames
  // (to every tab and device), which is what moves the unread count.

  list(options: ListOptions = {}): Promise<Notification[]> {
    return this.ready.then(() => this.inbox.list(options));
  }

  unreadCountFromServer(): Promise<number> {
    return this.ready.then(() => this.inbox.unreadCount());
  }

  markRead(ids: string[]): Promise<number> {
    return this.ready.then(() => this.inbox.markRead(ids));
  }

  markReadUpTo(seq: number): Promise<number> {
    return this.ready.then(() => this.inbox.markReadUpTo(seq));
  }

  /** Mark read everything up to the newest notification (as the server knows it). */
  async markAllRead(): Promise<number> {
    await this.ready;
    const upTo = Math.max(this.position, await this.inbox.head());
    return upTo > 0 ? this.inbox.markReadUpTo(upTo) : 0;
  }

  archive(ids: string[]): Promise<number> {
    return this.ready.then(() => this.inbox.archive(ids));
  }

  /** Close the connection (a follower takes over if this tab led) and stop. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.leading = false; // so that "closed" is this tab's state alone
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

  private async start(): Promise<void> {
    this.token = this.options.token ?? (await this.callback());
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
    this.channel.onmessage = (event: MessageEvent) => this.onTabMessage(event.data as TabMessage);
    this.post({ t: "hello" });
    this.election = elect(
      this.key,
      this.storage,
      this.channel,
      () => this.lead(),
      () => this.follow(),
    );
  }

  private lead(): void {
    if (this.closed || this.leading) return;
    this.leading = true;
    globalThis.addEventListener?.("online", this.onOnline);
    if (this.revoked) return; // never reconnect a revoked user
    this.headChecked = false;
    this.attempts = 0;
    void this.connect();
  }

  private follow(): void {
    this.leading = false;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.clearTimers();
    this.transport?.close();
    this.transport = null;
  }

  private post(message: TabMessage): void {
    try {
      this.channel?.postMessage(message);
    } catch {
      // closed channel
    }
  }

  private onTabMessage(message: TabMessage): void {
    if (this.closed) return;
    if (message.t === "hello") {
      if (this.leading) this.post({ t: "state", state: this.currentState, unread: this.unreadCount });
      return;
    }
    if (this.leading) return; // another leader's leftovers (lease hand-over)
    switch (message.t) {
      case "state":
        if (message.state === "revoked") this.revoked = true;
        this.setUnread(message.unread);
        this.setState(message.state);
        break;
      case "notification":
        this.followerQueue = this.followerQueue
          .then(() => this.followNotification(message.notification))
          .catch(() => undefined);
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
  private async followNotification(n: Notification): Promise<void> {
    if (n.seq <= this.position) return;
    try {
      while (n.seq > this.position + 1) {
        const page = await this.inbox.list({
          after: this.position,
          limit: Math.min(500, n.seq - this.position - 1),
          archived: "any",
        });
        const missing = page.filter((item) => item.seq < n.seq && item.seq > this.position);
        for (const item of missing) this.deliver(item);
        if (missing.length === 0) break; // deleted by retention: nothing more to find
      }
    } finally {
      this.deliver(n); // the missing ones stay in the inbox if they could not be read
    }
  }

  private deliver(n: Notification): boolean {
    if (n.seq <= this.position) return false;
    this.position = n.seq;
    this.emit("notification", n);
    return true;
  }

  // The leader's connection

  private async connect(): Promise<void> {
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
        if (this.options.getToken) this.token = ""; // refused: the next attempt asks again
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
  private async checkPosition(): Promise<void> {
    const head = await this.inbox.head();
    this.headChecked = true;
    if (this.position === 0 || this.position > head) {
      const beyond = this.position > head;
      this.position = head;
      this.storage.setItem(`${this.key}:seq`, String(head)); // also down, unlike persist()
      if (beyond) await this.gap("reset");
    }
  }

  private open(token: string): void {
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
        },
      },
    );
    this.transport = transport;
    // A handshake that neither completes nor fails (a proxy that swallows it) fails here.
    const timer = setTimeout(() => {
      if (this.transport !== transport) return;
      this.transport = null;
      transport.close();
      this.onClose(1006, kind, false);
    }, CONNECT_TIMEOUT_MS);
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case "notification": {
        const n = frame.notification as Notification;
        if (n.seq <= this.position) return; // already delivered
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
        const read: ReadEvent =
          typeof frame.up_to_seq === "number"
            ? { up_to_seq: frame.up_to_seq }
            : { ids: Array.isArray(frame.ids) ? (frame.ids as string[]) : [] };
        const unknown = this.counter.read(read);
        this.counting?.push(() => this.counter.read(read));
        this.post({ t: "read", read });
        this.emit("read", read);
        if (unknown) void this.refreshCount();
        else this.setUnread(this.counter.value);
        break;
      }
      case "archived": {
        const archived = { ids: Array.isArray(frame.ids) ? (frame.ids as string[]) : [] };
        const unknown = this.counter.archived(archived.ids);
        this.counting?.push(() => this.counter.archived(archived.ids));
        this.post({ t: "archived", archived });
        this.emit("archived", archived);
        if (unknown) void this.refreshCount();
        else this.setUnread(this.counter.value);
        break;
      }
      default:
        break; // pong, error, and frame types added later
    }
  }

  private onClose(code: number, kind: "websocket" | "sse", wasLive: boolean): void {
    this.clearRenewal();
    if (this.closed || !this.leading) return;
    if (code === CLOSE_REVOKED) {
      // Log out everywhere: never reconnect with this token, in any tab.
      this.revoked = true;
      this.setState("revoked");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      if (!this.freshTokenTried && this.options.getToken) {
        this.freshTokenTried = true;
        this.token = "";
        void this.connect(); // at once, with a fresh token from the callback
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
      // The server refused the position: start again from its newest, and say so.
      this.headChecked = false;
      this.position = 0;
      void this.gap("reset");
    } else if (code === SSE_MISSING) {
      this.sseMissing = true;
      this.useSse = false;
    } else if (
      kind === "websocket" &&
      !wasLive &&
      this.options.transport !== "websocket" &&
      !this.sseMissing &&
      !this.useSse
    ) {
      // WebSocket cannot get through (a proxy, a firewall): SSE at once.
      this.useSse = true;
      this.setState("connecting");
      void this.connect();
      return;
    } else if (kind === "sse" && !wasLive && this.options.transport !== "sse") {
      this.useSse = false; // the server itself may be down: try WebSocket first again
    }
    this.setState("offline");
    this.retryLater();
  }

  private retryLater(): void {
    if (this.closed || this.revoked || !this.leading) return;
    const min = this.options.minReconnectDelay ?? 500;
    const max = this.options.maxReconnectDelay ?? 30000;
    const delay = backoff(this.attempts++, min, max);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private readonly onOnline = (): void => {
    if (this.retryTimer && this.leading && !this.closed) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.attempts = 0;
      void this.connect();
    }
  };

  // Tokens

  private async callback(): Promise<string> {
    if (!this.options.getToken) throw new Error("no token and no getToken callback");
    const token = await this.options.getToken();
    if (typeof token !== "string" || !token) throw new Error("getToken gave no token");
    this.tokenAt = Date.now();
    return token;
  }

  private async currentToken(): Promise<string> {
    const { exp } = claims(this.token);
    const expiring = typeof exp === "number" && exp * 1000 - Date.now() < 1000;
    if (!this.token || (expiring && this.options.getToken)) this.token = await this.callback();
    return this.token;
  }

  /** After a 401: the callback once, unless the token came from it a moment ago (then a
   * second call would not do better, and the caller backs off instead). */
  private async freshToken(): Promise<string> {
    if (this.options.getToken && Date.now() - this.tokenAt > 1000) {
      this.token = await this.callback();
    }
    return this.token;
  }

  /** Before `exp`: a fresh token, sent on the WebSocket as an `auth` frame (the socket
   * lives on); SSE cannot send, so its stream is reopened from the same position. */
  private scheduleRenewal(): void {
    this.clearRenewal();
    if (!this.options.getToken) return;
    const delay = renewalDelay(this.token, Date.now());
    if (delay === null) return;
    this.renewTimer = setTimeout(() => void this.renew(), delay);
  }

  private async renew(): Promise<void> {
    this.renewTimer = null;
    const transport = this.transport;
    if (!transport || this.closed) return;
    let token: string;
    try {
      token = await this.callback();
    } catch {
      this.renewTimer = setTimeout(() => void this.renew(), 2000);
      return;
    }
    if (this.transport !== transport) return;
    this.token = token;
    if (transport.send({ type: "auth", access_token: token })) {
      this.scheduleRenewal();
      return;
    }
    // SSE: a new stream from the current position; the old one is dropped once replaced.
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
  private async refreshCount(): Promise<void> {
    if (this.counting) {
      this.countAgain = true;
      return;
    }
    const pending: Array<() => void> = [];
    this.counting = pending;
    try {
      const unread = await this.inbox.list({ unread: true, limit: UNREAD_PAGE });
      const older =
        unread.length < UNREAD_PAGE ? 0 : Math.max(0, (await this.inbox.unreadCount()) - UNREAD_PAGE);
      this.counter.seed(unread, older);
      for (const apply of pending) apply();
      this.setUnread(this.counter.value);
    } catch {
      // counted again at the next connect
    } finally {
      this.counting = null;
    }
    if (this.countAgain) {
      this.countAgain = false;
      await this.refreshCount();
    }
  }

  private async gap(reason: GapEvent["reason"]): Promise<void> {
    let notifications: Notification[] = [];
    try {
      notifications = await this.inbox.list({ limit: this.options.pageSize ?? 50 });
    } catch {
      // the application can list again itself
    }
    const gap: GapEvent = { reason, notifications };
    this.post({ t: "gap", gap });
    this.emit("gap", gap);
  }

  // Local state

  private stored(): number {
    const raw = this.storage.getItem(`${this.key}:seq`);
    const value = raw === null ? 0 : Number(raw);
    return Number.isSafeInteger(value) && value >= 0 ? value : 0;
  }

  /** Only ever forward: a tab that resumes from behind must not make a reload replay
   * what other tabs already showed. */
  private persist(): void {
    if (this.position > this.stored()) {
      this.storage.setItem(`${this.key}:seq`, String(this.position));
    }
  }

  private setState(state: State): void {
    if (this.closed && state !== "closed") return;
    if (state === this.currentState) return;
    this.currentState = state;
    if (this.leading) this.post({ t: "state", state, unread: this.unreadCount });
    this.emit("state", state);
  }

  private setUnread(value: number | null): void {
    if (value === null || value === this.unreadCount) return;
    this.unreadCount = value;
    if (this.leading) this.post({ t: "state", state: this.currentState, unread: value });
    this.emit("unread", value);
  }

  private clearRenewal(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = null;
  }

  private clearTimers(): void {
    this.clearRenewal();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
