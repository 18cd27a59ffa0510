import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import type { CatalogueEntry, InstalledModel, PullProgress } from "../../lib/api";
import { deferred, fakeBackend, rejectWith } from "../../test/backend";
import { hostStatus, model } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import ModelsSection from "./ModelsSection.svelte";

function installed(over: Partial<InstalledModel> = {}): InstalledModel {
  return {
    name: "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
    repo: "bartowski/Llama-3.2-1B-Instruct-GGUF",
    file: "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    path: "/models/hub/bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    bytes: 807_000_000,
    format: "gguf",
    weight_type: "Q4_K",
    architecture: "llama",
    context_length: 131072,
    revision: "abc",
    sha256: [],
    states: 3,
    ...over,
  };
}

function entry(over: Partial<CatalogueEntry> = {}): CatalogueEntry {
  return {
    model: "Llama 3.1 8B Instruct",
    name: "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",
    repo: "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
    file: "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    quant: "Q4_K_M",
    licence: "llama3.1",
    recommended: true,
    bytes: 4_920_734_272,
    sha256: "0".repeat(64),
    context: 8192,
    kv_bytes: 1_073_741_824,
    needs_bytes: 6_530_000_000,
    memory_bytes: 4_000_000_000,
    fits: false,
    gpu_memory_bytes: null,
    fits_gpu: null,
    installed: false,
    ...over,
  };
}

