/**
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(cap, base * 2^attempt)], so that a crowd of clients that lost the same server
 * at the same moment spreads its reconnects over the whole window instead of arriving
 * together (AWS Architecture Blog, "Exponential Backoff And Jitter").
 */
export function backoff(attempt: number, base: number, cap: number, random = Math.random): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

export interface Claims {
  sub?: string;
  exp?: number;
  iat?: number;
}

/** A JWT's claims, read without verifying it (the server verifies); {} if unreadable. */
export function claims(token: string): Claims {
  const part = token.split(".")[1];
  if (!part) return {};
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const body: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof body === "object" && body !== null ? (body as Claims) : {};
  } catch {
    return {};
  }
}

/**
 * When to renew a token, in ms from now: ahead of `exp` by a fifth of its life, at least
 * 2 s and at most 60 s, so that a slow token callback and some clock skew still leave
 * time. Null when the token says nothing about its expiry.
 */
export function renewalDelay(token: string, nowMs: number): number | null {
  const { exp, iat } = claims(token);
  if (typeof exp !== "number") return null;
  const life = typeof iat === "number" ? exp - iat : exp - nowMs / 1000;
  const margin = Math.min(60, Math.max(2, life / 5));
  return Math.max(0, (exp - margin) * 1000 - nowMs);
}

/** Storage that forgets: where `localStorage` is missing or refuses access. */
export class MemoryStorage {
  private readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

export function defaultStorage(): MemoryStorage | Storage {
  try {
    const storage = globalThis.localStorage;
    if (storage) {
      const probe = "notifier:probe";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    }
  } catch {
    // Safari private mode, storage disabled by policy: fall through.
  }
  return new MemoryStorage();
}

/** A minimal typed event emitter: `on` returns the function that unsubscribes. */
export class Emitter<E> {
  private readonly listeners = new Map<keyof E, Set<(value: never) => void>>();

  on<K extends keyof E>(name: K, listener: (value: E[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as (value: never) => void);
    return () => this.off(name, listener);
  }

  off<K extends keyof E>(name: K, listener: (value: E[K]) => void): void {
    this.listeners.get(name)?.delete(listener as (value: never) => void);
  }

  protected emit<K extends keyof E>(name: K, value: E[K]): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        (listener as (value: E[K]) => void)(value);
      } catch (error) {
        // One listener's bug must not stop delivery to the others, nor the client.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
