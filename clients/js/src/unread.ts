/**
 * The unread count, kept live from the stream without an HTTP call per frame.
 *
 * The count is `older + unread seen`: `seen` holds the read state of the notifications
 * this client knows one by one (the server's newest unread ones, then those received;
 * the newest `capacity` of them), `older` the number of unread ones below them that
 * were only ever counted by the server. Each frame then has an
 * exact effect, except two that cannot be known locally, for which `apply*` answer
 * "refetch": a `read` up to a seq below the ones seen, and an archive of a notification
 * never seen (it may or may not have been unread). Archived notifications are never
 * unread (v1.1).
 */
import type { Notification, ReadEvent } from "./types.js";

interface Seen {
  id: string;
  unread: boolean;
}

export class UnreadCounter {
  private older = 0;
  /** Every notification counted in `older` has a seq at or below this. */
  private base = 0;
  private readonly seen = new Map<number, Seen>();
  private readonly ids = new Map<string, number>();
  private known = false;

  constructor(private readonly capacity = 1000) {}

  /** Null until the server's count has been set once. */
  get value(): number | null {
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
  seed(unread: Notification[], older: number): void {
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

  notification(n: Notification): void {
    if (this.seen.has(n.seq)) return;
    this.seen.set(n.seq, { id: n.id, unread: n.read_at == null && n.archived_at == null });
    this.ids.set(n.id, n.seq);
    while (this.seen.size > this.capacity) {
      const [seq, oldest] = this.seen.entries().next().value as [number, Seen];
      this.seen.delete(seq);
      this.ids.delete(oldest.id);
      if (oldest.unread) this.older += 1;
      this.base = Math.max(this.base, seq);
    }
  }

  /** Apply a `read` frame; true when the count can no longer be known locally. */
  read(event: ReadEvent): boolean {
    if ("up_to_seq" in event) {
      for (const [seq, item] of this.seen) if (seq <= event.up_to_seq) item.unread = false;
      if (event.up_to_seq >= this.base) {
        this.older = 0;
        return false;
      }
      return this.older > 0;
    }
    // The frame lists only ids that went from unread to read.
    for (const id of event.ids) {
      const seq = this.ids.get(id);
      const item = seq === undefined ? undefined : this.seen.get(seq);
      if (item) item.unread = false;
      else this.older = Math.max(0, this.older - 1);
    }
    return false;
  }

  /** Apply an `archived` frame; true when the count can no longer be known locally. */
  archived(ids: string[]): boolean {
    let unknown = false;
    for (const id of ids) {
      const seq = this.ids.get(id);
      const item = seq === undefined ? undefined : this.seen.get(seq);
      if (item) item.unread = false;
      else unknown = true;
    }
    return unknown && this.older > 0;
  }
}
