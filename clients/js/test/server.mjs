// A real `notifier serve` for the client's tests: SQLite in a temporary folder, a known
// secret and API key, a free loopback port; stopped by the test that started it.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const SECRET = "client-test-secret-that-is-long-enough-0123456789";
export const API_KEY = "client-test-publisher-key";
const ROOT = resolve(import.meta.dirname, "../../..");
const BIN = process.env.NOTIFIER_BIN ?? join(ROOT, ".venv/bin/notifier");
const FACTOR = Number(process.env.NOTIFIER_TEST_TIMEOUT_FACTOR ?? "1");

export const seconds = (s) => s * 1000 * FACTOR;

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** An HS256 user token; `ttl` in seconds, `secret` to sign it wrongly. */
export function token(user, { ttl = 3600, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub: user, iat: now, exp: now + ttl });
  const signature = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

let users = 0;
export const newUser = () => `js-${process.pid}-${Date.now().toString(36)}-${++users}`;

export async function startServer(env = {}) {
  const port = await freePort();
  const folder = mkdtempSync(join(tmpdir(), "notifier-js-"));
  const logPath = join(folder, "server.log");
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NOTIFIER_")));
  const spawnServer = () =>
    spawn(BIN, ["serve", "--port", String(port), "--no-access-log"], {
      cwd: folder,
      env: {
        ...clean,
        NOTIFIER_DATABASE_URL: `sqlite+aiosqlite:///${join(folder, "notifier.db")}`,
        NOTIFIER_JWT_SECRET: SECRET,
        NOTIFIER_API_KEYS: `main:${API_KEY}`,
        // Tests open sockets from one address faster than any browser would.
        NOTIFIER_HANDSHAKE_RATE: "0",
        ...env,
      },
      stdio: ["ignore", openSync(logPath, "a"), openSync(logPath, "a")],
    });
  let child = spawnServer();
  const url = `http://127.0.0.1:${port}`;
  const halt = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), seconds(10));
    await exited;
    clearTimeout(timer);
  };
  const ready = async () => {
    const deadline = Date.now() + seconds(30);
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited:\n${server.logs()}`);
      try {
        if ((await fetch(`${url}/readyz`)).status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error("server not ready");
      await new Promise((done) => setTimeout(done, 50));
    }
  };
  const server = {
    url,
    async publish(user, data = { text: "hi" }, type = "test.event") {
      const answer = await fetch(`${url}/v1/notifications`, {
        method: "POST",
        headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: user, type, data }),
      });
      if (answer.status !== 201) throw new Error(`publish: ${answer.status} ${await answer.text()}`);
      return answer.json();
    },
    async metric(name) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(" ")[1]) : NaN;
    },
    async status(path) {
      return (await fetch(url + path)).status;
    },
    logs: () => readFileSync(logPath, "utf8"),
    /** SIGTERM (sockets are closed with 1012), then the same server again on its port. */
    async restart(between = async () => undefined) {
      await halt();
      await between();
      child = spawnServer();
      await ready();
    },
    async stop() {
      await halt();
      rmSync(folder, { recursive: true, force: true });
    },
  };
  try {
    await ready();
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** Resolves with the first value `next()` gives that passes `test`, polling. */
export async function until(what, test, limit = seconds(5)) {
  const deadline = Date.now() + limit;
  for (;;) {
    const value = await what();
    if (test(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out; last value: ${JSON.stringify(value)}`);
    await new Promise((done) => setTimeout(done, 20));
  }
}
