// A fake backend behind the real `invoke`: the only thing tests replace is
// `@tauri-apps/api/core`'s `invoke` (see setup.ts), so bindings.ts, api.ts, the stores and the
// components all run for real. Handlers receive the args object the way Rust would.
import { invoke, type Channel } from "@tauri-apps/api/core";
import { vi } from "vitest";
import { hostStatus } from "./fixtures";

type Handler = (args: Record<string, unknown>) => unknown;

export type FakeBackend = {
  /** Every call made, in order, as [command, args]. */
  calls: Array<[string, Record<string, unknown>]>;
  /** Replaces or adds a handler. */
  on(command: string, handler: Handler): void;
  /** The args of the calls made to `command`. */
  argsOf(command: string): Record<string, unknown>[];
};

/** An error the way a Rust command rejects: a plain `{ code, message }` object. */
export function rejectWith(code: string, message: string): never {
  throw { code, message };
}

/** Sends events down a channel that a command received. */
export function emit<T>(args: Record<string, unknown>, ...events: T[]): void {
  const channel = args.onEvent as Channel<T>;
  for (const e of events) channel.onmessage(e);
}

export function fakeBackend(handlers: Record<string, Handler> = {}): FakeBackend {
  const table: Record<string, Handler> = {
    status: () => hostStatus(),
    list_tree: () => [],
    search: () => [],
    stop: () => null,
    serving: () => ({ url: null }),
    installed_models: () => [],
    model_catalogue: () => [],
    document_questions: () => [],
    ...handlers,
  };
  const backend: FakeBackend = {
    calls: [],
    on(command, handler) {
      table[command] = handler;
    },
    argsOf(command) {
      return backend.calls.filter(([c]) => c === command).map(([, a]) => a);
    },
  };
  vi.mocked(invoke).mockImplementation(async (cmd: string, args?: unknown) => {
    const a = (args ?? {}) as Record<string, unknown>;
    backend.calls.push([cmd, a]);
    const handler = table[cmd];
    if (!handler) throw `Command ${cmd} not found`;
    return await handler(a);
  });
  return backend;
}

/** A promise to settle from the test, for holding a command open while it streams. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
