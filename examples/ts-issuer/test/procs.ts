// The real servers the end-to-end test runs against, as processes: the
// nats-server binary (NATS_SERVER_BIN), MongoDB (MONGODB_URI, else the
// repository's in-memory stand-in, as internal/mongostandin starts it) and
// the worker binary (WORKER_BIN, default bin/customdata-worker).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs from examples/ts-issuer/dist/test/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

export type Proc = { logs: string[]; stop(): Promise<void> };

function need(file: string, what: string): string {
  if (!existsSync(file)) throw new Error(`${what} not found at ${file} (run make test-ts from the repository root)`);
  return file;
}

// Starts a process and resolves once one of its output lines matches
// ready (the match is returned), keeping every line.
async function start(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; ready?: RegExp; stdin?: boolean },
): Promise<{ child: ChildProcess; logs: string[]; match: RegExpMatchArray | null }> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  let resolveMatch: (m: RegExpMatchArray) => void = () => {};
  const matched = new Promise<RegExpMatchArray>((r) => (resolveMatch = r));
  for (const s of [child.stdout!, child.stderr!]) {
    createInterface({ input: s }).on("line", (line) => {
      logs.push(line);
      const m = opts.ready && line.match(opts.ready);
      if (m) resolveMatch(m);
    });
  }
  if (!opts.ready) return { child, logs, match: null };
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`${cmd} exited (${code}) before it was ready:\n${logs.join("\n")}`))),
  );
  const failed = new Promise<never>((_, reject) => child.once("error", reject));
  const late = sleep(60_000, undefined, { ref: false }).then(() => {
    throw new Error(`${cmd} was not ready within 60 s:\n${logs.join("\n")}`);
  });
  const match = await Promise.race([matched, exited, failed, late]);
  return { child, logs, match };
}

// SIGTERM (or closing its input), then SIGKILL after 20 s; resolves on exit.
async function stopChild(child: ChildProcess, how: "sigterm" | "stdin"): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  if (how === "stdin") child.stdin?.end();
  else child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const code = await exited;
  clearTimeout(t);
  return code;
}

/** nats-server with JetStream on storeDir, on port (default: a free one) of the loopback. */
export async function startNats(storeDir: string, port = -1): Promise<Proc & { url: string; port: number }> {
  const bin = need(process.env.NATS_SERVER_BIN || path.join(repoRoot, "bin/nats-server"), "nats-server (NATS_SERVER_BIN)");
  const { child, logs, match } = await start(bin, ["-js", "-sd", storeDir, "-a", "127.0.0.1", "-p", String(port)], {
    ready: /Listening for client connections on (\S+):(\d+)/,
  });
  return {
    url: `nats://${match![1]}:${match![2]}`,
    port: Number(match![2]),
    logs,
    stop: async () => void (await stopChild(child, "sigterm")),
  };
}

/** MONGODB_URI when set, else the stand-in on a free port (in memory). */
export async function startMongo(): Promise<Proc & { uri: string; standIn: boolean }> {
  if (process.env.MONGODB_URI) return { uri: process.env.MONGODB_URI, standIn: false, logs: [], stop: async () => {} };
  const dir = process.env.MONGO_STANDIN_DIR || path.join(repoRoot, "internal/mongostandin/launcher");
  const jar = need(path.join(dir, "target/mongo-standin.jar"), "the stand-in (make standin)");
  const cp = `${jar}${path.delimiter}${path.join(dir, "target/lib/*")}`;
  // The launcher prints "listening HOST:PORT" and stops at the end of its input.
  const { child, logs, match } = await start("java", ["-Xss1m", "-cp", cp, "dev.customdata.standin.Launcher"], {
    ready: /^listening (\S+)$/,
    stdin: true,
  });
  return {
    uri: `mongodb://${match![1]}/?directConnection=true`,
    standIn: true,
    logs,
    stop: async () => void (await stopChild(child, "stdin")),
  };
}

/** The worker binary (`run`), configured by env on top of this process's. */
export async function startWorker(env: Record<string, string>): Promise<Proc> {
  const bin = need(process.env.WORKER_BIN || path.join(repoRoot, "bin/customdata-worker"), "the worker (make build)");
  const { child, logs } = await start(bin, ["run"], { env: { ...process.env, ...env } });
  return {
    logs,
    stop: async () => {
      const code = await stopChild(child, "sigterm");
      if (code !== 0) throw new Error(`worker exited with ${code}:\n${logs.join("\n")}`);
    },
  };
}

/**
 * Polls cond until it holds, failing with what after a generous deadline:
 * no assertion on how long anything takes.
 */
export async function eventually(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs / 1000} s: ${what}${last ? ` (last error: ${last})` : ""}`);
    await sleep(25);
  }
}
