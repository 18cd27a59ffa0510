import { invoke } from "@tauri-apps/api/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emit, fakeBackend, rejectWith } from "../test/backend";
import { params, reply, thawReport } from "../test/fixtures";
import { api, ApiFailure, BACKEND_UNAVAILABLE, toApiError, unwrap } from "./api";
import type { GenEvent } from "./bindings";

describe("bindings + api", () => {
  it("calls the snake_case command with camelCase argument keys", async () => {
    const backend = fakeBackend({ keep_alternative: () => [] });
    await api.keepAlternative(1, "b", true);
    expect(invoke).toHaveBeenCalledWith("keep_alternative", { index: 1, name: "b", keepOthers: true });
    expect(backend.calls.map(([c]) => c)).toEqual(["keep_alternative"]);
  });

  it("returns the ok value", async () => {
    fakeBackend({ thaw: ({ node }) => thawReport({ node: node as number, millis: 7 }) });
    const report = await api.thaw(3);
    expect(report.node).toBe(3);
    expect(report.millis).toBe(7);
  });

  it("throws the backend's ApiError as an ApiFailure with its message", async () => {
    fakeBackend({ thaw: () => rejectWith("state_model_mismatch", "This node was made with another model.") });
    const err = await api.thaw(1).catch((e) => e);
    expect(err).toBeInstanceOf(ApiFailure);
    expect(err.code).toBe("state_model_mismatch");
    expect(err.message).toBe("This node was made with another model.");
  });

  it("turns Tauri's plain string rejections into readable errors", async () => {
    fakeBackend();
    const err = await api.exportNode(1, "/tmp/x").catch((e) => e);
    expect(err).toBeInstanceOf(ApiFailure);
    expect(err.message).toBe("Command export_node not found");
  });

  it("streams channel events to the callback before resolving", async () => {
    fakeBackend({
      chat_send: (args) => {
        emit<GenEvent>(args, { kind: "progress", done: 3, total: 3 }, { kind: "text", text: "Hi" });
        return reply({ text: "Hi", tokens: 1 });
      },
    });
    const seen: GenEvent[] = [];
    const r = await api.chatSend("hello", params(), (e) => seen.push(e));
    expect(seen).toEqual([
      { kind: "progress", done: 3, total: 3 },
      { kind: "text", text: "Hi" },
    ]);
    expect(r.text).toBe("Hi");
  });
});

describe("toApiError", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("keeps code and message of a backend error", () => {
    expect(toApiError({ code: "io", message: "Disk full" })).toEqual({ code: "io", message: "Disk full" });
  });

  it("never shows raw JSON for unknown shapes", () => {
    expect(toApiError({ weird: 1 }).message).toBe("The backend answered with an unexpected error.");
    expect(toApiError(42).message).not.toContain("{");
  });

  it("reports a missing backend when the Tauri bridge is absent", async () => {
    const internals = (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__;
    delete (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__;
    try {
      const err = (await unwrap(() => Promise.reject(new TypeError("Cannot read properties of undefined"))).catch(
        (e) => e,
      )) as ApiFailure;
      expect(err.code).toBe(BACKEND_UNAVAILABLE);
      expect(err.message).toMatch(/backend is not available/);
    } finally {
      (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__ = internals;
    }
  });
});
