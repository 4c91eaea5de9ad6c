// The client's pure parts: backoff, the event-stream parser, the unread counter, tokens.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventStreamParser, UnreadCounter, backoff, claims, renewalDelay } from "../../../notifier/_static/client.js";
import { token } from "./server.mjs";

test("backoff draws from [0, min(cap, base * 2^attempt)) and never passes the cap", () => {
  assert.equal(backoff(0, 500, 30000, () => 0.999), 499);
  assert.equal(backoff(3, 500, 30000, () => 0.5), 2000);
  assert.equal(backoff(10, 500, 30000, () => 0.999), 29970);
  assert.equal(backoff(1000, 500, 30000, () => 0.999), 29970);
  assert.equal(backoff(5, 500, 30000, () => 0), 0);
});

test("the event-stream parser joins data lines, keeps ids, skips comments, across chunks", () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.feed(": heartbeat\n\nevent: notifica"), []);
  assert.deepEqual(parser.feed('tion\r\nid: 7\r\ndata: {"seq":\r'), []);
  assert.deepEqual(parser.feed('\n'), []);
  const events = parser.feed('data: 7}\n\nevent: replayed\ndata:{"last_seq":7}\n\n');
  assert.deepEqual(events, [
    { event: "notification", data: '{"seq":\n7}', id: "7" },
    { event: "replayed", data: '{"last_seq":7}', id: null },
  ]);
});

const n = (seq, read = false) => ({ id: `id-${seq}`, seq, read_at: read ? "x" : null, archived_at: null });

test("the unread count follows notification, read and archived frames exactly", () => {
  const counter = new UnreadCounter();
  assert.equal(counter.value, null);
  counter.seed([n(9), n(4)], 2); // the server's newest unread, and 2 more below seq 4
  assert.equal(counter.value, 4);
  counter.notification(n(11));
  counter.notification(n(12, true));
  counter.notification(n(11)); // a repeat changes nothing
  counter.notification(n(9)); // nor does one the server already counted
  assert.equal(counter.value, 5);
  assert.equal(counter.read({ ids: ["id-11", "id-older"] }), false);
  assert.equal(counter.value, 3, "id-older was one of the 2 below");
  assert.equal(counter.archived(["id-4"]), false);
  assert.equal(counter.value, 2);
  assert.equal(counter.archived(["id-unknown"]), true, "maybe one of those below: ask");
  assert.equal(counter.read({ up_to_seq: 2 }), true, "some below seq 4 may stay unread: ask");
  assert.equal(counter.read({ up_to_seq: 9 }), false);
  assert.equal(counter.value, 0);
  counter.notification(n(13));
  assert.equal(counter.archived(["id-unknown"]), false, "nothing older is unread any more");
  assert.equal(counter.value, 1);
});

test("an evicted unread notification still counts", () => {
  const counter = new UnreadCounter(2);
  counter.seed([], 0);
  for (const seq of [1, 2, 3]) counter.notification(n(seq));
  assert.equal(counter.value, 3);
  assert.equal(counter.archived(["id-1"]), true);
  assert.equal(counter.read({ ids: ["id-1"] }), false);
  assert.equal(counter.value, 2);
});

test("claims are read from a token, and renewal comes ahead of exp by a fifth of its life", () => {
  const t = token("alice", { ttl: 100 });
  assert.equal(claims(t).sub, "alice");
  const { iat } = claims(t);
  assert.equal(renewalDelay(t, iat * 1000), 80_000);
  const short = token("a", { ttl: 5 });
  assert.equal(renewalDelay(short, claims(short).iat * 1000), 3000, "at least 2 s ahead");
  assert.equal(renewalDelay("not-a-jwt", 0), null);
});
