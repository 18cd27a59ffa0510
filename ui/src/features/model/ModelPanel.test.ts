import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { Channel } from "@tauri-apps/api/core";
import type { LoadProgress } from "../../lib/api";
import { deferred, fakeBackend, rejectWith } from "../../test/backend";
import { model, params } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import ModelPanel from "./ModelPanel.svelte";

describe("ModelPanel", () => {
  it("describes the loaded model", async () => {
    fakeBackend();
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    expect(screen.getByTestId("model-name")).toHaveTextContent("TinyLlama-1.1B-Chat");
    expect(screen.getByTestId("model-device")).toHaveTextContent("CPU · avx512 kernels");
    expect(screen.getByTestId("model-panel")).toHaveTextContent("GGUF · Q4_K_M");
    expect(screen.getByTestId("model-panel")).toHaveTextContent("2,048 tokens");
  });

  it("opens another model by path and refreshes the tree's compatibility", async () => {
    const user = userEvent.setup();
    const other = model({ name: "Llama-3.2-1B", device: "CUDA", path: "/models/llama32" });
    const backend = fakeBackend({ open_model: () => other });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.type(screen.getByTestId("model-path"), "/models/llama32");
    await user.click(screen.getByTestId("model-open"));
    expect(backend.argsOf("open_model").map((a) => a.path)).toEqual(["/models/llama32"]);
    await waitFor(() => expect(backend.argsOf("list_tree")).toHaveLength(2));
    expect(app.session.report).toBe("opened Llama-3.2-1B on CUDA");
  });

  it("shows the bytes of weights read while a model opens", async () => {
    const user = userEvent.setup();
    const done = deferred();
    fakeBackend({
      open_model: async (a) => {
        const ch = a.onProgress as Channel<LoadProgress>;
        ch.onmessage({ done_bytes: 1_200_000_000, total_bytes: 4_900_000_000 });
        await done.promise;
        return model();
      },
    });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.type(screen.getByTestId("model-path"), "/models/big.gguf{Enter}");
    await waitFor(() => expect(app.session.activity).toBe("Opening model… 1.2 of 4.9 GB (24%)"));
    done.resolve();
    await waitFor(() => expect(app.session.activity).toBe(""));
  });

  it("shows why a model did not open", async () => {
    const user = userEvent.setup();
    fakeBackend({ open_model: () => rejectWith("unsupported", "This GGUF uses an unsupported architecture (mamba).") });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.type(screen.getByTestId("model-path"), "/m.gguf{Enter}");
    await waitFor(() => expect(app.notices.items[0]?.message).toMatch(/unsupported architecture/));
  });

  it("saves sampling settings as numbers", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({ set_params: ({ params: p }) => p });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    expect(screen.getByTestId("sampling-save")).toBeDisabled();
    await user.clear(screen.getByTestId("sampling-temperature"));
    await user.type(screen.getByTestId("sampling-temperature"), "0.3");
    await user.clear(screen.getByTestId("sampling-seed"));
    await user.type(screen.getByTestId("sampling-seed"), "7");
    await user.click(screen.getByTestId("sampling-save"));
    expect(backend.argsOf("set_params")).toEqual([{ params: params({ temperature: 0.3, seed: 7 }) }]);
    await waitFor(() => expect(app.session.params?.seed).toBe(7));
  });

  it("refuses out-of-range sampling values", async () => {
    const user = userEvent.setup();
    fakeBackend();
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.clear(screen.getByTestId("sampling-top_p"));
    await user.type(screen.getByTestId("sampling-top_p"), "1.5");
    expect(screen.getByTestId("sampling-save")).toBeDisabled();
  });

  it("serves the library on the chosen port and shows the address, then stops", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      set_serving: ({ enabled, port }) => ({ url: enabled ? `http://127.0.0.1:${port}/v1` : null }),
    });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.clear(screen.getByTestId("serve-port"));
    await user.type(screen.getByTestId("serve-port"), "9011");
    await user.click(screen.getByTestId("serve-toggle"));
    await waitFor(() => expect(screen.getByTestId("serve-url")).toHaveTextContent("http://127.0.0.1:9011/v1"));
    expect(backend.argsOf("set_serving")).toEqual([{ enabled: true, port: 9011 }]);
    expect(screen.getByTestId("serve-port")).toBeDisabled();
    await user.click(screen.getByTestId("serve-toggle"));
    await waitFor(() => expect(screen.queryByTestId("serve-url")).toBeNull());
    expect(backend.argsOf("set_serving")[1]).toEqual({ enabled: false, port: 9011 });
  });

  it("says why serving could not start", async () => {
    const user = userEvent.setup();
    fakeBackend({ set_serving: () => rejectWith("invalid", "cannot listen on 127.0.0.1:8765: Address already in use") });
    const app = await readyApp();
    renderWithApp(ModelPanel, {}, app);
    await user.click(screen.getByTestId("serve-toggle"));
    await waitFor(() => expect(app.notices.items[0]?.message).toMatch(/Address already in use/));
    expect(screen.getByTestId("serve-toggle")).not.toBeChecked();
  });
});
