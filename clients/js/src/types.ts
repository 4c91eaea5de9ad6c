/** The Notification object, as in every HTTP answer and every frame. */
export interface Notification {
  id: string;
  user_id: string;
  seq: number;
  type: string;
  data: Record<string, unknown>;
  /** RFC 3339, UTC, `Z` suffix. */
  created_at: string;
  read_at: string | null;
  /** v1.1: the topic it was published to, or null (absent on older servers). */
  topic?: string | null;
  /** v1.1: when it was archived, or null (absent on older servers). */
  archived_at?: string | null;
  [field: string]: unknown;
}

/**
 * The connection as the application sees it (the same in every tab):
 * - `connecting`: a connection is being opened;
 * - `live`: connected, the backlog replayed, new notifications arrive as they are sent;
 * - `offline`: disconnected, a reconnect is scheduled (backoff) or waits for the network;
 * - `unauthorized`: the server refused the token and the token callback gave no working
 *   one; retried with backoff (each retry asks the callback again);
 * - `revoked`: the user's tokens were revoked (close code 4403): no reconnect at all;
 * - `closed`: `close()` was called.
 */
export type State = "connecting" | "live" | "offline" | "unauthorized" | "revoked" | "closed";

/** A `read` frame: marked read up to a seq, or by ids. */
export type ReadEvent = { up_to_seq: number } | { ids: string[] };

/** An `archived` frame's ids. */
export interface ArchivedEvent {
  ids: string[];
}

/**
 * Some notifications may have been missed, and cannot be replayed: the server deleted
 * some after the last seq this browser processed (`retention`), or it refused the
 * position (`reset`: close code 4400, or a position beyond the server's newest seq,
 * e.g. after a database reset). `notifications` is the inbox's first page, refetched.
 */
export interface GapEvent {
  reason: "retention" | "reset";
  notifications: Notification[];
}

export interface Events {
  notification: Notification;
  read: ReadEvent;
  archived: ArchivedEvent;
  gap: GapEvent;
  state: State;
  /** The unread count changed (also readable as `client.unread`). */
  unread: number;
}

export type Transport = "auto" | "websocket" | "sse";

export interface ClientOptions {
  /** The service's base URL, e.g. `https://notify.example.com` (no trailing `/v1`). */
  url: string;
  /**
   * The application's token callback: a fresh user JWT each call. Called at start
   * (unless `token` is given), before the token expires (renewal), and once after the
   * server refuses a token (4401 / 401).
   */
  getToken?: () => Promise<string> | string;
  /** A first token; without `getToken` it is the only one. */
  token?: string;
  /** `auto` (default): WebSocket, falling back to SSE when it cannot connect. */
  transport?: Transport;
  /** Share one connection between the tabs of this browser (default true). */
  shareTabs?: boolean;
  /** Reconnect backoff: first step and cap in ms (default 500 and 30000). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** Where the last processed seq is kept (default `localStorage`, or memory). */
  storage?: StorageLike;
  /** Inbox page size used when refetching after a gap (default 50). */
  pageSize?: number;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ListOptions {
  after?: number;
  before?: number;
  limit?: number;
  unread?: boolean;
  /** v1.1: `false` (default), `true` or `any`. */
  archived?: boolean | "any";
}
