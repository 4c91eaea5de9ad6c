/** The Notification object, as in every HTTP answer and every frame. */
interface Notification$1 {
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
export type ReadEvent = {
	up_to_seq: number;
} | {
	ids: string[];
};
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
	notifications: Notification$1[];
}
export interface Events {
	notification: Notification$1;
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
/**
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(cap, base * 2^attempt)], so that a crowd of clients that lost the same server
 * at the same moment spreads its reconnects over the whole window instead of arriving
 * together (AWS Architecture Blog, "Exponential Backoff And Jitter").
 */
export declare function backoff(attempt: number, base: number, cap: number, random?: () => number): number;
interface Claims {
	sub?: string;
	exp?: number;
	iat?: number;
}
/** A JWT's claims, read without verifying it (the server verifies); {} if unreadable. */
export declare function claims(token: string): Claims;
/**
 * When to renew a token, in ms from now: ahead of `exp` by a fifth of its life, at least
 * 2 s and at most 60 s, so that a slow token callback and some clock skew still leave
 * time. Null when the token says nothing about its expiry.
 */
export declare function renewalDelay(token: string, nowMs: number): number | null;
declare class Emitter<E> {
	private readonly listeners;
	on<K extends keyof E>(name: K, listener: (value: E[K]) => void): () => void;
	off<K extends keyof E>(name: K, listener: (value: E[K]) => void): void;
	protected emit<K extends keyof E>(name: K, value: E[K]): void;
}
export declare class NotifierClient extends Emitter<Events> {
	private readonly base;
	private readonly options;
	private readonly storage;
	private readonly inbox;
	private readonly counter;
	private readonly ready;
	private token;
	private key;
	private position;
	private currentState;
	private unreadCount;
	private closed;
	private revoked;
	private channel;
	private election;
	private leading;
	private transport;
	private attempts;
	private retryTimer;
	private renewTimer;
	private headChecked;
	private freshTokenTried;
	private useSse;
	private sseMissing;
	private followerQueue;
	/** While the count is being fetched: frames' effects, to apply again on top of it. */
	private counting;
	private countAgain;
	private tokenAt;
	constructor(options: ClientOptions);
	/** The connection's state, the same in every tab. */
	get state(): State;
	/** The live unread count; null until known. */
	get unread(): number | null;
	/** The highest seq this tab delivered as a `notification` event (0 before any). */
	get lastSeq(): number;
	/** Whether this tab holds the connection (the others follow it). */
	get isLeader(): boolean;
	/** Resolves once the token is known and this tab has joined its browser's tabs. */
	whenReady(): Promise<void>;
	list(options?: ListOptions): Promise<Notification$1[]>;
	unreadCountFromServer(): Promise<number>;
	markRead(ids: string[]): Promise<number>;
	markReadUpTo(seq: number): Promise<number>;
	/** Mark read everything up to the newest notification (as the server knows it). */
	markAllRead(): Promise<number>;
	archive(ids: string[]): Promise<number>;
	/** Close the connection (a follower takes over if this tab led) and stop. */
	close(): void;
	private start;
	private lead;
	private follow;
	private post;
	private onTabMessage;
	/** A follower's delivery: a gap in seqs (a message lost at a hand-over) is read over
	 * HTTP first, so this tab, too, delivers every seq once and in order. */
	private followNotification;
	private deliver;
	private connect;
	/** On leading: a stored position beyond the server's newest seq (a database that was
	 * reset) would skip notifications until seqs grow past it; with none stored, start at
	 * the newest (history is the inbox's, not the stream's). */
	private checkPosition;
	private open;
	private onFrame;
	private onClose;
	private retryLater;
	private readonly onOnline;
	private callback;
	private currentToken;
	/** After a 401: the callback once, unless the token came from it a moment ago (then a
	 * second call would not do better, and the caller backs off instead). */
	private freshToken;
	/** Before `exp`: a fresh token, sent on the WebSocket as an `auth` frame (the socket
	 * lives on); SSE cannot send, so its stream is reopened from the same position. */
	private scheduleRenewal;
	private renew;
	/**
	 * The server's unread notifications (their seqs, so that a frame racing the request
	 * counts once), with the count below the page when there are more. Frames that
	 * arrive meanwhile are applied again on top, which is exact: each one's effect is
	 * idempotent on a known notification.
	 */
	private refreshCount;
	private gap;
	private stored;
	/** Only ever forward: a tab that resumes from behind must not make a reload replay
	 * what other tabs already showed. */
	private persist;
	private setState;
	private setUnread;
	private clearRenewal;
	private clearTimers;
}
/** An HTTP answer other than 2xx: `status` and the server's `detail`. */
export declare class NotifierError extends Error {
	readonly status: number;
	readonly detail: unknown;
	constructor(status: number, detail: unknown);
}
/**
 * The event-stream format (WHATWG HTML, "Server-sent events", 9.2.6 "Interpreting an
 * event stream"), parsed incrementally from text chunks: fields `event`, `data` (lines
 * joined with "\n"), `id`; comments and `retry` ignored; a blank line dispatches.
 */
export interface ServerEvent {
	event: string;
	data: string;
	id: string | null;
}
export declare class EventStreamParser {
	private buffer;
	private event;
	private data;
	private id;
	/** The events completed by this chunk, in order. */
	feed(chunk: string): ServerEvent[];
	private line;
}
export declare class UnreadCounter {
	private readonly capacity;
	private older;
	/** Every notification counted in `older` has a seq at or below this. */
	private base;
	private readonly seen;
	private readonly ids;
	private known;
	constructor(capacity?: number);
	/** Null until the server's count has been set once. */
	get value(): number | null;
	/**
	 * Start over from the server's word: `unread` are its newest unread notifications
	 * (newest first), `older` how many more unread ones there are below them. Read state
	 * may have changed while this client was not connected, so nothing local is kept.
	 */
	seed(unread: Notification$1[], older: number): void;
	notification(n: Notification$1): void;
	/** Apply a `read` frame; true when the count can no longer be known locally. */
	read(event: ReadEvent): boolean;
	/** Apply an `archived` frame; true when the count can no longer be known locally. */
	archived(ids: string[]): boolean;
}

export {
	Notification$1 as Notification,
};

export {};