describe("ModelsSection", () => {
  it("lists models opened from files, and loads one again with a click", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      installed_models: () => [],
      model_catalogue: () => [],
      opened_models: () => [
        { name: "My Llama", path: "/models/my-llama.Q4_K_M.gguf", bytes: 808e6, states: 3 },
        { name: "SmolLM2-135M-Instruct", path: "/data/SmolLM2-135M-Instruct.Q4_1.gguf", bytes: 97e6, states: 0 },
      ],
      open_model: () => ({ ...(backend.argsOf("open_model")[0] as object), name: "My Llama" }),
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await waitFor(() => expect(screen.getAllByTestId("opened-model")).toHaveLength(2));
    expect(screen.getAllByTestId("opened-model")[0]).toHaveTextContent("My Llama");
    expect(screen.getAllByTestId("opened-model")[0]).toHaveTextContent("808 MB · 3 states · my-llama.Q4_K_M.gguf");
    await user.click(screen.getAllByTestId("opened-load")[0]);
    await waitFor(() => expect(backend.argsOf("open_model")).toHaveLength(1));
    expect(backend.argsOf("open_model")[0]).toMatchObject({ path: "/models/my-llama.Q4_K_M.gguf" });
  });

  it("holds each catalogue model against the GPU's memory too, when there is a GPU", async () => {
    fakeBackend({
      model_catalogue: () => [
        entry({ fits: true, fits_gpu: true, gpu_memory_bytes: 80e9 }),
        entry({ name: "x/Big:Q8_0", fits: true, fits_gpu: false, gpu_memory_bytes: 8e9 }),
      ],
      installed_models: () => [],
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await waitFor(() => expect(screen.getAllByTestId("catalogue-entry")).toHaveLength(2));
    expect(screen.getAllByTestId("catalogue-entry")[0]).toHaveTextContent("fits this machine and its GPU");
    expect(screen.getAllByTestId("catalogue-entry")[1]).toHaveTextContent("too large for the GPU (8 GB)");
  });

  it("lists installed models and loads one with a click", async () => {
    const user = userEvent.setup();
    const m = installed();
    let opened = false;
    const backend = fakeBackend({
      installed_models: () => [m],
      open_model: () => {
        opened = true;
        return model({ path: m.path });
      },
      // The backend's status names the model it now holds.
      status: () => hostStatus(opened ? { model: model({ path: m.path }) } : {}),
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await waitFor(() => expect(screen.getByTestId("installed-model")).toHaveTextContent("Llama-3.2-1B-Instruct-GGUF:Q4_K_M"));
    expect(screen.getByTestId("installed-model")).toHaveTextContent("3 states");
    await user.click(screen.getByTestId("model-load"));
    expect(backend.argsOf("open_model").map((a) => a.path)).toEqual([m.path]);
    await waitFor(() => expect(screen.getByTestId("model-loaded")).toBeInTheDocument());
  });

  it("says which catalogue models do not fit, and downloads one with progress", async () => {
    const user = userEvent.setup();
    const done = deferred();
    let channel: Channel<PullProgress> | undefined;
    let pulled = false;
    const backend = fakeBackend({
      model_catalogue: () => [entry(), entry({ name: "x/Small:Q4_K_M", model: "Small", fits: true, installed: pulled })],
      installed_models: () => (pulled ? [installed({ name: "x/Small:Q4_K_M" })] : []),
      pull_model: async (a) => {
        channel = a.onProgress as Channel<PullProgress>;
        await done.promise;
        pulled = true;
        return installed({ name: "x/Small:Q4_K_M" });
      },
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await waitFor(() => expect(screen.getAllByTestId("catalogue-entry")).toHaveLength(2));
    expect(screen.getAllByTestId("catalogue-entry")[0]).toHaveTextContent("too large for this machine");
    expect(screen.getAllByTestId("catalogue-entry")[1]).toHaveTextContent("fits this machine");
    await user.click(screen.getAllByTestId("catalogue-download")[1]);
    expect(backend.argsOf("pull_model")[0].name).toBe("x/Small:Q4_K_M");
    await waitFor(() => expect(channel).toBeDefined());
    channel!.onmessage({ done_bytes: 250_000_000, total_bytes: 1_000_000_000, resumed_bytes: 0 });
    await waitFor(() => expect(screen.getByTestId("pull-bytes")).toHaveTextContent("(25%)"));
    expect(screen.getByTestId("pull-bar")).toHaveAttribute("value", "25");
    done.resolve();
    await waitFor(() => expect(screen.queryByTestId("pull-progress")).not.toBeInTheDocument());
    await waitFor(() => expect(screen.getByTestId("installed-model")).toHaveTextContent("x/Small:Q4_K_M"));
    expect(app.notices.items[0]?.message).toMatch(/Downloaded x\/Small:Q4_K_M/);
  });

  it("cancels a download and says it will resume", async () => {
    const user = userEvent.setup();
    const stop = deferred();
    const backend = fakeBackend({
      pull_model: async () => {
        await stop.promise;
        rejectWith("cancelled", "the download was cancelled");
      },
      cancel_pull: () => {
        stop.resolve();
        return null;
      },
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await user.type(screen.getByTestId("pull-name"), "owner/model:Q8_0{Enter}");
    await waitFor(() => expect(screen.getByTestId("pull-progress")).toBeInTheDocument());
    await user.click(screen.getByTestId("pull-cancel"));
    expect(backend.argsOf("cancel_pull")).toHaveLength(1);
    await waitFor(() => expect(app.notices.items[0]?.message).toMatch(/resume/));
    expect(app.notices.items[0]?.tone).toBe("info");
  });

  it("offers the Hub's file when it is not the one the catalogue lists, and pulls it on the user's word", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      model_catalogue: () => [entry({ fits: true })],
      pull_model: (a) => {
        if (!a.trustHub)
          rejectWith(
            "catalogue_mismatch",
            "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf: the Hub's file is 5 bytes, not the 4920734272 this version's catalogue lists (its publisher may have replaced it); nothing was installed",
          );
        return installed({ name: "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M" });
      },
    });
    const app = await readyApp();
    renderWithApp(ModelsSection, {}, app);
    await waitFor(() => expect(screen.getByTestId("catalogue-download")).toBeInTheDocument());
    await user.click(screen.getByTestId("catalogue-download"));
    await waitFor(() => expect(screen.getByTestId("pull-mismatch")).toHaveTextContent("nothing was installed"));
    expect(backend.argsOf("pull_model")[0].trustHub).toBe(false);
    expect(app.notices.items).toHaveLength(0);
    await user.click(screen.getByTestId("pull-trust-hub"));
    await waitFor(() => expect(app.notices.items[0]?.message).toMatch(/Downloaded bartowski\/Meta-Llama-3.1-8B/));
    const calls = backend.argsOf("pull_model");
    expect(calls).toHaveLength(2);
    expect(calls[1]).toMatchObject({ name: "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M", trustHub: true });
    expect(screen.queryByTestId("pull-mismatch")).not.toBeInTheDocument();
  });
});
