/**
 * One leading tab per browser, server and user. The leader holds the connection and
 * shares what it receives over a BroadcastChannel; the others follow. When the leader
 * goes away, one follower is elected and resumes from the last seq it processed itself.
 *
 * With Web Locks (`navigator.locks`), the lock is the election: it is released by the
 * browser when its tab closes, crashes or navigates, and the next waiting tab gets it.
 * Without them, a lease in shared storage: the leader renews it every second, a
 * follower takes an expired one over, and a leader that closes hands it back at once.
 */
import type { StorageLike } from "./types.js";

export interface Election {
  /** Give leadership up, or stop waiting for it. */
  release(): void;
}

interface LockManagerLike {
  request(
    name: string,
    options: { signal?: AbortSignal },
    callback: () => Promise<void>,
  ): Promise<unknown>;
}

function lockManager(): LockManagerLike | null {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return nav?.locks && typeof nav.locks.request === "function" ? nav.locks : null;
}

export function elect(
  name: string,
  storage: StorageLike,
  channel: BroadcastChannel | null,
  onLead: () => void,
  onLose: () => void,
): Election {
  const locks = lockManager();
  return locks
    ? lockElection(locks, name, onLead)
    : leaseElection(name, storage, channel, onLead, onLose);
}

function lockElection(locks: LockManagerLike, name: string, onLead: () => void): Election {
  const abort = new AbortController();
  let done: (() => void) | null = null;
  let released = false;
  locks
    .request(name, { signal: abort.signal }, () => {
      if (released) return Promise.resolve();
      onLead();
      return new Promise<void>((resolve) => {
        done = resolve;
      });
    })
    .catch(() => undefined); // aborted while waiting
  return {
    release(): void {
      released = true;
      abort.abort();
      done?.();
    },
  };
}

const LEASE_MS = 3000;
const TICK_MS = 1000;

function leaseElection(
  name: string,
  storage: StorageLike,
  channel: BroadcastChannel | null,
  onLead: () => void,
  onLose: () => void,
): Election {
  const key = `${name}:lease`;
  const me = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let leading = false;
  let released = false;
  const read = (): { id: string; until: number } | null => {
    try {
      const value: unknown = JSON.parse(storage.getItem(key) ?? "null");
      return typeof value === "object" && value !== null ? (value as { id: string; until: number }) : null;
    } catch {
      return null;
    }
  };
  const write = (): void => storage.setItem(key, JSON.stringify({ id: me, until: Date.now() + LEASE_MS }));
  const tick = (): void => {
    if (released) return;
    const lease = read();
    if (leading) {
      if (lease && lease.id !== me && lease.until > Date.now()) {
        // Another tab took an expired lease over (this tab's timers were throttled).
        leading = false;
        onLose();
        return;
      }
      write();
      return;
    }
    if (lease && lease.id !== me && lease.until > Date.now()) return;
    write();
    // Two tabs may write at once: the last write wins, and each checks after a pause.
    setTimeout(() => {
      if (released || leading) return;
      if (read()?.id === me) {
        leading = true;
        onLead();
      }
    }, 50 + Math.random() * 50);
  };
  const timer = setInterval(tick, TICK_MS);
  const onMessage = (event: MessageEvent): void => {
    if ((event.data as { t?: string } | null)?.t === "resign") setTimeout(tick, Math.random() * 30);
  };
  channel?.addEventListener("message", onMessage);
  tick();
  const release = (): void => {
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
