/**
 * The two ways to hold the stream, behind one shape: frames in as objects with a `type`
 * (the WebSocket's own, or an SSE event turned into the same object), one close with a
 * WebSocket-style code. SSE answers that are not a stream map onto the codes the
 * WebSocket uses for the same refusal (401 -> 4401, 400 -> 4400, 429 -> 4429).
 */
import { EventStreamParser } from "./sse.js";

export interface Frame {
  type: string;
  [field: string]: unknown;
}

export interface TransportHandlers {
  open(): void;
  frame(frame: Frame): void;
  /** Called once. `opened` says whether `open` was called before. */
  close(code: number, reason: string, opened: boolean): void;
}

export interface Transport {
  readonly kind: "websocket" | "sse";
  /** False when this transport cannot send (SSE is read-only) or is not open. */
  send(frame: Frame): boolean;
  close(): void;
}

/** Internal close code: the server has no `/v1/sse` (404). */
export const SSE_MISSING = 4404;
/** Internal close code: the SSE request was forbidden (403, Origin). */
export const FORBIDDEN = 4003;

export function openWebSocket(
  base: string,
  token: string,
  after: number,
  on: TransportHandlers,
): Transport {
  const url = new URL("v1/ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("access_token", token);
  url.searchParams.set("after", String(after));
  let opened = false;
  let closed = false;
  const finish = (code: number, reason: string): void => {
    if (closed) return;
    closed = true;
    on.close(code, reason, opened);
  };
  let socket: WebSocket;
  try {
    socket = new WebSocket(url.toString());
  } catch (error) {
    queueMicrotask(() => finish(1006, String(error)));
    return { kind: "websocket", send: () => false, close: () => finish(1000, "closed") };
  }
  socket.onopen = () => {
    opened = true;
    on.open();
  };
  socket.onmessage = (message: MessageEvent) => {
    if (closed || typeof message.data !== "string") return;
    let frame: unknown;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (typeof frame === "object" && frame !== null && typeof (frame as Frame).type === "string") {
      on.frame(frame as Frame);
    }
  };
  socket.onclose = (event: CloseEvent) => finish(event.code, event.reason);
  // Browsers follow a failed handshake's `error` with a `close`; some runtimes (node 20)
  // do not: a handshake that fails is over either way.
  socket.onerror = () => {
    if (!opened) finish(1006, "could not connect");
  };
  return {
    kind: "websocket",
    send(frame: Frame): boolean {
      if (closed || socket.readyState !== 1) return false;
      socket.send(JSON.stringify(frame));
      return true;
    },
    close(): void {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
      finish(1000, "closed by the client");
    },
  };
}

const STATUS_CODES: Record<number, number> = {
  400: 4400,
  401: 4401,
  403: FORBIDDEN,
  404: SSE_MISSING,
  429: 4429,
};

/**
 * SSE over `fetch` rather than `EventSource`: it sends the token in an Authorization
 * header (never in a URL, where proxies log it), it sees the answer's status (an
 * `EventSource` cannot tell a 401 from a network error), and it reconnects on this
 * client's backoff and resume position instead of its own fixed retry.
 */
export function openEventStream(
  base: string,
  token: string,
  after: number,
  on: TransportHandlers,
): Transport {
  const url = new URL("v1/sse", base);
  url.searchParams.set("after", String(after));
  const abort = new AbortController();
  let opened = false;
  let closed = false;
  const finish = (code: number, reason: string): void => {
    if (closed) return;
    closed = true;
    abort.abort();
    on.close(code, reason, opened);
  };
  const run = async (): Promise<void> => {
    const response = await fetch(url.toString(), {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
    if (response.status !== 200 || !response.body) {
      finish(STATUS_CODES[response.status] ?? 1006, `HTTP ${response.status}`);
      return;
    }
    opened = true;
    on.open();
    const parser = new EventStreamParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done || closed) break;
      for (const event of parser.feed(value)) {
        let body: unknown;
        try {
          body = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (typeof body !== "object" || body === null) continue;
        if (event.event === "notification") {
          on.frame({ type: "notification", notification: body });
        } else if (event.event === "close") {
          const close = body as { code?: unknown; detail?: unknown };
          finish(typeof close.code === "number" ? close.code : 1006, String(close.detail ?? ""));
          return;
        } else {
          on.frame({ ...(body as object), type: event.event });
        }
        if (closed) return;
      }
    }
    finish(1006, "stream ended");
  };
  run().catch((error: unknown) => finish(1006, String(error)));
  return {
    kind: "sse",
    send: () => false,
    close: () => finish(1000, "closed by the client"),
  };
}
