import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { fakeBackend, rejectWith } from "../../test/backend";
import { node } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import DeleteDialog from "./DeleteDialog.svelte";
import ExportDialog from "./ExportDialog.svelte";
import ImportDialog from "./ImportDialog.svelte";

// The Downloads folder comes from Tauri's path API (its own IPC module, not the mocked invoke).
const downloads = vi.hoisted(() => ({ dir: null as string | null }));
vi.mock("@tauri-apps/api/path", () => ({
  downloadDir: async () => {
    if (downloads.dir === null) throw new Error("no path plugin");
    return downloads.dir;
  },
  join: async (...parts: string[]) => parts.join("/"),
}));

const nodes = [node({ id: 1, name: "Tutor" }), node({ id: 2, parent: 1, name: "Lesson" })];

describe("DeleteDialog", () => {
  it("shows what each mode deletes and frees before deleting", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      list_tree: () => nodes,
      preview_delete: ({ mode }) =>
        mode === "reparent"
          ? { deleted: 1, reparented: 1, freed_bytes: 2_400_000 }
          : { deleted: 2, reparented: 0, freed_bytes: 5_000_000 },
      delete_node: () => ({ deleted: 2, reparented: 0, freed_bytes: 5_000_000 }),
    });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(DeleteDialog, { node: 1, onclose }, app);

    await waitFor(() =>
      expect(screen.getByTestId("delete-preview")).toHaveTextContent("Deletes 1 node and frees 2.4 MB; 1 child moves up."),
    );
    await user.click(screen.getByTestId("delete-mode-subtree"));
    await waitFor(() => expect(screen.getByTestId("delete-preview")).toHaveTextContent("Deletes 2 nodes and frees 5 MB."));
    await user.click(screen.getByTestId("delete-confirm"));

    expect(backend.argsOf("delete_node")).toEqual([{ node: 1, mode: "subtree" }]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.notices.items[0].message).toBe("Deleted 2 nodes · freed 5 MB.");
  });
});

describe("DeleteDialog sharing", () => {
  it("says how much of a node's size stays because other nodes share it, and names the deletion", async () => {
    const user = userEvent.setup();
    const shared = [node({ id: 5, name: "Big", own_bytes: 10_800_000 }), node({ id: 6, name: "Fork of Big", parent: 5 })];
    fakeBackend({
      list_tree: () => shared,
      preview_delete: () => ({ deleted: 1, reparented: 1, freed_bytes: 0 }),
      delete_node: () => ({ deleted: 1, reparented: 1, freed_bytes: 0 }),
    });
    const app = await readyApp();
    app.session.report = "thawed Big";
    renderWithApp(DeleteDialog, { node: 5, onclose: vi.fn() }, app);
    await waitFor(() => expect(screen.getByTestId("delete-shared")).toHaveTextContent("10.8 MB of its 10.8 MB stay: other nodes"));
    await user.click(screen.getByTestId("delete-confirm"));
    await waitFor(() => expect(app.session.report).toBe("deleted Big"));
  });
});

describe("ExportDialog", () => {
  it("writes the bundle to the typed path", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({ list_tree: () => nodes, export_node: () => 3_100_000 });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ExportDialog, { node: 2, onclose }, app);
    await user.clear(screen.getByTestId("export-path"));
    await user.type(screen.getByTestId("export-path"), "/tmp/lesson.bundle");
    await user.click(screen.getByTestId("export-submit"));
    expect(backend.argsOf("export_node")).toEqual([{ node: 2, path: "/tmp/lesson.bundle" }]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.notices.items[0].message).toBe("Exported Lesson · 3.1 MB written.");
  });
});

describe("ExportDialog as Markdown", () => {
  it("switches the file to .md and writes the transcript as Markdown", async () => {
    const user = userEvent.setup();
    downloads.dir = "/home/ada/Downloads";
    const backend = fakeBackend({ list_tree: () => nodes, export_markdown: () => 2_100 });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ExportDialog, { node: 2, onclose }, app);
    await waitFor(() => expect(screen.getByTestId("export-path")).toHaveValue("/home/ada/Downloads/Lesson.bundle"));
    await user.click(screen.getByTestId("export-format-markdown"));
    expect(screen.getByTestId("export-path")).toHaveValue("/home/ada/Downloads/Lesson.md");
    await user.click(screen.getByTestId("export-submit"));
    expect(backend.argsOf("export_markdown")).toEqual([{ node: 2, path: "/home/ada/Downloads/Lesson.md" }]);
    expect(backend.argsOf("export_node")).toEqual([]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.notices.items[0].message).toBe("Exported Lesson as Markdown · 2.1 KB written.");
  });
});

describe("ExportDialog defaults", () => {
  it("suggests the node's name in the Downloads folder", async () => {
    downloads.dir = "/home/ada/Downloads";
    fakeBackend({ list_tree: () => nodes });
    const app = await readyApp();
    renderWithApp(ExportDialog, { node: 2, onclose: vi.fn() }, app);
    await waitFor(() => expect(screen.getByTestId("export-path")).toHaveValue("/home/ada/Downloads/Lesson.bundle"));
  });

  it("falls back to the file name and shows errors without the OS code", async () => {
    const user = userEvent.setup();
    downloads.dir = null;
    fakeBackend({
      list_tree: () => nodes,
      export_node: () => Promise.reject({ code: "io", message: "write /nope/Lesson.bundle: No such file or directory (os error 2)" }),
    });
    const app = await readyApp();
    renderWithApp(ExportDialog, { node: 2, onclose: vi.fn() }, app);
    expect(screen.getByTestId("export-path")).toHaveValue("Lesson.bundle");
    await user.click(screen.getByTestId("export-submit"));
    expect(await screen.findByTestId("export-error")).toHaveTextContent("write /nope/Lesson.bundle: No such file or directory");
    expect(screen.getByTestId("export-error")).not.toHaveTextContent("os error");
  });
});

describe("ImportDialog", () => {
  it("imports under the chosen parent with an optional name", async () => {
    const user = userEvent.setup();
    const imported = node({ id: 9, parent: 1, name: "Shared" });
    const backend = fakeBackend({ list_tree: () => nodes, import_bundle: () => imported });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ImportDialog, { onclose }, app);
    await user.type(screen.getByTestId("import-path"), "/tmp/shared.bundle");
    await user.selectOptions(screen.getByTestId("import-parent"), "1");
    await user.click(screen.getByTestId("import-submit"));
    expect(backend.argsOf("import_bundle")).toEqual([{ path: "/tmp/shared.bundle", parent: 1, name: null }]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.library.selected).toBe(9);
  });

  it("shows the reason a bundle is refused and stays open", async () => {
    const user = userEvent.setup();
    fakeBackend({
      import_bundle: () =>
        rejectWith("state_model_mismatch", "This bundle was made with Llama-2-7B; the open model is TinyLlama."),
    });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ImportDialog, { onclose }, app);
    await user.type(screen.getByTestId("import-path"), "/tmp/x.bundle");
    await user.type(screen.getByTestId("import-name"), "Mine");
    await user.click(screen.getByTestId("import-submit"));
    expect(await screen.findByTestId("import-error")).toHaveTextContent(
      "This bundle was made with Llama-2-7B; the open model is TinyLlama.",
    );
    expect(onclose).not.toHaveBeenCalled();
  });
});
