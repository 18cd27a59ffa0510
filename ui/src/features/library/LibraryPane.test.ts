import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeBackend } from "../../test/backend";
import { model, node, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import LibraryPane from "./LibraryPane.svelte";

const tree = [
  node({ id: 1, name: "Tutor", kind: "personality", token_count: 1234, own_bytes: 2_400_000 }),
  node({ id: 2, parent: 1, name: "Algebra lesson", kind: "chat", depth: 1, tags: ["math"] }),
  node({
    id: 3,
    parent: null,
    name: "Old model story",
    kind: "story",
    compatible: false,
    model_name: "Llama-2-7B",
    model_path: "/models/llama-2-7b.gguf",
  }),
];

async function setup(handlers = {}) {
  const backend = fakeBackend({ list_tree: () => tree, ...handlers });
  const app = await readyApp();
  const view = renderWithApp(LibraryPane, {}, app);
  return { backend, ...view };
}

describe("LibraryPane", () => {
  it("lists every node with its kind, name, token count and size", async () => {
    await setup();
    const row = screen.getByTestId("tree-row-1");
    expect(within(row).getByText("Tutor")).toBeInTheDocument();
    expect(within(row).getByRole("img", { name: "Personality" })).toBeInTheDocument();
    expect(screen.getByTestId("tree-meta-1")).toHaveTextContent("1.2k tok · 2.4 MB");
    expect(screen.getByTestId("tree-row-2")).toHaveAttribute("aria-level", "2");
  });

  it("collapses and expands a branch", async () => {
    const user = userEvent.setup();
    await setup();
    await user.click(screen.getByTestId("tree-toggle-1"));
    expect(screen.queryByTestId("tree-row-2")).not.toBeInTheDocument();
    await user.click(screen.getByTestId("tree-toggle-1"));
    expect(screen.getByTestId("tree-row-2")).toBeInTheDocument();
  });

  it("thaws a node on click and marks it current", async () => {
    const user = userEvent.setup();
    const { backend } = await setup({ thaw: ({ node: id }: Record<string, unknown>) => thawReport({ node: id as number }) });
    await user.click(screen.getByTestId("tree-node-2"));
    expect(backend.argsOf("thaw")).toEqual([{ node: 2 }]);
    await waitFor(() => expect(screen.getByTestId("tree-row-2")).toHaveAttribute("data-current", "true"));
  });

  it("greys nodes of another model, explains why, and does not thaw them", async () => {
    const user = userEvent.setup();
    const { backend, app } = await setup();
    const row = screen.getByTestId("tree-row-3");
    expect(row).toHaveClass("incompatible");
    expect(screen.getByTestId("tree-node-3").title).toMatch(/Made with Llama-2-7B; the open model is TinyLlama/);
    await user.click(screen.getByTestId("tree-node-3"));
    expect(backend.argsOf("thaw")).toEqual([]);
    expect(app.notices.items[0].message).toMatch(/Open Llama-2-7B to thaw it/);
  });

  it("loads the model of a greyed node from its menu", async () => {
    const user = userEvent.setup();
    const { backend } = await setup({ open_model: () => model({ name: "Llama-2-7B", path: "/models/llama-2-7b.gguf" }) });
    await user.click(screen.getByTestId("tree-menu-3"));
    await user.click(screen.getByTestId("node-menu-load-model"));
    expect(backend.argsOf("open_model").map((a) => a.path)).toEqual(["/models/llama-2-7b.gguf"]);
    // A node of the open model offers no such action.
    await user.click(screen.getByTestId("tree-menu-1"));
    expect(screen.queryByTestId("node-menu-load-model")).not.toBeInTheDocument();
  });

  it("filters by text through search, and by kind and tag locally", async () => {
    const user = userEvent.setup();
    const { backend } = await setup({ search: () => [tree[1]] });
    await user.type(screen.getByTestId("tree-search"), "algebra");
    await waitFor(() => expect(backend.argsOf("search")).toEqual([{ query: "algebra" }]));
    await waitFor(() => expect(screen.queryByTestId("tree-row-1")).not.toBeInTheDocument());
    expect(screen.getByTestId("tree-row-2")).toBeInTheDocument();
    await user.click(screen.getByTestId("tree-filter-clear"));
    expect(screen.getByTestId("tree-row-1")).toBeInTheDocument();

    await user.selectOptions(screen.getByTestId("tree-filter-kind"), "story");
    expect(screen.getAllByRole("treeitem").map((r) => r.dataset.testid)).toEqual(["tree-row-3"]);
    await user.selectOptions(screen.getByTestId("tree-filter-kind"), "");
    await user.selectOptions(screen.getByTestId("tree-filter-tag"), "math");
    expect(screen.getAllByRole("treeitem").map((r) => r.dataset.testid)).toEqual(["tree-row-2"]);
  });

  it("opens a node's menu to pin, fork or delete it", async () => {
    const user = userEvent.setup();
    const { backend, app } = await setup({ set_pinned: () => ({ ...tree[1], pinned: true }) });
    await user.click(screen.getByTestId("tree-menu-2"));
    await user.click(screen.getByTestId("node-menu-pin"));
    expect(backend.argsOf("set_pinned")).toEqual([{ node: 2, pinned: true }]);
    expect(screen.queryByTestId("node-menu")).not.toBeInTheDocument();

    await user.pointer({ keys: "[MouseRight]", target: screen.getByTestId("tree-node-1") });
    await user.click(screen.getByTestId("node-menu-fork"));
    expect(app.ui.dialog).toEqual({ kind: "fork", node: 1, at: null });

    await user.click(screen.getByTestId("tree-menu-1"));
    await user.click(screen.getByTestId("node-menu-delete"));
    expect(app.ui.dialog).toEqual({ kind: "delete", node: 1 });
  });
});
