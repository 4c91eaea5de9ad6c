/**
 * notifier's browser client: `new NotifierClient({url, getToken})`, then listen with
 * `client.on("notification" | "read" | "archived" | "gap" | "state" | "unread", fn)`.
 */
export { NotifierClient } from "./client.js";
export { NotifierError } from "./inbox.js";
export { EventStreamParser, type ServerEvent } from "./sse.js";
export { UnreadCounter } from "./unread.js";
export { backoff, claims, renewalDelay } from "./util.js";
export type {
  ArchivedEvent,
  ClientOptions,
  Events,
  GapEvent,
  ListOptions,
  Notification,
  ReadEvent,
  State,
  StorageLike,
  Transport,
} from "./types.js";
