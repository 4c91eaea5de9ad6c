// The client against a real `notifier serve`: live delivery, resume with no gap or
// duplicate, tokens (4401, renewal), the unread count, tabs sharing one connection.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { NotifierClient } from "../../../notifier/_static/client.js";
import { API_KEY, newUser, seconds, startServer, token, until } from "./server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

class MemoryStorage {
  items = new Map();
  getItem(key) {
    return this.items.get(key) ?? null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

/** A client with everything it emits recorded. */
function open(user, options = {}) {
  const client = new NotifierClient({
    url: server.url,
    getToken: () => token(user),
    storage: new MemoryStorage(),
    shareTabs: false,
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
    ...options,
  });
  const seen = { notifications: [], states: [], reads: [], gaps: [], unread: [] };
  client.on("notification", (n) => seen.notifications.push(n));
  client.on("state", (s) => seen.states.push(s));
  client.on("read", (r) => seen.reads.push(r));
  client.on("gap", (g) => seen.gaps.push(g));
  client.on("unread", (u) => seen.unread.push(u));
  return { client, seen };
}

const seqs = (seen) => seen.notifications.map((n) => n.seq);

test("a publish arrives live, and the unread count follows it and a mark read", async (t) => {
  const user = newUser();
  await server.publish(user, { text: "before" });
  const { client, seen } = open(user);
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  await until(() => client.unread, (u) => u === 1);
  assert.deepEqual(seqs(seen), [], "history is the inbox's, not the stream's");
  const published = await server.publish(user, { text: "live" });
  await until(() => seqs(seen), (s) => s.length === 1);
  assert.equal(seen.notifications[0].id, published.id);
  await until(() => client.unread, (u) => u === 2);
  assert.equal(await client.markRead([published.id]), 1);
  await until(() => seen.reads.length, (c) => c === 1);
  assert.deepEqual(seen.reads[0], { ids: [published.id] });
  await until(() => client.unread, (u) => u === 1);
  await client.markAllRead();
  await until(() => client.unread, (u) => u === 0);
  const page = await client.list({ limit: 10 });
  assert.deepEqual(page.map((n) => n.seq), [2, 1]);
  assert.equal(await client.unreadCountFromServer(), 0);
});

test("a new client on the same storage resumes where the last stopped: no gap, no repeat", async (t) => {
  const user = newUser();
  const storage = new MemoryStorage();
  const first = open(user, { storage });
  await until(() => first.client.state, (s) => s === "live");
  for (let i = 0; i < 3; i++) await server.publish(user, { i });
  await until(() => seqs(first.seen), (s) => s.length === 3);
  first.client.close();
  for (let i = 3; i < 6; i++) await server.publish(user, { i });
  const second = open(user, { storage });
  t.after(() => second.client.close());
  await until(() => seqs(second.seen), (s) => s.length >= 3);
  await server.publish(user, { i: 6 });
  await until(() => seqs(second.seen), (s) => s.length >= 4);
  assert.deepEqual(seqs(first.seen), [1, 2, 3]);
  assert.deepEqual(seqs(second.seen), [4, 5, 6, 7]);
});

test("a refused token makes the client ask the callback once, then it connects", async (t) => {
  const user = newUser();
  let calls = 0;
  const { client } = open(user, {
    token: token(user, { secret: "a-wrong-secret-a-wrong-secret-0123456789" }),
    getToken: () => {
      calls += 1;
      return token(user);
    },
  });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  assert.equal(calls, 1);
});

test("a callback that only gives refused tokens leaves the client unauthorized, backing off", async (t) => {
  const user = newUser();
  let calls = 0;
  const random = Math.random;
  Math.random = () => 0.5; // delays of 100, 200, 400, 800 ms: half of each backoff step
  t.after(() => {
    Math.random = random;
  });
  const { client, seen } = open(user, {
    minReconnectDelay: 200,
    maxReconnectDelay: 3200,
    getToken: () => {
      calls += 1;
      return token(user, { secret: "a-wrong-secret-a-wrong-secret-0123456789" });
    },
  });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "unauthorized");
  await new Promise((done) => setTimeout(done, 1200));
  Math.random = random;
  assert.ok(calls >= 3 && calls <= 5, `${calls} token calls in 1.2 s, one per attempt`);
  assert.ok(!seen.states.includes("live"));
});

test("a token about to expire is renewed on the open socket: no reconnect, nothing lost", async (t) => {
  const user = newUser();
  const { client, seen } = open(user, { getToken: () => token(user, { ttl: 3 }) });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  for (let i = 0; i < 4; i++) {
    await server.publish(user, { i });
    await new Promise((done) => setTimeout(done, 1500));
  }
  await until(() => seqs(seen), (s) => s.length === 4);
  assert.deepEqual(seqs(seen), [1, 2, 3, 4]);
  assert.deepEqual(seen.states, ["live"], "never left live: the socket outlived three tokens");
});

test("a stored position beyond the server's newest seq is a gap: reset, told, nothing skipped", async (t) => {
  const user = newUser();
  await server.publish(user, { text: "one" });
  const storage = new MemoryStorage();
  storage.setItem(`notifier:${server.url}/:${user}:seq`, "50");
  const { client, seen } = open(user, { storage });
  t.after(() => client.close());
  await until(() => seen.gaps.length, (c) => c === 1);
  assert.equal(seen.gaps[0].reason, "reset");
  assert.deepEqual(seen.gaps[0].notifications.map((n) => n.seq), [1]);
  await until(() => client.state, (s) => s === "live");
  await server.publish(user, { text: "two" });
  await until(() => seqs(seen), (s) => s.length === 1);
  assert.deepEqual(seqs(seen), [2]);
});

test("two tabs share one connection; the follower takes over from the leader with nothing lost", async (t) => {
  const user = newUser();
  const storage = new MemoryStorage(); // what localStorage is to two tabs of one browser
  const a = open(user, { storage, shareTabs: true });
  await until(() => a.client.state, (s) => s === "live");
  const b = open(user, { storage, shareTabs: true });
  t.after(() => b.client.close());
  await until(() => b.client.state, (s) => s === "live");
  assert.ok(a.client.isLeader && !b.client.isLeader);
  assert.equal(await server.metric("notifier_open_sockets"), 1);
  await server.publish(user, { i: 1 });
  await until(() => [seqs(a.seen), seqs(b.seen)], ([x, y]) => x.length === 1 && y.length === 1);
  await until(() => b.client.unread, (u) => u === 1);
  a.client.close();
  await server.publish(user, { i: 2 }); // while nobody holds the connection
  await until(() => b.client.isLeader, Boolean);
  await server.publish(user, { i: 3 });
  await until(() => seqs(b.seen), (s) => s.length === 3);
  assert.deepEqual(seqs(b.seen), [1, 2, 3]);
  assert.equal(await server.metric("notifier_open_sockets"), 1);
});

test("SSE, when asked for, carries the same stream", async (t) => {
  if ((await server.status("/v1/sse")) === 404) return t.skip("this server has no /v1/sse");
  const user = newUser();
  const { client, seen } = open(user, { transport: "sse" });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  await server.publish(user, { i: 1 });
  await until(() => seqs(seen), (s) => s.length === 1);
});

test("over SSE a token about to expire is renewed by a new stream: nothing lost or repeated", async (t) => {
  if ((await server.status("/v1/sse")) === 404) return t.skip("this server has no /v1/sse");
  const user = newUser();
  const { client, seen } = open(user, { transport: "sse", getToken: () => token(user, { ttl: 3 }) });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  for (let i = 0; i < 4; i++) {
    await server.publish(user, { i });
    await new Promise((done) => setTimeout(done, 1500));
  }
  await until(() => seqs(seen), (s) => s.length === 4);
  assert.deepEqual(seqs(seen), [1, 2, 3, 4]);
  assert.deepEqual(seen.states, ["live"]);
});

test("a restart (1012) is resumed after a backoff, at once on `online`, with nothing lost", async (t) => {
  // Node has no window: stand one in for the browser's `online` event.
  const network = new EventTarget();
  globalThis.addEventListener = network.addEventListener.bind(network);
  globalThis.removeEventListener = network.removeEventListener.bind(network);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  const user = newUser();
  const { client, seen } = open(user, { minReconnectDelay: 60_000, maxReconnectDelay: 60_000 });
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  await server.publish(user, { i: 1 });
  await until(() => seqs(seen), (s) => s.length === 1);
  const random = Math.random;
  Math.random = () => 0.99; // the first retry in 59 s
  t.after(() => {
    Math.random = random;
  });
  await server.restart(() => until(() => client.state, (s) => s === "offline"));
  Math.random = random;
  await server.publish(user, { i: 2 });
  await new Promise((done) => setTimeout(done, 300));
  assert.equal(client.state, "offline", "still waiting for its backoff");
  network.dispatchEvent(new Event("online"));
  await until(() => client.state, (s) => s === "live");
  await server.publish(user, { i: 3 });
  await until(() => seqs(seen), (s) => s.length === 3);
  assert.deepEqual(seqs(seen), [1, 2, 3]);
});

test("a resume past notifications deleted by retention is a gap: told, page refetched", async (t) => {
  const short = await startServer({ NOTIFIER_RETENTION_DAYS: String(2 / 86400) }); // 2 s
  t.after(() => short.stop());
  const user = newUser();
  const storage = new MemoryStorage();
  const options = { url: short.url, storage };
  const first = open(user, options);
  await until(() => first.client.state, (s) => s === "live");
  await short.publish(user, { i: 1 });
  await until(() => seqs(first.seen), (s) => s.length === 1);
  first.client.close();
  await short.publish(user, { i: 2 });
  await new Promise((done) => setTimeout(done, seconds(4))); // 1 and 2 are deleted
  await short.publish(user, { i: 3 });
  const second = open(user, options);
  t.after(() => second.client.close());
  await until(() => second.seen.gaps.length, (c) => c === 1, seconds(10));
  assert.equal(second.seen.gaps[0].reason, "retention");
  assert.deepEqual(second.seen.gaps[0].notifications.map((n) => n.seq), [3]);
  assert.deepEqual(seqs(second.seen), [3]);
});

test("a follower that sees a jump in seqs reads the missing ones over HTTP, in order", async (t) => {
  const user = newUser();
  const key = `notifier:${server.url}/:${user}`;
  const storage = new MemoryStorage();
  // This test is the leading tab: it holds the lease and speaks on the channel.
  storage.setItem(`${key}:lease`, JSON.stringify({ id: "test", until: Date.now() + 60_000 }));
  const leader = new BroadcastChannel(key);
  t.after(() => leader.close());
  const published = [];
  for (let i = 1; i <= 3; i++) published.push(await server.publish(user, { i }));
  const { client, seen } = open(user, { storage, shareTabs: true });
  t.after(() => client.close());
  await client.whenReady();
  leader.postMessage({ t: "state", state: "live", unread: 3 });
  await until(() => client.state, (s) => s === "live");
  leader.postMessage({ t: "notification", notification: published[2] }); // 1 and 2 were lost
  await until(() => seqs(seen), (s) => s.length === 3);
  leader.postMessage({ t: "notification", notification: published[1] }); // late: dropped
  await new Promise((done) => setTimeout(done, 100));
  assert.deepEqual(seqs(seen), [1, 2, 3]);
  assert.equal(client.isLeader, false);
  assert.equal(client.unread, 3);
});

test("WebSocket that cannot connect: the client falls back to SSE at once", async (t) => {
  if ((await server.status("/v1/sse")) === 404) return t.skip("this server has no /v1/sse");
  const Real = globalThis.WebSocket;
  globalThis.WebSocket = class extends Real {
    constructor(url) {
      super(String(url).replace(/\/v1\/ws.*/, "/blocked")); // refused before it opens
    }
  };
  t.after(() => {
    globalThis.WebSocket = Real;
  });
  const user = newUser();
  const { client, seen } = open(user);
  t.after(() => client.close());
  await until(() => client.state, (s) => s === "live");
  await server.publish(user, { i: 1 });
  await until(() => seqs(seen), (s) => s.length === 1);
});

test("a revoked user's client goes to `revoked` and never reconnects, in any tab", async (t) => {
  const revoke = (user) =>
    fetch(`${server.url}/v1/users/${user}/revoke`, {
      method: "POST",
      headers: { Authorization: `Bearer ${API_KEY}` },
    });
  if ((await revoke(newUser())).status === 404) return t.skip("this server has no revocation");
  const user = newUser();
  const storage = new MemoryStorage();
  let calls = 0;
  const getToken = () => {
    calls += 1;
    return token(user);
  };
  const a = open(user, { storage, shareTabs: true, getToken });
  t.after(() => a.client.close());
  await until(() => a.client.state, (s) => s === "live");
  const b = open(user, { storage, shareTabs: true, getToken });
  t.after(() => b.client.close());
  await until(() => b.client.state, (s) => s === "live");
  const before = calls;
  assert.equal((await revoke(user)).status, 200);
  await until(() => [a.client.state, b.client.state], (s) => s.every((x) => x === "revoked"));
  a.client.close(); // the follower leads now, and still does not connect
  await new Promise((done) => setTimeout(done, 1500));
  assert.equal(b.client.state, "revoked");
  assert.equal(calls, before, "no token asked for, no reconnect tried");
  assert.equal(await server.metric("notifier_open_sockets"), 0);
});

test("archive: the archived frame reaches the client and the unread count drops", async (t) => {
  const user = newUser();
  const first = await server.publish(user, { text: "one" });
  const { client } = open(user);
  t.after(() => client.close());
  const archived = [];
  client.on("archived", (event) => archived.push(event));
  await until(() => client.unread, (u) => u === 1);
  const second = await server.publish(user, { text: "two" });
  await until(() => client.unread, (u) => u === 2);
  try {
    assert.equal(await client.archive([first.id]), 1);
  } catch (error) {
    if (error.status === 404) return t.skip("this server has no archive");
    throw error;
  }
  await until(() => archived.length, (c) => c === 1);
  assert.deepEqual(archived[0], { ids: [first.id] });
  await until(() => client.unread, (u) => u === 1);
  assert.deepEqual((await client.list()).map((n) => n.id), [second.id]);
  assert.deepEqual((await client.list({ archived: "any" })).map((n) => n.seq), [2, 1]);
});
