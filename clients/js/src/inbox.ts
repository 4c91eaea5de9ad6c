/** The user's inbox over HTTP (`/v1/me/notifications...`), with the user's token. */
import type { ListOptions, Notification } from "./types.js";

/** An HTTP answer other than 2xx: `status` and the server's `detail`. */
export class NotifierError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(`HTTP ${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.name = "NotifierError";
  }
}

export interface Tokens {
  /** A token that is not about to expire. */
  current(): Promise<string>;
  /** A fresh one from the application's callback (after a 401). */
  fresh(): Promise<string>;
}

export class Inbox {
  constructor(
    private readonly base: string,
    private readonly tokens: Tokens,
  ) {}

  /** A page of notifications: newest first, or ascending with `after`. */
  async list(options: ListOptions = {}): Promise<Notification[]> {
    const query = new URLSearchParams();
    if (options.after !== undefined) query.set("after", String(options.after));
    if (options.before !== undefined) query.set("before", String(options.before));
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.unread) query.set("unread", "true");
    if (options.archived !== undefined) query.set("archived", String(options.archived));
    const text = query.toString();
    const suffix = text ? `?${text}` : "";
    const body = await this.request<{ notifications: Notification[] }>(
      "GET",
      `v1/me/notifications${suffix}`,
    );
    return body.notifications;
  }

  async unreadCount(): Promise<number> {
    return (await this.request<{ unread: number }>("GET", "v1/me/notifications/unread-count"))
      .unread;
  }

  /** Mark read by ids; resolves to how many went from unread to read. */
  async markRead(ids: string[]): Promise<number> {
    return (await this.request<{ updated: number }>("POST", "v1/me/notifications/read", { ids }))
      .updated;
  }

  async markReadUpTo(seq: number): Promise<number> {
    const body = { up_to_seq: seq };
    return (await this.request<{ updated: number }>("POST", "v1/me/notifications/read", body))
      .updated;
  }

  /** Archive (v1.1; a server without it answers 404, thrown as a NotifierError). */
  async archive(ids: string[]): Promise<number> {
    const body = { ids };
    return (await this.request<{ archived: number }>("POST", "v1/me/notifications/archive", body))
      .archived;
  }

  /** The newest seq of the user (0 with none), archived ones included. */
  async head(): Promise<number> {
    const [newest] = await this.list({ limit: 1, archived: "any" });
    return newest?.seq ?? 0;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let token = await this.tokens.current();
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(new URL(path, this.base).toString(), {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
      if (response.status === 401 && attempt === 0) {
        token = await this.tokens.fresh();
        continue;
      }
      const text = await response.text();
      let parsed: unknown = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = text;
      }
      if (!response.ok) {
        const detail = (parsed as { detail?: unknown } | null)?.detail ?? parsed;
        throw new NotifierError(response.status, detail);
      }
      return parsed as T;
    }
  }
}
