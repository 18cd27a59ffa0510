import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { fakeBackend, rejectWith } from "../../test/backend";
import { node } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import DeleteDialog from "./DeleteDialog.svelte";
import ExportDialog from "./ExportDialog.svelte";
import ImportDialog from "./ImportDialog.svelte";

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

describe("ExportDialog", () => {
  it("writes the bundle to the typed path", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({ list_tree: () => nodes, export_node: () => 3_100_000 });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ExportDialog, { node: 2, onclose }, app);
    await user.type(screen.getByTestId("export-path"), "/tmp/lesson.bundle");
    await user.click(screen.getByTestId("export-submit"));
    expect(backend.argsOf("export_node")).toEqual([{ node: 2, path: "/tmp/lesson.bundle" }]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.notices.items[0].message).toBe("Exported Lesson · 3.1 MB written.");
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
