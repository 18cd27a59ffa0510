import "@testing-library/jest-dom/vitest";
import { vi } from "vitest";

// The process boundary: only `invoke` is replaced (test/backend.ts gives it behaviour). `Channel`
// stays real; it needs the bridge's callback registry, which this minimal stand-in provides.
vi.mock("@tauri-apps/api/core", async (importOriginal) => {
  const actual = await importOriginal<typeof import("@tauri-apps/api/core")>();
  return { ...actual, invoke: vi.fn() };
});

let nextCallback = 1;
Object.defineProperty(window, "__TAURI_INTERNALS__", {
  configurable: true,
  writable: true,
  value: {
    transformCallback: () => nextCallback++,
    unregisterCallback: () => {},
  },
});
